"""My account: profile, password and two-factor authentication, sessions and devices.

Every signed-in user has these pages, for their own account only: no permission is needed and
no route takes a user id (a session or device id is looked up among the user's own, else 404).
Re-entered passwords (change password, backup codes, turning MFA off) count wrong answers in
the sign-in throttle, so a stolen session cannot be used to guess the password.
"""

from __future__ import annotations

import json
from functools import wraps

from flask import abort, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup

from portal.accounts import lifecycle, roles, settings
from portal.accounts.models import User, UserSession
from portal.auth import mfa
from portal.auth import services as auth
from portal.auth.forms import (
    ActionForm,
    ChangePasswordForm,
    MfaConfirmForm,
    PasswordConfirmForm,
    ProfileForm,
)
from portal.passwords import verify_password
from portal.site.auth import DEVICE_COOKIE, current_actor, tenant_settings
from portal.site.blueprint import bp
from portal.site.common import attach_error, sign_in_throttle, signed_out_here
from portal.validation import InputError
from portal.web import (
    client_addr,
    current_tenant,
    render_page,
    request_session,
    see_other,
    wants_fragment,
)

TOO_MANY_TRIES = "Too many wrong passwords. Wait a few minutes and try again."


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


def saved(fragment, location: str, toast: str):
    """After a change: the re-rendered block for HTMX (with a toast event), else back to the page."""
    if wants_fragment():
        response = fragment()
        response.headers["HX-Trigger"] = json.dumps({"toast": toast})
        return response
    return see_other(location, toast=toast)


def password_refused(user: User, password: str, field) -> bool:
    """Check a re-entered password; a wrong one is counted like a failed sign-in."""
    throttle = sign_in_throttle()
    if throttle.wait_seconds(user.email, client_addr()):
        field.errors = [*field.errors, TOO_MANY_TRIES]
        return True
    if not verify_password(user.password_hash, password or ""):
        throttle.failed(user.email, client_addr())
        field.errors = [*field.errors, "That is not your password."]
        return True
    return False


# ---- profile ------------------------------------------------------------------------------


def render_account(user: User, form: ProfileForm | None = None, *, status: int = 200):
    db = request_session()
    names = roles.role_names(db)
    keys = roles.user_role_keys(db, user.id)
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
            return saved(
                lambda: render_account(user),
                url_for("site.account"),
                "Profile saved" if changed else "Nothing to change",
            )
    return render_account(user, form, status=422)


# ---- password and two-factor authentication -----------------------------------------------


def render_security(block: str | None = None, *, status: int = 200, **forms):
    db = request_session()
    user = me()
    setup = None
    secret = auth.pending_mfa_secret(user)
    if secret:
        tenant = current_tenant()
        uri = mfa.provisioning_uri(secret, account=user.email, issuer=tenant.name)
        setup = {"qr": Markup(mfa.qr_svg(uri)), "key": mfa.format_secret(secret)}
    return render_page(
        "site/account_security.html",
        block,
        user=user,
        welcome=request.args.get("welcome") == "1",
        mfa_required=settings.mfa_enforced_for(tenant_settings(), current_user.permissions),
        codes_left=auth.backup_codes_left(db, user.id) if user.mfa_enabled else 0,
        setup=setup,
        password_form=forms.get("password_form") or ChangePasswordForm(formdata=None),
        confirm_form=forms.get("confirm_form") or MfaConfirmForm(formdata=None),
        regenerate_form=forms.get("regenerate_form")
        or PasswordConfirmForm(formdata=None, prefix="regenerate"),
        disable_form=forms.get("disable_form")
        or PasswordConfirmForm(formdata=None, prefix="disable"),
        action_form=ActionForm(formdata=None),
        status=status,
    )


@bp.route("/account/security", methods=["GET", "POST"])
@own_account
def account_security():
    """The page; a POST changes the password."""
    if request.method == "GET":
        return render_security()
    user = me(lock=True)
    form = ChangePasswordForm()
    throttle = sign_in_throttle()
    if form.validate_on_submit():
        if throttle.wait_seconds(user.email, client_addr()):
            form.current_password.errors = [*form.current_password.errors, TOO_MANY_TRIES]
        else:
            try:
                ended = auth.change_password(
                    request_session(),
                    user,
                    current=form.current_password.data,
                    new=form.new_password.data,
                    actor=current_actor(),
                    sign_out_others=form.sign_out_others.data,
                    current_session=current_user.session_id,
                )
            except InputError as error:
                if error.field == "current_password":
                    throttle.failed(user.email, client_addr())
                attach_error(form, error, "new_password")
            else:
                toast = "Password changed"
                if ended:
                    toast += f" — signed out of {ended} other session{'' if ended == 1 else 's'}"
                return saved(
                    lambda: render_security("password_panel"),
                    url_for("site.account_security"),
                    toast,
                )
    return render_security("password_panel", status=422, password_form=form)


@bp.post("/account/mfa/start")
@own_account
def mfa_start():
    if not ActionForm().validate_on_submit():
        abort(400)
    user = me(lock=True)
    if user.mfa_enabled:
        return see_other(url_for("site.account_security"))
    auth.start_mfa_enrolment(request_session(), user)
    if wants_fragment():
        return render_security("mfa_panel")
    return see_other(url_for("site.account_security", _anchor="mfa"))


@bp.post("/account/mfa/confirm")
@own_account
def mfa_confirm():
    user = me(lock=True)
    form = MfaConfirmForm()
    if form.validate_on_submit():
        try:
            codes = auth.confirm_mfa_enrolment(
                request_session(), user, form.code.data, actor=current_actor()
            )
        except InputError as error:
            attach_error(form, error, "code")
        else:
            return render_page("site/backup_codes.html", codes=codes, enrolled=True)
    return render_security("mfa_panel", status=422, confirm_form=form)


@bp.post("/account/mfa/backup-codes")
@own_account
def mfa_backup_codes():
    """New backup codes (the old ones stop working), after re-entering the password."""
    user = me(lock=True)
    form = PasswordConfirmForm(prefix="regenerate")
    if form.validate_on_submit() and not password_refused(user, form.password.data, form.password):
        try:
            codes = auth.regenerate_backup_codes(request_session(), user, actor=current_actor())
        except InputError as error:
            attach_error(form, error)
        else:
            return render_page("site/backup_codes.html", codes=codes, enrolled=False)
    return render_security("mfa_panel", status=422, regenerate_form=form)


@bp.post("/account/mfa/disable")
@own_account
def mfa_disable():
    user = me(lock=True)
    form = PasswordConfirmForm(prefix="disable")
    if form.validate_on_submit():
        throttle = sign_in_throttle()
        if throttle.wait_seconds(user.email, client_addr()):
            form.password.errors = [*form.password.errors, TOO_MANY_TRIES]
        else:
            try:
                auth.disable_mfa(
                    request_session(),
                    user,
                    password=form.password.data,
                    actor=current_actor(),
                    required=settings.mfa_enforced_for(tenant_settings(), current_user.permissions),
                )
            except InputError as error:
                if error.field == "password":
                    throttle.failed(user.email, client_addr())
                attach_error(form, error)
            else:
                return saved(
                    lambda: render_security("mfa_panel"),
                    url_for("site.account_security", _anchor="mfa"),
                    "Two-factor authentication turned off",
                )
    return render_security("mfa_panel", status=422, disable_form=form)


# ---- sessions and devices -----------------------------------------------------------------


def render_sessions(block: str | None = None, *, status: int = 200):
    db = request_session()
    return render_page(
        "site/account_sessions.html",
        block,
        sessions=auth.user_sessions(db, current_user.id),
        devices=auth.user_devices(db, current_user.id),
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
    return saved(
        lambda: render_sessions("sessions_panel"), url_for("site.account_sessions"), "Session ended"
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
    return saved(lambda: render_sessions("sessions_panel"), url_for("site.account_sessions"), toast)


@bp.post("/account/devices/<int:device_id>/forget")
@own_account
def account_device_forget(device_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    db = request_session()
    here = db.get(UserSession, current_user.session_id)
    this_browser = here is not None and here.device_id == device_id
    if not auth.forget_device(db, current_user.id, device_id, actor=current_actor()):
        abort(404)
    if this_browser:
        response = signed_out_here("This browser was forgotten and signed out")
        response.delete_cookie(DEVICE_COOKIE)
        return response
    return saved(
        lambda: render_sessions("sessions_panel"),
        url_for("site.account_sessions"),
        "Device forgotten — its sessions ended",
    )
