"""Tenant admin pages: the home page's overview, the users list with bulk actions,
invitations, a user's page, roles and security settings. Routes attach to the site blueprint.

Each view is: permission, the object (404 when it is not this tenant's), a form, one service
call, and a response — a 303 for a plain form, or for HTMX the changed block with an
`HX-Trigger` toast (and `user-changed` so other parts of the user page refresh themselves).
Errors a person can correct come back as the same block with status 422.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from flask import abort, request, url_for
from flask import session as cookie
from flask_login import current_user, login_required
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict
from wtforms.fields.choices import SelectChoice

from portal.accounts import bulk, invitations, lifecycle, listing
from portal.accounts import roles as account_roles
from portal.accounts import settings as account_settings
from portal.accounts.forms import (
    ActionForm,
    BulkForm,
    InviteForm,
    ProfileForm,
    RoleForm,
    RolesForm,
    SecuritySettingsForm,
    SuspendForm,
)
from portal.accounts.models import Role, User, UserStatus
from portal.accounts.validation import AccountError
from portal.auth import services as auth
from portal.compliance.audit import AuditAction
from portal.compliance.models import TenantAuditEntry
from portal.permissions import TENANT_PERMISSIONS, BuiltinRole, Permission, requires
from portal.site.auth import current_actor, tenant_settings
from portal.site.blueprint import bp
from portal.site.common import attach_error, site_base_url
from portal.validation import InputError, selected_ids
from portal.web import local_path, render_page, request_session, see_other, wants_fragment

MAX_ID = 2**31 - 1  # ids are PostgreSQL integers; a larger one cannot exist
SIGN_IN_ACTIONS = (
    AuditAction.USER_SIGN_IN,
    AuditAction.USER_SIGN_IN_FAILED,
    AuditAction.USER_SIGN_IN_LOCKED,
    AuditAction.USER_SIGN_OUT,
    AuditAction.USER_NEW_DEVICE,
    AuditAction.MFA_FAILED,
)
HISTORY_SIZE = 20
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


def toast_response(response, toast: str, *events: str):
    triggers = {"toast": toast, **{event: True for event in events}}
    response.headers["HX-Trigger"] = json.dumps(triggers)
    return response


def actor_is(user: User) -> bool:
    """Whether the signed-in person is `user` (never for MSP staff visiting)."""
    return not getattr(current_user, "is_staff", False) and current_user.id == user.id


def role_choices(session, all_roles=None) -> list[SelectChoice]:
    """Roles a user can be given (Member is having none)."""
    return [
        SelectChoice(r.key, r.name)
        for r in (all_roles or account_roles.roles(session))
        if r.key != BuiltinRole.MEMBER
    ]


def ungrantable_roles(session, all_roles=None) -> set[str]:
    """Roles the signed-in person may not give (a permission they lack): offered disabled.
    The services refuse them anyway; this only keeps the page from offering them."""
    all_roles = all_roles or account_roles.roles(session)
    return {r.key for r in all_roles} - account_roles.grantable_role_keys(
        session, current_actor(), all_roles
    )


# ---- users list -----------------------------------------------------------------------------


def list_url(filters: listing.UserFilters, **cursor) -> str:
    return url_for("site.users", **filters.args(), **{k: v for k, v in cursor.items() if v})


def safe_list_url(target: str | None) -> str:
    """`target` if it is the users list (with any query), else the list itself."""
    return local_path(target, url_for("site.users"), under="/users")


def render_users(args, *, status: int = 200, **extra):
    """The users page for the query `args`: filters, one keyset page, the row count."""
    db = request_session()
    filters = listing.parse_filters(args)
    page, total = listing.list_users(
        db,
        q=filters.q,
        status=filters.status,
        role=filters.role,
        mfa=filters.mfa,
        signed_in_after=filters.signed_in_after,
        signed_in_before=filters.signed_in_before,
        sort=filters.sort,
        after=args.get("after"),
        before=args.get("before"),
    )
    all_roles = account_roles.roles(db)
    manage = current_user.can(Permission.USERS_MANAGE)
    bulk_form = extra.pop("bulk_form", None)
    if manage and bulk_form is None:
        bulk_form = BulkForm(formdata=None)
        bulk_form.role.choices = role_choices(db, all_roles)
    here = list_url(filters, after=args.get("after"), before=args.get("before"))
    response = render_page(
        "site/users.html",
        "results",
        status=status,
        rows=page.rows,
        roles_of=listing.role_keys_by_user(db, [row.id for row in page.rows]),
        role_names={r.key: r.name for r in all_roles},
        total=total,
        f=filters,
        filter_args=filters.args(),
        statuses=listing.STATUSES,
        next_url=list_url(filters, after=page.next_cursor) if page.next_cursor else None,
        prev_url=list_url(filters, before=page.prev_cursor) if page.prev_cursor else None,
        here=here,
        manage=manage,
        bulk_form=bulk_form,
        grace_days=lifecycle.USER_DELETE_GRACE_DAYS,
        grace=timedelta(days=lifecycle.USER_DELETE_GRACE_DAYS),
        dangerous=DANGEROUS,
        refusals=extra.pop("refusals", None) or cookie.pop("bulk_refusals", None),
        confirm=extra.pop("confirm", None),
        locked_roles=ungrantable_roles(db, all_roles) if manage else set(),
        **extra,
    )
    if request.method == "GET" and wants_fragment():
        # The address bar shows the list's own URL, not every empty field of the filter form.
        response.headers["HX-Push-Url"] = here
    return response


@bp.get("/users")
@requires(Permission.USERS_VIEW)
def users():
    return render_users(request.args)


@bp.post("/users/bulk")
@requires(Permission.USERS_MANAGE)
def users_bulk():
    db = request_session()
    form = BulkForm()
    form.role.choices = role_choices(db)
    back = safe_list_url(form.next.data)
    args = MultiDict(parse_qsl(urlsplit(back).query))
    if not form.validate_on_submit() or not form.ids.data:
        if not form.ids.errors and not form.ids.data:
            form.ids.errors = ["Select at least one user."]
        return render_users(args, status=422, bulk_form=form)
    try:
        ids = selected_ids(form.ids.data, noun="user")
    except InputError as error:
        form.ids.errors = [str(error)]
        return render_users(args, status=422, bulk_form=form)
    action = form.action.data
    if action == "revoke_sessions" and not current_user.can(Permission.SESSIONS_REVOKE):
        abort(403)
    role_key = form.role.data if action == "assign_role" else None
    if action in DANGEROUS and form.confirmed.data != "yes":
        chosen = db.execute(
            select(User.id, User.email).where(User.id.in_(ids)).order_by(User.email)
        ).all()
        confirm = {"action": action, "users": chosen, "consequence": DANGEROUS[action]}
        return render_users(args, bulk_form=form, confirm=confirm)
    try:
        result = bulk.bulk_apply(db, ids, action, actor=current_actor(), role_key=role_key)
    except AccountError as error:
        attach_error(form, error, "action")
        return render_users(args, status=422, bulk_form=form)
    verb = BULK_VERBS[action]
    if action == "assign_role":
        verb = f"given the role {account_roles.role_names(db).get(role_key, role_key)}"
    toast = result.summary(verb)
    if wants_fragment():
        return toast_response(render_users(args, refusals=result.refused), toast)
    if result.refused:
        cookie["bulk_refusals"] = result.refused[:REFUSALS_SHOWN]
    return see_other(back, toast=toast)


@bp.route("/users/invite", methods=["GET", "POST"])
@requires(Permission.USERS_MANAGE)
def user_invite():
    db = request_session()
    form = InviteForm()
    form.roles.choices = role_choices(db)
    if form.validate_on_submit():
        try:
            user = invitations.invite_user(
                db,
                email=form.email.data,
                name=form.name.data or "",
                role_keys=form.roles.data or [],
                actor=current_actor(),
                base_url=site_base_url(),
            )
        except AccountError as error:
            attach_error(form, error, "email")
        else:
            return see_other(
                url_for("site.user", user_id=user.id), toast=f"Invitation sent to {user.email}"
            )
    status = 422 if request.method == "POST" else 200
    locked = ungrantable_roles(db)
    return render_page(
        "site/user_invite.html", "form", form=form, locked_roles=locked, status=status
    )


# ---- one user -------------------------------------------------------------------------------

USER_PARTS = (
    "header",
    "profile",
    "roles",
    "status",
    "sessions",
    "devices",
    "mfa",
    "history",
    "audit",
)


def access_user(user_id: int, *, lock: bool = False) -> User:
    """The user, or 404 when there is none with this id in this tenant."""
    if not 0 < user_id <= MAX_ID:
        abort(404)
    user = lifecycle.get_user(request_session(), user_id, lock=lock)
    if user is None:
        abort(404)
    return user


def user_entries(user: User, *, sign_ins: bool) -> list[TenantAuditEntry]:
    about = (TenantAuditEntry.target_type == "user") & (TenantAuditEntry.target_id == str(user.id))
    kind = TenantAuditEntry.action.in_(SIGN_IN_ACTIONS)
    return (
        request_session()
        .scalars(
            select(TenantAuditEntry)
            .where(about, kind if sign_ins else ~kind)
            .order_by(TenantAuditEntry.seq.desc())
            .limit(HISTORY_SIZE)
        )
        .all()
    )


def render_user(user: User, block: str | None = None, *, status: int = 200, **forms):
    """The user page, or one block of it; only what the response shows is fetched."""
    db = request_session()
    whole = not (block and wants_fragment())

    def shows(*parts: str) -> bool:
        return whole or block in parts

    deadline = lifecycle.restore_deadline(user)
    all_roles = account_roles.roles(db)
    keys = account_roles.user_role_keys(db, user.id)
    roles_form = forms.pop("roles_form", None) or RolesForm(formdata=None, roles=keys)
    roles_form.roles.choices = [
        SelectChoice(r.key, r.name) for r in all_roles if r.key != BuiltinRole.MEMBER
    ]
    actor = current_actor()
    context = dict(
        u=user,
        # Why the signed-in person may not change this user (they hold more), if so: the page
        # then offers no changes, and the services would refuse them anyway.
        protected=account_roles.user_change_refusal(db, user.id, actor=actor),
        locked_roles={r.key for r in all_roles}
        - account_roles.grantable_role_keys(db, actor, all_roles),
        role_keys=keys,
        role_info={r.key: r for r in all_roles},
        role_notes={r.key: r.description for r in all_roles},
        deadline=deadline,
        restorable=deadline is not None and deadline > datetime.now(UTC),
        grace_days=lifecycle.USER_DELETE_GRACE_DAYS,
        is_self=actor_is(user),
        profile_form=forms.pop("profile_form", None)
        or ProfileForm(formdata=None, name=user.name, email=user.email),
        roles_form=roles_form,
        suspend_form=forms.pop("suspend_form", None) or SuspendForm(formdata=None),
        action_form=ActionForm(formdata=None),
        status_error=forms.pop("status_error", None),
        sessions_error=forms.pop("sessions_error", None),
        mfa_error=forms.pop("mfa_error", None),
        devices_error=forms.pop("devices_error", None),
        sessions=auth.user_sessions(db, user.id) if shows("sessions") else [],
        current_session=getattr(current_user, "session_id", None),
        devices=auth.user_devices(db, user.id) if shows("devices") else [],
        codes_left=auth.backup_codes_left(db, user.id) if shows("mfa") else 0,
        history=user_entries(user, sign_ins=True) if shows("history") else [],
        entries=user_entries(user, sign_ins=False)
        if shows("audit") and current_user.can(Permission.AUDIT_VIEW)
        else [],
        **forms,
    )
    return render_page("site/user.html", block, status=status, **context)


def user_changed(user: User, block: str, toast: str, *events: str):
    """After a change: the block again for HTMX (with a toast, and events for the parts of
    the page that depend on it), else back to the user page."""
    if wants_fragment():
        return toast_response(render_user(user, block), toast, "user-changed", *events)
    return see_other(url_for("site.user", user_id=user.id), toast=toast)


@bp.get("/users/<int:user_id>")
@requires(Permission.USERS_VIEW)
def user(user_id):
    part = request.args.get("part")
    return render_user(access_user(user_id), part if part in USER_PARTS else None)


@bp.post("/users/<int:user_id>/profile")
@requires(Permission.USERS_MANAGE)
def user_profile(user_id):
    user = access_user(user_id, lock=True)
    form = ProfileForm()
    if form.validate_on_submit():
        try:
            done = lifecycle.update_profile(
                request_session(),
                user,
                name=form.name.data or "",
                email=form.email.data,
                actor=current_actor(),
                base_url=site_base_url(),
            )
        except AccountError as error:
            attach_error(form, error)
        else:
            toast = f"Profile of {user.email} saved" if done else "Nothing to change"
            return user_changed(user, "profile", toast)
    return render_user(user, "profile", status=422, profile_form=form)


@bp.post("/users/<int:user_id>/roles")
@requires(Permission.USERS_MANAGE)
def user_roles(user_id):
    user = access_user(user_id, lock=True)
    db = request_session()
    form = RolesForm()
    form.roles.choices = role_choices(db)
    if form.validate_on_submit():
        try:
            done = account_roles.set_user_roles(
                db, user, form.roles.data or [], actor=current_actor()
            )
        except AccountError as error:
            attach_error(form, error, "roles")
        else:
            toast = f"Roles of {user.email} saved" if done else "Roles unchanged"
            return user_changed(user, "roles", toast)
    return render_user(user, "roles", status=422, roles_form=form)


def status_change(user: User, change, toast: str, unchanged: str):
    """Run one lifecycle service on `user`; its refusal shows in the Status block (422)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        done = change()
    except AccountError as error:
        return render_user(user, "status", status=422, status_error=str(error))
    return user_changed(user, "status", toast if done else unchanged, "sessions-changed")


@bp.post("/users/<int:user_id>/suspend")
@requires(Permission.USERS_MANAGE)
def user_suspend(user_id):
    user = access_user(user_id, lock=True)
    form = SuspendForm()
    if not form.validate_on_submit():
        return render_user(user, "status", status=422, suspend_form=form)
    try:
        done = lifecycle.suspend_user(
            request_session(), user, actor=current_actor(), reason=form.reason.data
        )
    except AccountError as error:
        return render_user(user, "status", status=422, status_error=str(error))
    toast = f"{user.email} suspended and signed out" if done else f"{user.email} is suspended"
    return user_changed(user, "status", toast, "sessions-changed")


@bp.post("/users/<int:user_id>/reactivate")
@requires(Permission.USERS_MANAGE)
def user_reactivate(user_id):
    user = access_user(user_id, lock=True)
    return status_change(
        user,
        lambda: lifecycle.reactivate_user(request_session(), user, actor=current_actor()),
        f"{user.email} reactivated",
        f"{user.email} is not suspended",
    )


@bp.post("/users/<int:user_id>/delete")
@requires(Permission.USERS_MANAGE)
def user_delete(user_id):
    user = access_user(user_id, lock=True)
    return status_change(
        user,
        lambda: lifecycle.delete_user(request_session(), user, actor=current_actor()),
        f"{user.email} deleted — restorable for {lifecycle.USER_DELETE_GRACE_DAYS} days",
        f"{user.email} is already deleted",
    )


@bp.post("/users/<int:user_id>/restore")
@requires(Permission.USERS_MANAGE)
def user_restore(user_id):
    user = access_user(user_id, lock=True)
    return status_change(
        user,
        lambda: lifecycle.restore_user(request_session(), user, actor=current_actor()),
        f"{user.email} restored",
        f"{user.email} is not deleted",
    )


@bp.post("/users/<int:user_id>/resend-invitation")
@requires(Permission.USERS_MANAGE)
def user_resend_invitation(user_id):
    user = access_user(user_id, lock=True)

    def resend() -> bool:
        invitations.resend_invitation(
            request_session(), user, actor=current_actor(), base_url=site_base_url()
        )
        return True

    return status_change(user, resend, f"Invitation sent again to {user.email}", "")


@bp.post("/users/<int:user_id>/sessions/<int:session_id>/revoke")
@requires(Permission.SESSIONS_REVOKE)
def user_session_revoke(user_id, session_id):
    user = access_user(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        ended = 0 < session_id <= MAX_ID and lifecycle.revoke_session(
            request_session(), user.id, session_id, actor=current_actor()
        )
    except AccountError as error:
        return render_user(user, "sessions", status=422, sessions_error=str(error))
    if not ended:
        abort(404)
    return user_changed(user, "sessions", f"Session of {user.email} revoked")


@bp.post("/users/<int:user_id>/sessions/revoke")
@requires(Permission.SESSIONS_REVOKE)
def user_sessions_revoke(user_id):
    user = access_user(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    # Your own page: keep the browser you are using signed in.
    keep = current_user.session_id if actor_is(user) else None
    try:
        ended = lifecycle.revoke_all_sessions(
            request_session(), user, actor=current_actor(), except_session=keep
        )
    except AccountError as error:
        return render_user(user, "sessions", status=422, sessions_error=str(error))
    toast = (
        f"{user.email} signed out of {ended} session{'s' if ended != 1 else ''}"
        if ended
        else f"{user.email} has no other sessions"
    )
    return user_changed(user, "sessions", toast, "devices-changed")


@bp.post("/users/<int:user_id>/devices/<int:device_id>/forget")
@requires(Permission.SESSIONS_REVOKE)
def user_device_forget(user_id, device_id):
    user = access_user(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        forgotten = 0 < device_id <= MAX_ID and auth.forget_device(
            request_session(), user.id, device_id, actor=current_actor()
        )
    except AccountError as error:
        return render_user(user, "devices", status=422, devices_error=str(error))
    if not forgotten:
        abort(404)
    return user_changed(
        user, "devices", "Device forgotten and its sessions ended", "sessions-changed"
    )


@bp.post("/users/<int:user_id>/mfa/reset")
@requires(Permission.MFA_RESET)
def user_mfa_reset(user_id):
    user = access_user(user_id, lock=True)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        done = auth.reset_mfa(request_session(), user, actor=current_actor())
    except AccountError as error:
        return render_user(user, "mfa", status=422, mfa_error=str(error))
    toast = (
        f"Two-factor authentication of {user.email} reset"
        if done
        else f"{user.email} has no two-factor authentication to reset"
    )
    return user_changed(user, "mfa", toast)


# ---- roles ----------------------------------------------------------------------------------


def permission_rows() -> list[tuple[str, str]]:
    return [(str(p), text) for p, text in TENANT_PERMISSIONS.items()]


@bp.get("/roles")
@requires(Permission.ROLES_VIEW)
def roles():
    return render_page(
        "site/roles.html",
        roles=account_roles.roles(request_session(), with_counts=True),
        permissions=permission_rows(),
    )


@bp.route("/roles/new", methods=["GET", "POST"])
@requires(Permission.ROLES_MANAGE)
def role_new():
    form = RoleForm()
    if form.validate_on_submit():
        try:
            role = account_roles.create_role(
                request_session(),
                name=form.name.data,
                description=form.description.data or "",
                permissions=form.permissions.data or [],
                actor=current_actor(),
            )
        except AccountError as error:
            attach_error(form, error, "name")
        else:
            return see_other(url_for("site.role", key=role.key), toast=f"Role {role.name} created")
    return render_role(None, None, form, status=422 if request.method == "POST" else 200)


def access_role(key: str) -> tuple[account_roles.RoleInfo, Role | None]:
    """The role's description and, for a tenant-defined role, its row; 404 for neither."""
    db = request_session()
    info = next((r for r in account_roles.roles(db, with_counts=True) if r.key == key), None)
    if info is None:
        abort(404)
    row = None
    if not info.builtin:
        row = db.scalars(select(Role).where(Role.key == key).with_for_update()).first()
        if row is None:
            abort(404)
    return info, row


def render_role(info, row, form=None, *, status: int = 200, error: str | None = None):
    """A role's page: read-only for a built-in role, its form for a tenant-defined one (or a
    new one when `info` is None). Permissions the signed-in person lacks are offered disabled,
    and a role they may not change (they hold it, or it has more than they hold) read-only."""
    actor = current_actor()
    held = account_roles.held_permissions(actor)
    if form is None and row is not None:
        form = RoleForm(
            formdata=None,
            name=row.name,
            description=row.description,
            permissions=list(row.permissions),
        )
    return render_page(
        "site/role.html",
        "form",
        form=form,
        role=row,
        info=info,
        permissions=permission_rows(),
        codes={str(p): str(p) for p in TENANT_PERMISSIONS},
        delete_form=ActionForm(formdata=None),
        locked_permissions={str(p) for p in TENANT_PERMISSIONS} - held,
        protected=account_roles.role_change_refusal(request_session(), row, actor=actor)
        if row is not None
        else None,
        error=error,
        status=status,
    )


@bp.route("/roles/<key>", methods=["GET", "POST"])
@requires(Permission.ROLES_VIEW)
def role(key):
    if request.method == "POST" and not current_user.can(Permission.ROLES_MANAGE):
        abort(403)
    info, row = access_role(key)
    if request.method == "GET":
        return render_role(info, row)
    if row is None:
        abort(404)  # built-in roles are defined in code, not editable
    form = RoleForm()
    if form.validate_on_submit():
        try:
            done = account_roles.update_role(
                request_session(),
                row,
                name=form.name.data,
                description=form.description.data or "",
                permissions=form.permissions.data or [],
                actor=current_actor(),
            )
        except AccountError as error:
            attach_error(form, error)
        else:
            toast = f"Role {row.name} saved" if done else "Nothing to change"
            return see_other(url_for("site.role", key=row.key), toast=toast)
    return render_role(info, row, form, status=422)


@bp.post("/roles/<key>/delete")
@requires(Permission.ROLES_MANAGE)
def role_delete(key):
    info, row = access_role(key)
    if row is None:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        account_roles.delete_role(request_session(), row, actor=current_actor())
    except AccountError as error:
        return render_role(info, row, status=422, error=str(error))
    return see_other(url_for("site.roles"), toast=f"Role {info.name} deleted")


# ---- security settings ----------------------------------------------------------------------

SETTING_FIELDS = (
    "mfa_policy",
    "mfa_grace_days",
    "idle_timeout_minutes",
    "absolute_timeout_minutes",
    "self_registration",
    "password_min_length",
)


def render_security(form=None, *, status: int = 200):
    current = account_settings.security_settings(request_session())
    return render_page(
        "site/security_settings.html",
        "settings",
        form=form or SecuritySettingsForm(formdata=None, obj=current),
        current=current,
        deadline=account_settings.mfa_deadline(current),
        status=status,
    )


@bp.route("/settings/security", methods=["GET", "POST"])
@requires(Permission.SECURITY_MANAGE)
def security_settings():
    form = SecuritySettingsForm()
    if request.method == "GET":
        return render_security()
    if form.validate_on_submit():
        try:
            done = account_settings.update_security_settings(
                request_session(),
                actor=current_actor(),
                **{name: getattr(form, name).data for name in SETTING_FIELDS},
            )
        except AccountError as error:
            attach_error(form, error, "mfa_policy")
        else:
            toast = "Security settings saved" if done else "Security settings unchanged"
            if wants_fragment():
                return toast_response(render_security(), toast)
            return see_other(url_for("site.security_settings"), toast=toast)
    return render_security(form, status=422)


# ---- overview -------------------------------------------------------------------------------


@bp.get("/")
@login_required
def home():
    return render_page("site/home.html", **overview())


def overview() -> dict:
    """What the home page shows: for people who can see users, the organisation at a glance;
    for everyone else nothing needs fetching."""
    if not current_user.can(Permission.USERS_VIEW):
        return {"admin": False}
    db = request_session()
    counts = {status: 0 for status in UserStatus}
    with_mfa = 0
    for status, n, mfa in db.execute(
        select(User.status, func.count(), func.count(User.mfa_enabled_at)).group_by(User.status)
    ):
        counts[status] = n
        if status == UserStatus.ACTIVE:
            with_mfa = mfa
    recent = db.execute(
        select(User.id, User.email, User.name, User.last_sign_in_at, User.last_sign_in_addr)
        .where(User.last_sign_in_at.is_not(None), User.status != UserStatus.DELETED)
        .order_by(User.last_sign_in_at.desc())
        .limit(6)
    ).all()
    entries = []
    if current_user.can(Permission.AUDIT_VIEW):
        entries = db.scalars(
            select(TenantAuditEntry).order_by(TenantAuditEntry.seq.desc()).limit(8)
        ).all()
    settings = tenant_settings()  # already read for this request's session timeouts
    active = counts[UserStatus.ACTIVE]
    return {
        "admin": True,
        "counts": counts,
        "total": sum(n for status, n in counts.items() if status != UserStatus.DELETED),
        "with_mfa": with_mfa,
        "mfa_percent": round(100 * with_mfa / active) if active else 0,
        "recent": recent,
        "entries": entries,
        "security": settings,
        "mfa_deadline": account_settings.mfa_deadline(settings),
    }
