"""Tenant admin pages: one user's page and each change to that user (profile, roles, status,
invitation, sessions, devices, MFA).

Each view is: permission, the user (404 when not this tenant's), a form, one service call, and
a response — a 303 for a plain form, or for HTMX the changed block with an `HX-Trigger` toast
(and `user-changed` so other parts of the page refresh themselves). Errors a person can correct
come back as the same block with status 422."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, request, url_for
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from portal.accounts import invitations, lifecycle
from portal.accounts import roles as account_roles
from portal.accounts.forms import (
    ProfileForm,
    RolesForm,
    SuspendForm,
)
from portal.accounts.models import User
from portal.accounts.validation import AccountError
from portal.auth import services as auth
from portal.compliance.audit import AuditAction
from portal.compliance.models import TenantAuditEntry
from portal.forms import ActionForm, attach_error
from portal.permissions import BuiltinRole, Permission, requires
from portal.site.admin_common import (
    MAX_ID,
    actor_is,
    role_choices,
)
from portal.site.auth import current_actor
from portal.site.blueprint import bp
from portal.site.common import site_base_url
from portal.web import after_change, render_page, request_session, wants_fragment

SIGN_IN_ACTIONS = (
    AuditAction.USER_SIGN_IN,
    AuditAction.USER_SIGN_IN_FAILED,
    AuditAction.USER_SIGN_IN_LOCKED,
    AuditAction.USER_SIGN_OUT,
    AuditAction.USER_NEW_DEVICE,
    AuditAction.MFA_FAILED,
)
HISTORY_SIZE = 20

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
    session = request_session()
    whole = not (block and wants_fragment())

    def shows(*parts: str) -> bool:
        return whole or block in parts

    deadline = lifecycle.restore_deadline(user)
    all_roles = account_roles.roles(session)
    keys = account_roles.user_role_keys(session, user.id)
    roles_form = forms.pop("roles_form", None) or RolesForm(formdata=None, roles=keys)
    roles_form.roles.choices = [
        SelectChoice(r.key, r.name) for r in all_roles if r.key != BuiltinRole.MEMBER
    ]
    actor = current_actor()
    context = dict(
        u=user,
        # Why the signed-in person may not change this user (they hold more), if so: the page
        # then offers no changes, and the services would refuse them anyway.
        protected=account_roles.user_change_refusal(session, user.id, actor=actor),
        locked_roles={r.key for r in all_roles}
        - account_roles.grantable_role_keys(session, actor, all_roles),
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
        sessions=auth.user_sessions(session, user.id) if shows("sessions") else [],
        current_session=getattr(current_user, "session_id", None),
        devices=auth.user_devices(session, user.id) if shows("devices") else [],
        codes_left=auth.backup_codes_left(session, user.id) if shows("mfa") else 0,
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
    return after_change(
        url_for("site.user", user_id=user.id),
        toast,
        fragment=lambda: render_user(user, block),
        events=("user-changed", *events),
    )


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
    session = request_session()
    form = RolesForm()
    form.roles.choices = role_choices(session)
    if form.validate_on_submit():
        try:
            done = account_roles.set_user_roles(
                session, user, form.roles.data or [], actor=current_actor()
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
