"""Console: the second sign-in step, and the staff member's own account (My account).

My account (`/account`) holds the password change (common-password policy), two-factor
authentication (enrol with a QR code or the key typed by hand, new backup codes, turn off where
the platform does not require it) and the member's own sessions with revoke. No route takes a
staff id; a session id is looked up among the member's own, else 404. Re-entered passwords count
wrong answers in the staff sign-in throttle, so a stolen session cannot be used to guess the
password.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from flask import session as cookie
from flask_login import current_user, login_required, login_user, logout_user
from markupsafe import Markup

from portal.auth import mfa
from portal.auth.forms import (
    ActionForm,
    ChangePasswordForm,
    MfaConfirmForm,
    PasswordConfirmForm,
    SecondFactorForm,
)
from portal.auth.services import describe_agent
from portal.auth.throttle import SignInThrottle
from portal.console import second_step
from portal.console import services as staff_services
from portal.console.auth import SignedInStaff, current_actor, mfa_enrolment_required
from portal.console.models import StaffUser
from portal.console.views import bp, safe_next
from portal.passwords import verify_password
from portal.queue import queues
from portal.validation import InputError
from portal.web import actor_for, client_addr, render_page, request_session, see_other

CODE_ERROR = "That code is not right."
TOO_MANY_TRIES = "Too many wrong passwords. Wait a few minutes and try again."
ISSUER = "MSP Portal"


def staff_throttle() -> SignInThrottle:
    return SignInThrottle(queues.redis, "staff")


def attach_error(form, error: InputError, fallback: str | None = None) -> None:
    """Show a service's error next to the field it names (or `fallback`), else above the form."""
    field = getattr(form, error.field or "", None) or (
        getattr(form, fallback) if fallback else None
    )
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, str(error)]
    else:
        form.form_errors.append(str(error))


# ---- the second sign-in step ----------------------------------------------------------------


@bp.route("/sign-in/verify", methods=["GET", "POST"])
def sign_in_verify():
    """The TOTP code (or a backup code) after the password; wrong codes are counted in the
    throttle and, on the server, against this pending step (5, then back to the password)."""
    if current_user.is_authenticated:
        return redirect(url_for("console.overview"))
    pending = second_step.current()
    db = request_session()
    member = db.get(StaffUser, pending["staff_id"]) if pending else None
    if (
        member is None
        or not member.active
        or not member.mfa_enabled
        or pending["stamp"] != second_step.password_stamp(member)
    ):
        if second_step.COOKIE_KEY in cookie:
            second_step.drop()
            flash("Your sign-in timed out. Sign in again.", "danger")
        return see_other(url_for("console.sign_in"))
    form = SecondFactorForm()
    if not form.is_submitted():
        return render_page("console/sign_in_verify.html", form=form, error=None)
    method = staff_services.check_staff_second_factor(
        db, member, form.code.data or "", actor=current_actor(), throttle=staff_throttle()
    )
    if method is None:
        db.commit()  # keep the audit entry (the throttle has counted the failure)
        if not second_step.count_failure():
            flash("That code is not right, too many times. Sign in again.", "danger")
            return see_other(url_for("console.sign_in"))
        form.code.data = ""
        return render_page("console/sign_in_verify.html", form=form, error=CODE_ERROR, status=422)
    target = safe_next(pending["next"])
    second_step.drop()
    cookie.clear()  # nothing from before sign-in survives it
    token, row = staff_services.start_staff_session(
        db,
        member,
        actor=actor_for("staff", member.id, member.email),
        user_agent=request.user_agent.string,
        method=method,
    )
    login_user(SignedInStaff(token, row.id, member, method))
    toast = None
    if method == "backup_code":
        left = staff_services.staff_backup_codes_left(db, member.id)
        toast = f"Backup code used — {left} left"
    return see_other(target, toast=toast)


# ---- My account -----------------------------------------------------------------------------


def me(*, lock: bool = False) -> StaffUser:
    db = request_session()
    member = db.get(StaffUser, current_user.staff.id, with_for_update=lock or None)
    if member is None:
        abort(404)
    return member


def mfa_required() -> bool:
    return current_app.config["PORTAL"].staff_mfa_required


def render_account(*, status: int = 200, **forms):
    db = request_session()
    member = me()
    setup = None
    secret = staff_services.pending_staff_mfa_secret(member)
    if secret:
        uri = mfa.provisioning_uri(secret, account=member.email, issuer=ISSUER)
        setup = {"qr": Markup(mfa.qr_svg(uri)), "key": mfa.format_secret(secret)}
    return render_page(
        "console/account.html",
        member=member,
        mfa_required=mfa_required(),
        enrolment_required=mfa_enrolment_required(),
        codes_left=staff_services.staff_backup_codes_left(db, member.id)
        if member.mfa_enabled
        else 0,
        setup=setup,
        sessions=staff_services.staff_sessions_of(db, member.id),
        current_session=current_user.session_id,
        describe_agent=describe_agent,
        password_form=forms.get("password_form") or ChangePasswordForm(formdata=None),
        confirm_form=forms.get("confirm_form") or MfaConfirmForm(formdata=None),
        regenerate_form=forms.get("regenerate_form")
        or PasswordConfirmForm(formdata=None, prefix="regenerate"),
        disable_form=forms.get("disable_form")
        or PasswordConfirmForm(formdata=None, prefix="disable"),
        action_form=ActionForm(formdata=None),
        status=status,
    )


def password_refused(member: StaffUser, password: str, field) -> bool:
    """Check a re-entered password; a wrong one is counted like a failed sign-in."""
    throttle = staff_throttle()
    if throttle.wait_seconds(member.email, client_addr()):
        field.errors = [*field.errors, TOO_MANY_TRIES]
        return True
    if not verify_password(member.password_hash, password or ""):
        throttle.failed(member.email, client_addr())
        field.errors = [*field.errors, "That is not your password."]
        return True
    return False


@bp.get("/account")
@login_required
def account():
    return render_account()


@bp.post("/account/password")
@login_required
def account_password():
    """Change the password; every other session of the member ends."""
    member = me(lock=True)
    form = ChangePasswordForm()
    throttle = staff_throttle()
    if form.validate_on_submit():
        if throttle.wait_seconds(member.email, client_addr()):
            form.current_password.errors = [*form.current_password.errors, TOO_MANY_TRIES]
        else:
            try:
                ended = staff_services.change_staff_password(
                    request_session(),
                    member,
                    current=form.current_password.data,
                    new=form.new_password.data,
                    actor=current_actor(),
                    current_session=current_user.session_id,
                )
            except InputError as error:
                if error.field == "current_password":
                    throttle.failed(member.email, client_addr())
                attach_error(form, error, "new_password")
            else:
                toast = "Password changed"
                if ended:
                    toast += f" — signed out of {ended} other session{'' if ended == 1 else 's'}"
                return see_other(url_for("console.account"), toast=toast)
    return render_account(status=422, password_form=form)


@bp.post("/account/mfa/start")
@login_required
def account_mfa_start():
    if not ActionForm().validate_on_submit():
        abort(400)
    member = me(lock=True)
    if not member.mfa_enabled:
        staff_services.start_staff_mfa_enrolment(request_session(), member)
    return see_other(url_for("console.account", _anchor="mfa"))


@bp.post("/account/mfa/confirm")
@login_required
def account_mfa_confirm():
    member = me(lock=True)
    form = MfaConfirmForm()
    if form.validate_on_submit():
        try:
            codes = staff_services.confirm_staff_mfa_enrolment(
                request_session(),
                member,
                form.code.data,
                actor=current_actor(),
                current_session=current_user.session_id,
            )
        except InputError as error:
            attach_error(form, error, "code")
        else:
            return render_page("console/backup_codes.html", codes=codes, enrolled=True)
    return render_account(status=422, confirm_form=form)


@bp.post("/account/mfa/backup-codes")
@login_required
def account_mfa_backup_codes():
    """New backup codes (the old ones stop working), after re-entering the password."""
    member = me(lock=True)
    form = PasswordConfirmForm(prefix="regenerate")
    if form.validate_on_submit() and not password_refused(
        member, form.password.data, form.password
    ):
        try:
            codes = staff_services.regenerate_staff_backup_codes(
                request_session(), member, actor=current_actor()
            )
        except InputError as error:
            attach_error(form, error)
        else:
            return render_page("console/backup_codes.html", codes=codes, enrolled=False)
    return render_account(status=422, regenerate_form=form)


@bp.post("/account/mfa/disable")
@login_required
def account_mfa_disable():
    member = me(lock=True)
    form = PasswordConfirmForm(prefix="disable")
    if form.validate_on_submit():
        throttle = staff_throttle()
        if throttle.wait_seconds(member.email, client_addr()):
            form.password.errors = [*form.password.errors, TOO_MANY_TRIES]
        else:
            try:
                staff_services.disable_staff_mfa(
                    request_session(),
                    member,
                    password=form.password.data,
                    actor=current_actor(),
                    required=mfa_required(),
                )
            except InputError as error:
                if error.field == "password":
                    throttle.failed(member.email, client_addr())
                attach_error(form, error)
            else:
                return see_other(
                    url_for("console.account", _anchor="mfa"),
                    toast="Two-factor authentication turned off",
                )
    return render_account(status=422, disable_form=form)


@bp.post("/account/sessions/<int:session_id>/revoke")
@login_required
def account_session_revoke(session_id):
    """End one of the member's own sessions, and the tenant visits it started."""
    if not ActionForm().validate_on_submit():
        abort(400)
    if not 0 < session_id < 2**31:  # not an id at all (int4)
        abort(404)
    if not staff_services.revoke_staff_session(
        request_session(), current_user.staff.id, session_id, actor=current_actor()
    ):
        abort(404)
    if session_id == current_user.session_id:
        logout_user()
        cookie.clear()
        return see_other(url_for("console.sign_in"), toast="You signed out of this browser")
    return see_other(url_for("console.account", _anchor="sessions"), toast="Session ended")
