"""Tenant admin pages: the users list with its filters and bulk actions, and invitations.

Each view is: permission, a form, one service call, and a response — a 303 for a plain form,
or for HTMX the changed block with an `HX-Trigger` toast. Errors a person can correct come back
as the same block with status 422."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from urllib.parse import parse_qsl, urlsplit

from flask import abort, request, url_for
from flask import session as cookie
from flask_login import current_user
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from portal.accounts import bulk, invitations, lifecycle, listing
from portal.accounts import roles as account_roles
from portal.accounts.forms import (
    BulkForm,
    InviteForm,
)
from portal.accounts.models import User
from portal.accounts.validation import AccountError
from portal.forms import attach_error
from portal.permissions import Permission, requires
from portal.site.admin_common import (
    role_choices,
    ungrantable_roles,
)
from portal.site.auth import current_actor
from portal.site.blueprint import bp
from portal.site.common import site_base_url
from portal.validation import InputError, selected_ids
from portal.web import after_change, local_path, render_page, request_session, wants_fragment

# Bulk actions that take something away: they ask first, naming the consequence.
DANGEROUS = {
    "suspend": "They are signed out at once and cannot sign in until reactivated.",
    "revoke_sessions": "They are signed out of every browser and must sign in again.",
    "delete": (
        f"They are signed out and removed from the organisation; they can be restored for "
        f"{lifecycle.USER_DELETE_GRACE_DAYS} days, then their data is erased."
    ),
}
BULK_VERBS = {
    "suspend": "suspended",
    "reactivate": "reactivated",
    "assign_role": "given the role",
    "revoke_sessions": "signed out everywhere",
    "delete": "deleted",
}
REFUSALS_SHOWN = 20


def safe_list_url(target: str | None) -> str:
    """`target` if it is the users list (with any query), else the list itself."""
    return local_path(target, url_for("site.users"), under="/users")


def render_users(args, *, status: int = 200, **extra):
    """The users page for the query `args`: filters, one keyset page, the row count."""
    session = request_session()
    users = listing.list_users(session, args, url=partial(url_for, "site.users"))
    all_roles = account_roles.roles(session)
    manage = current_user.can(Permission.USERS_MANAGE)
    bulk_form = extra.pop("bulk_form", None)
    if manage and bulk_form is None:
        bulk_form = BulkForm(formdata=None)
        bulk_form.role.choices = role_choices(session, all_roles)
    response = render_page(
        "site/users.html",
        "results",
        status=status,
        users=users,
        f=users.filters,
        searching=listing.searching(users.query),
        roles_of=listing.role_keys_by_user(session, [row.id for row in users.rows]),
        role_names={r.key: r.name for r in all_roles},
        statuses=listing.STATUSES,
        here=users.here,
        manage=manage,
        bulk_form=bulk_form,
        grace_days=lifecycle.USER_DELETE_GRACE_DAYS,
        grace=timedelta(days=lifecycle.USER_DELETE_GRACE_DAYS),
        dangerous=DANGEROUS,
        refusals=extra.pop("refusals", None) or cookie.pop("bulk_refusals", None),
        confirm=extra.pop("confirm", None),
        locked_roles=ungrantable_roles(session, all_roles) if manage else set(),
        **extra,
    )
    if request.method == "GET" and wants_fragment():
        # The address bar shows the list's own URL, not every empty field of the filter form.
        response.headers["HX-Push-Url"] = users.here
    return response


@bp.get("/users")
@requires(Permission.USERS_VIEW)
def users():
    return render_users(request.args)


@bp.post("/users/bulk")
@requires(Permission.USERS_MANAGE)
def users_bulk():
    session = request_session()
    form = BulkForm()
    form.role.choices = role_choices(session)
    back = safe_list_url(form.next.data)
    args = MultiDict(parse_qsl(urlsplit(back).query))
    if not form.validate_on_submit() or not form.ids.data:
        if not form.ids.errors and not form.ids.data:
            form.ids.errors = ["Select at least one user."]
        return render_users(args, status=422, bulk_form=form)
    try:
        ids = selected_ids(form.ids.data, noun="user")
    except InputError as error:
        attach_error(form, error)
        return render_users(args, status=422, bulk_form=form)
    action = form.action.data
    if action == "revoke_sessions" and not current_user.can(Permission.SESSIONS_REVOKE):
        abort(403)
    role_key = form.role.data if action == "assign_role" else None
    if action in DANGEROUS and form.confirmed.data != "yes":
        chosen = session.execute(
            select(User.id, User.email).where(User.id.in_(ids)).order_by(User.email)
        ).all()
        confirm = {"action": action, "users": chosen, "consequence": DANGEROUS[action]}
        return render_users(args, bulk_form=form, confirm=confirm)
    try:
        result = bulk.bulk_apply(session, ids, action, actor=current_actor(), role_key=role_key)
    except AccountError as error:
        attach_error(form, error, "action")
        return render_users(args, status=422, bulk_form=form)
    verb = BULK_VERBS[action]
    if action == "assign_role":
        verb = f"given the role {account_roles.role_names(session).get(role_key, role_key)}"
    toast = result.summary(verb)
    if result.refused and not wants_fragment():  # the list shows them after the redirect
        cookie["bulk_refusals"] = result.refused[:REFUSALS_SHOWN]
    return after_change(back, toast, fragment=lambda: render_users(args, refusals=result.refused))


@bp.route("/users/invite", methods=["GET", "POST"])
@requires(Permission.USERS_MANAGE)
def user_invite():
    session = request_session()
    form = InviteForm()
    form.roles.choices = role_choices(session)
    if form.validate_on_submit():
        try:
            user = invitations.invite_user(
                session,
                email=form.email.data,
                name=form.name.data or "",
                role_keys=form.roles.data or [],
                actor=current_actor(),
                base_url=site_base_url(),
            )
        except AccountError as error:
            attach_error(form, error, "email")
        else:
            return after_change(
                url_for("site.user", user_id=user.id), f"Invitation sent to {user.email}"
            )
    status = 422 if request.method == "POST" else 200
    locked = ungrantable_roles(session)
    return render_page(
        "site/user_invite.html", "form", form=form, locked_roles=locked, status=status
    )
