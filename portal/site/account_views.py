"""My account: profile, password and two-factor authentication, sessions and devices.

Every signed-in user has these pages, for their own account only: no permission is needed and
no route takes a user id (a session or device id is looked up among the user's own, else 404).
The password and two-factor steps are the console's too (portal/account_security.py), with the
tenant's services, throttle and MFA policy.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, request, url_for
from flask_login import current_user, login_required

from portal import account_security as security
from portal.accounts import lifecycle, roles, settings
from portal.accounts.models import User, UserSession
from portal.auth import flood
from portal.auth import services as auth
from portal.auth.forms import (
    ChangePasswordForm,
    MfaConfirmForm,
    PasswordConfirmForm,
    ProfileForm,
)
from portal.forms import ActionForm, attach_error
from portal.site.auth import DEVICE_COOKIE, current_actor, tenant_settings
from portal.site.blueprint import bp
from portal.site.common import sign_in_throttle, signed_out_here
from portal.validation import InputError
from portal.web import after_change, current_tenant, render_page, request_session


def own_account(view):
    """Signed in as a user of this tenant (staff visits have no account here)."""

    @login_required
    @wraps(view)
    def wrapped(*args, **kwargs):
        if getattr(current_user, "is_staff", False):
            abort(404)
        return view(*args, **kwargs)

    return wrapped


def me(*, lock: bool = False) -> User:
    user = lifecycle.get_user(request_session(), current_user.id, lock=lock)
    if user is None:  # deleted under our feet; the session goes with the user
        abort(404)
    return user


# ---- profile ------------------------------------------------------------------------------


def render_account(user: User, form: ProfileForm | None = None, *, status: int = 200):
    session = request_session()
    names = roles.role_names(session)
    keys = roles.user_role_keys(session, user.id)
    return render_page(
        "site/account.html",
        "profile",
        user=user,
        form=form or ProfileForm(formdata=None, name=user.name),
        roles=[names.get(key, key) for key in keys] or ["Member"],
        status=status,
    )


@bp.route("/account", methods=["GET", "POST"])
@own_account
def account():
    if request.method == "GET":
        return render_account(me())
    user = me(lock=True)
    form = ProfileForm()
    if form.validate_on_submit():
        try:
            changed = lifecycle.update_profile(
                request_session(), user, name=form.name.data or "", actor=current_actor()
            )
        except InputError as error:
            attach_error(form, error, "name")
        else:
            return after_change(
                url_for("site.account"),
                "Profile saved" if changed else "Nothing to change",
                fragment=lambda: render_account(user),
            )
    return render_account(user, form, status=422)


# ---- password and two-factor authentication -----------------------------------------------


def mfa_required() -> bool:
    return settings.mfa_enforced_for(tenant_settings(), current_user.permissions)


def render_security(block: str | None = None, *, status: int = 200, **forms):
    user = me()
    return render_page(
        "site/account_security.html",
        block,
        user=user,
        welcome=request.args.get("welcome") == "1",
        mfa_required=mfa_required(),
        codes_left=auth.backup_codes_left(request_session(), user.id) if user.mfa_enabled else 0,
        setup=security.enrolment_setup(
            auth.pending_mfa_secret(user), account=user.email, issuer=current_tenant().name
        ),
        password_form=forms.get("password_form") or ChangePasswordForm(formdata=None),
        confirm_form=forms.get("confirm_form") or MfaConfirmForm(formdata=None),
        regenerate_form=forms.get("regenerate_form")
        or PasswordConfirmForm(formdata=None, prefix="regenerate"),
        disable_form=forms.get("disable_form")
        or PasswordConfirmForm(formdata=None, prefix="disable"),
        action_form=ActionForm(formdata=None),
        status=status,
    )


def change_password(session, user, form, *, actor) -> int:
    """Other sessions end if the user ticked "sign out my other sessions"."""
    return auth.change_password(
        session,
        user,
        current=form.current_password.data,
        new=form.new_password.data,
        actor=actor,
        sign_out_others=form.sign_out_others.data,
        current_session=current_user.session_id,
    )


ACCOUNT = security.AccountSecurity(
    page="site.account_security",
    codes_template="site/backup_codes.html",
    render=render_security,
    owner=me,
    actor=current_actor,
    throttle=sign_in_throttle,
    mfa_required=mfa_required,
    change_password=change_password,
    start_enrolment=auth.start_mfa_enrolment,
    confirm_enrolment=auth.confirm_mfa_enrolment,
    regenerate_backup_codes=auth.regenerate_backup_codes,
    disable_mfa=auth.disable_mfa,
)


@bp.route("/account/security", methods=["GET", "POST"])
@flood.hashes_password
@own_account
def account_security():
    """The page; a POST changes the password."""
    if request.method == "GET":
        return render_security()
    return security.change_password(ACCOUNT)


@bp.post("/account/mfa/start")
@own_account
def mfa_start():
    return security.start_mfa(ACCOUNT)


@bp.post("/account/mfa/confirm")
@own_account
def mfa_confirm():
    return security.confirm_mfa(ACCOUNT)


@bp.post("/account/mfa/backup-codes")
@flood.hashes_password
@own_account
def mfa_backup_codes():
    return security.new_backup_codes(ACCOUNT)


@bp.post("/account/mfa/disable")
@flood.hashes_password
@own_account
def mfa_disable():
    return security.turn_off_mfa(ACCOUNT)


# ---- sessions and devices -----------------------------------------------------------------


def render_sessions(block: str | None = None, *, status: int = 200):
    session = request_session()
    return render_page(
        "site/account_sessions.html",
        block,
        sessions=auth.user_sessions(session, current_user.id),
        devices=auth.user_devices(session, current_user.id),
        current_session=current_user.session_id,
        describe_agent=auth.describe_agent,
        action_form=ActionForm(formdata=None),
        status=status,
    )


@bp.get("/account/sessions")
@own_account
def account_sessions():
    return render_sessions()


@bp.post("/account/sessions/<int:session_id>/revoke")
@own_account
def account_session_revoke(session_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    if not lifecycle.revoke_session(
        request_session(), current_user.id, session_id, actor=current_actor()
    ):
        abort(404)
    if session_id == current_user.session_id:
        return signed_out_here("You signed out of this browser")
    return after_change(
        url_for("site.account_sessions"),
        "Session ended",
        fragment=lambda: render_sessions("sessions_panel"),
    )


@bp.post("/account/sessions/revoke-others")
@own_account
def account_sessions_revoke_others():
    if not ActionForm().validate_on_submit():
        abort(400)
    ended = lifecycle.revoke_all_sessions(
        request_session(),
        me(lock=True),
        actor=current_actor(),
        except_session=current_user.session_id,
    )
    toast = (
        f"Signed out of {ended} other session{'' if ended == 1 else 's'}"
        if ended
        else "No other sessions to sign out"
    )
    return after_change(
        url_for("site.account_sessions"), toast, fragment=lambda: render_sessions("sessions_panel")
    )


@bp.post("/account/devices/<int:device_id>/forget")
@own_account
def account_device_forget(device_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    session = request_session()
    here = session.get(UserSession, current_user.session_id)
    this_browser = here is not None and here.device_id == device_id
    if not auth.forget_device(session, current_user.id, device_id, actor=current_actor()):
        abort(404)
    if this_browser:
        response = signed_out_here("This browser was forgotten and signed out")
        response.delete_cookie(DEVICE_COOKIE)
        return response
    return after_change(
        url_for("site.account_sessions"),
        "Device forgotten — its sessions ended",
        fragment=lambda: render_sessions("sessions_panel"),
    )
