"""The tenant's Sessions page: every live session in the organisation, for admins (A6), with
revoking one or a selection. Routes attach to the site blueprint.

- Live means what sign-in would still accept: within the tenant's idle and absolute timeouts,
  of an active user. Expired rows linger until their next use deletes them; they are not shown.
- The list is a keyset walk over (last_seen_at, id), newest activity first; the cursor is
  checked for shape before it reaches SQL, so a tampered one gives the first page, never a 500.
- Revoking goes through `accounts.lifecycle.revoke_session` (which writes SESSION_REVOKE); the
  person is signed out at their next request. Revoking the viewer's own session signs them out
  here at once. Another tenant's session id is not in this schema: 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from flask import abort, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict
from wtforms import HiddenField, SelectMultipleField

from portal.accounts import lifecycle, validation
from portal.accounts.forms import ActionForm
from portal.accounts.listing import search_condition
from portal.accounts.models import Device, User, UserSession, UserStatus
from portal.auth.services import describe_agent
from portal.pagination import Page, keyset_page
from portal.permissions import Permission, requires
from portal.site.admin_views import MAX_ID, toast_response
from portal.site.auth import current_actor, tenant_settings
from portal.site.blueprint import bp
from portal.site.common import signed_out_here
from portal.validation import InputError, selected_ids
from portal.web import local_path, render_page, request_session, see_other, wants_fragment

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


@dataclass(frozen=True)
class SessionFilters:
    """The list's query, normalised: what the URL may carry, with junk dropped."""

    q: str = ""
    method: str = ""  # a key of METHODS, "" = any
    within: str = ""  # a key of WITHIN, "" = any time within the timeouts

    def narrowed(self) -> bool:
        return bool(self.q or self.method or self.within)

    def args(self) -> dict[str, str]:
        return {
            k: v for k, v in (("q", self.q), ("method", self.method), ("within", self.within)) if v
        }


def parse_filters(args) -> SessionFilters:
    method = (args.get("method") or "").strip()
    within = (args.get("within") or "").strip()
    return SessionFilters(
        q=" ".join((args.get("q") or "").split())[:100],
        method=method if method in METHODS else "",
        within=within if within in WITHIN else "",
    )


def live_sessions(
    session, filters: SessionFilters, *, after: str | None, before: str | None
) -> tuple[Page, int]:
    """One page of the tenant's live sessions, with their user and device, and how many match."""
    settings = tenant_settings()
    now = datetime.now(UTC)
    conditions = [
        UserSession.last_seen_at >= now - timedelta(minutes=settings.idle_timeout_minutes),
        UserSession.created_at >= now - timedelta(minutes=settings.absolute_timeout_minutes),
        User.status == UserStatus.ACTIVE,
    ]
    if filters.q:
        conditions.append(search_condition(filters.q))  # as on the users list
    if filters.method:
        conditions.append(UserSession.method == filters.method)
    if filters.within:
        conditions.append(UserSession.last_seen_at >= now - WITHIN[filters.within][1])
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
    page = keyset_page(
        session,
        select(live),
        [live.c.last_seen_at, live.c.id],
        descending=True,
        after=after,
        before=before,
        size=PAGE_SIZE,
    )
    if not after and not before and page.next_cursor is None:
        total = len(page.rows)  # the whole list fits on its first page
    else:
        total = session.scalar(select(func.count()).select_from(live))
    return page, total


def device_label(row) -> str:
    return row.device_label or describe_agent(row.user_agent)


def list_url(filters: SessionFilters, **cursor) -> str:
    return url_for("site.sessions", **filters.args(), **{k: v for k, v in cursor.items() if v})


def safe_list_url(target: str | None) -> str:
    """`target` if it is this list (with any query), else the list itself (no open redirect)."""
    return local_path(target, url_for("site.sessions"), under="/sessions")


def render_sessions(args, *, status: int = 200, **extra):
    """The sessions page (or its results block for HTMX) for the query `args`."""
    db = request_session()
    filters = parse_filters(args)
    # keyset_page ignores tampered cursors (first page).
    after, before = (args.get(k, "")[:200] or None for k in ("after", "before"))
    page, total = live_sessions(db, filters, after=after, before=before)
    revoke = current_user.can(Permission.SESSIONS_REVOKE)
    here = list_url(filters, after=after, before=before)
    response = render_page(
        "site/sessions.html",
        "results",
        status=status,
        rows=page.rows,
        total=total,
        f=filters,
        methods=METHODS,
        within_choices=WITHIN,
        label_of=device_label,
        current_session=getattr(current_user, "session_id", None),
        next_url=list_url(filters, after=page.next_cursor) if page.next_cursor else None,
        prev_url=list_url(filters, before=page.prev_cursor) if page.prev_cursor else None,
        here=here,
        revoke=revoke,
        bulk_form=extra.pop("bulk_form", None) or SessionsBulkForm(formdata=None),
        confirm=extra.pop("confirm", None),
        consequence=CONSEQUENCE,
        **extra,
    )
    if request.method == "GET" and wants_fragment():
        # The address bar shows the list's own URL, not every empty field of the filter form.
        response.headers["HX-Push-Url"] = here
    return response


def list_args(target: str) -> MultiDict:
    return MultiDict(parse_qsl(urlsplit(target).query))


def revoked(back: str, toast: str, *, signed_out_here_too: bool):
    """After revoking: signed out here if the viewer's own session went; else the list again
    (the results block with a toast for HTMX, a 303 back to it otherwise)."""
    if signed_out_here_too:
        return signed_out_here("Your own session was revoked — you are signed out")
    if wants_fragment():
        return toast_response(render_sessions(list_args(back)), toast, "sessions-changed")
    return see_other(back, toast=toast)


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
    db = request_session()
    owner = db.execute(
        select(UserSession.user_id, User.email)
        .join_from(UserSession, User, User.id == UserSession.user_id)
        .where(UserSession.id == session_id)
    ).first()
    try:
        done = owner is not None and lifecycle.revoke_session(
            db, owner.user_id, session_id, actor=current_actor()
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
    db = request_session()
    form = SessionsBulkForm()
    back = safe_list_url(form.next.data)
    if not form.validate_on_submit() or not form.ids.data:
        if not form.ids.errors:
            form.ids.errors = ["Select at least one session."]
        return render_sessions(list_args(back), status=422, bulk_form=form)
    try:
        ids = selected_ids(form.ids.data, noun="session")
    except InputError as error:
        form.ids.errors = [str(error)]
        return render_sessions(list_args(back), status=422, bulk_form=form)
    chosen = db.execute(
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
            with db.begin_nested():
                if lifecycle.revoke_session(db, row.user_id, row.id, actor=current_actor()):
                    ended.append(row)
        except validation.AccountError:  # its owner holds more than the viewer (A10)
            refused += 1
    n = len(ended)
    toast = f"{n} session{'' if n == 1 else 's'} revoked" if n else "No sessions to revoke"
    if refused:
        toast += f"; {refused} refused: their owners hold permissions you do not"
    return revoked(back, toast, signed_out_here_too=any(row.id == own for row in ended))
