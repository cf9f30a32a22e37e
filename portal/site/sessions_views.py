"""The tenant's Sessions page: every live session in the organisation, for admins (A6), with
revoking one or a selection. Routes attach to the site blueprint.

- Live means what sign-in would still accept: within the tenant's idle and absolute timeouts,
  of an active user. Expired rows linger until their next use deletes them; they are not shown.
- The list is a keyset walk over (last_seen_at, id), newest activity first, through the list
  machinery (`portal.pagination`): a tampered cursor gives the first page, never a 500.
- Revoking goes through `accounts.lifecycle.revoke_session` (which writes SESSION_REVOKE); the
  person is signed out at their next request. Revoking the viewer's own session signs them out
  here at once. Another tenant's session id is not in this schema: 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from urllib.parse import parse_qsl, urlsplit

from flask import abort, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from wtforms import HiddenField, SelectMultipleField

from portal.accounts import lifecycle, validation
from portal.accounts.listing import search_condition
from portal.accounts.models import Device, User, UserSession, UserStatus
from portal.auth.services import describe_agent
from portal.forms import ActionForm, attach_error
from portal.pagination import Listing, ListSpec, choice_filter, text_filter
from portal.permissions import Permission, requires
from portal.site.admin_common import MAX_ID
from portal.site.auth import current_actor, tenant_settings
from portal.site.blueprint import bp
from portal.site.common import signed_out_here
from portal.validation import InputError, selected_ids
from portal.web import after_change, local_path, render_page, request_session, wants_fragment

PAGE_SIZE = 50
METHODS = {
    "password": "Password",
    "totp": "Password and app code",
    "backup_code": "Password and backup code",
    "invitation": "Invitation link",
}
WITHIN = {
    "15m": ("15 minutes", timedelta(minutes=15)),
    "1h": ("1 hour", timedelta(hours=1)),
    "24h": ("24 hours", timedelta(hours=24)),
}
CONSEQUENCE = "They are signed out at their next request and must sign in again."
CONFIRM_SHOWN = 10


class SessionsBulkForm(FlaskForm):
    ids = SelectMultipleField("Sessions", coerce=int, validate_choice=False)
    confirmed = HiddenField()
    next = HiddenField()


SESSIONS = ListSpec(
    filters=(
        text_filter("q", 100),  # as on the users list
        choice_filter("method", METHODS),
        choice_filter("within", WITHIN),  # "" = any time within the timeouts
    ),
    sorts={"last_seen": ("last_seen_at", "id")},
    default_sort="-last_seen",
    size=PAGE_SIZE,
)


def live_sessions(session, args, *, url=None) -> Listing:
    """One page of the tenant's live sessions for the query string `args`, with their user and
    device, and how many match."""
    query = SESSIONS.parse(args)
    filters = query.filters
    settings = tenant_settings()
    now = datetime.now(UTC)
    conditions = [
        UserSession.last_seen_at >= now - timedelta(minutes=settings.idle_timeout_minutes),
        UserSession.created_at >= now - timedelta(minutes=settings.absolute_timeout_minutes),
        User.status == UserStatus.ACTIVE,
    ]
    if filters["q"]:
        conditions.append(search_condition(filters["q"]))
    if filters["method"]:
        conditions.append(UserSession.method == filters["method"])
    if filters["within"]:
        conditions.append(UserSession.last_seen_at >= now - WITHIN[filters["within"]][1])
    live = (
        select(
            UserSession.id,
            UserSession.user_id,
            UserSession.created_at,
            UserSession.last_seen_at,
            UserSession.client_addr,
            UserSession.user_agent,
            UserSession.method,
            User.email,
            User.name,
            Device.label.label("device_label"),
        )
        .join_from(UserSession, User, User.id == UserSession.user_id)
        .outerjoin(Device, Device.id == UserSession.device_id)
        .where(*conditions)
        .subquery("live")
    )
    return SESSIONS.page(session, live, query, url=url, size=PAGE_SIZE)


def device_label(row) -> str:
    return row.device_label or describe_agent(row.user_agent)


def safe_list_url(target: str | None) -> str:
    """`target` if it is this list (with any query), else the list itself (no open redirect)."""
    return local_path(target, url_for("site.sessions"), under="/sessions")


def render_sessions(args, *, status: int = 200, **extra):
    """The sessions page (or its results block for HTMX) for the query `args`."""
    sessions = live_sessions(request_session(), args, url=partial(url_for, "site.sessions"))
    revoke = current_user.can(Permission.SESSIONS_REVOKE)
    response = render_page(
        "site/sessions.html",
        "results",
        status=status,
        sessions=sessions,
        f=sessions.filters,
        methods=METHODS,
        within_choices=WITHIN,
        label_of=device_label,
        current_session=getattr(current_user, "session_id", None),
        here=sessions.here,
        revoke=revoke,
        bulk_form=extra.pop("bulk_form", None) or SessionsBulkForm(formdata=None),
        confirm=extra.pop("confirm", None),
        consequence=CONSEQUENCE,
        **extra,
    )
    if request.method == "GET" and wants_fragment():
        # The address bar shows the list's own URL, not every empty field of the filter form.
        response.headers["HX-Push-Url"] = sessions.here
    return response


def list_args(target: str) -> MultiDict:
    return MultiDict(parse_qsl(urlsplit(target).query))


def revoked(back: str, toast: str, *, signed_out_here_too: bool):
    """After revoking: signed out here if the viewer's own session went; else the list again
    (the results block with a toast for HTMX, a 303 back to it otherwise)."""
    if signed_out_here_too:
        return signed_out_here("Your own session was revoked — you are signed out")
    return after_change(
        back,
        toast,
        fragment=lambda: render_sessions(list_args(back)),
        events=("sessions-changed",),
    )


@bp.get("/sessions")
@requires(Permission.USERS_VIEW)
def sessions():
    return render_sessions(request.args)


@bp.post("/sessions/<int:session_id>/revoke")
@requires(Permission.SESSIONS_REVOKE)
def session_revoke(session_id):
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    if not 0 < session_id <= MAX_ID:
        abort(404)
    session = request_session()
    owner = session.execute(
        select(UserSession.user_id, User.email)
        .join_from(UserSession, User, User.id == UserSession.user_id)
        .where(UserSession.id == session_id)
    ).first()
    try:
        done = owner is not None and lifecycle.revoke_session(
            session, owner.user_id, session_id, actor=current_actor()
        )
    except validation.AccountError as error:  # its owner holds more than the viewer (A10)
        refused = SessionsBulkForm(formdata=None)
        refused.form_errors.append(str(error))
        back = safe_list_url(request.form.get("next"))
        return render_sessions(list_args(back), status=422, bulk_form=refused)
    if not done:
        abort(404)
    return revoked(
        safe_list_url(request.form.get("next")),
        f"Session of {owner.email} revoked",
        signed_out_here_too=session_id == getattr(current_user, "session_id", None),
    )


@bp.post("/sessions/revoke")
@requires(Permission.SESSIONS_REVOKE)
def sessions_revoke():
    session = request_session()
    form = SessionsBulkForm()
    back = safe_list_url(form.next.data)
    if not form.validate_on_submit() or not form.ids.data:
        if not form.ids.errors:
            form.ids.errors = ["Select at least one session."]
        return render_sessions(list_args(back), status=422, bulk_form=form)
    try:
        ids = selected_ids(form.ids.data, noun="session")
    except InputError as error:
        attach_error(form, error)
        return render_sessions(list_args(back), status=422, bulk_form=form)
    chosen = session.execute(
        select(
            UserSession.id,
            UserSession.user_id,
            UserSession.client_addr,
            UserSession.user_agent,
            User.email,
            Device.label.label("device_label"),
        )
        .join_from(UserSession, User, User.id == UserSession.user_id)
        .outerjoin(Device, Device.id == UserSession.device_id)
        .where(UserSession.id.in_(ids))
        .order_by(User.email, UserSession.id)
    ).all()
    own = getattr(current_user, "session_id", None)
    if form.confirmed.data != "yes":
        confirm = {"sessions": chosen, "includes_own": any(row.id == own for row in chosen)}
        return render_sessions(list_args(back), bulk_form=form, confirm=confirm)
    ended, refused = [], 0
    for row in chosen:
        try:
            with session.begin_nested():
                if lifecycle.revoke_session(session, row.user_id, row.id, actor=current_actor()):
                    ended.append(row)
        except validation.AccountError:  # its owner holds more than the viewer (A10)
            refused += 1
    n = len(ended)
    toast = f"{n} session{'' if n == 1 else 's'} revoked" if n else "No sessions to revoke"
    if refused:
        toast += f"; {refused} refused: their owners hold permissions you do not"
    return revoked(back, toast, signed_out_here_too=any(row.id == own for row in ended))
