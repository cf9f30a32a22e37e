"""Console: the second sign-in step, and the staff member's own account (My account).

My account (`/account`) holds the password change (common-password policy), two-factor
authentication (enrol with a QR code or the key typed by hand, new backup codes, turn off where
the platform does not require it) and the member's own sessions with revoke. No route takes a
staff id; a session id is looked up among the member's own, else 404. The password and MFA steps
are the tenant site's (portal/account_security.py), with the staff services and throttle.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from flask import session as cookie
from flask_login import current_user, login_required, login_user, logout_user

from portal import account_security as security
from portal.auth import flood
from portal.auth.forms import (
    ChangePasswordForm,
    MfaConfirmForm,
    PasswordConfirmForm,
    SecondFactorForm,
)
from portal.auth.services import describe_agent
from portal.auth.throttle import SignInThrottle
from portal.console import second_step
from portal.console.auth import SignedInStaff, current_actor, mfa_enrolment_required
from portal.console.blueprint import bp
from portal.console.common import safe_next
from portal.forms import ActionForm
from portal.queue import queues
from portal.staff.members import change_staff_password
from portal.staff.mfa import (
    check_staff_second_factor,
    confirm_staff_mfa_enrolment,
    disable_staff_mfa,
    pending_staff_mfa_secret,
    regenerate_staff_backup_codes,
    staff_backup_codes_left,
    start_staff_mfa_enrolment,
)
from portal.staff.models import StaffUser
from portal.staff.sessions import revoke_staff_session, staff_sessions_of, start_staff_session
from portal.web import actor_for, after_change, render_page, request_session, see_other

CODE_ERROR = "That code is not right."
ISSUER = "MSP Portal"


def staff_throttle() -> SignInThrottle:
    return SignInThrottle(queues.redis, "staff")


# ---- the second sign-in step ----------------------------------------------------------------


@bp.route("/sign-in/verify", methods=["GET", "POST"])
@flood.checks_code
def sign_in_verify():
    """The TOTP code (or a backup code) after the password; wrong codes are counted in the
    throttle and, on the server, against this pending step (5, then back to the password)."""
    if current_user.is_authenticated:
        return redirect(url_for("console.overview"))
    pending = second_step.current()
    session = request_session()
    member = session.get(StaffUser, pending["staff_id"]) if pending else None
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
    method = check_staff_second_factor(
        session, member, form.code.data or "", actor=current_actor(), throttle=staff_throttle()
    )
    if method is None:
        if not second_step.count_failure():
            flash("That code is not right, too many times. Sign in again.", "danger")
            return see_other(url_for("console.sign_in"))
        form.code.data = ""
        return render_page("console/sign_in_verify.html", form=form, error=CODE_ERROR, status=422)
    target = safe_next(pending["next"])
    second_step.drop()
    cookie.clear()  # nothing from before sign-in survives it
    token, row = start_staff_session(
        session,
        member,
        actor=actor_for("staff", member.id, member.email),
        user_agent=request.user_agent.string,
        method=method,
    )
    login_user(SignedInStaff(token, row.id, member, method))
    toast = None
    if method == "backup_code":
        left = staff_backup_codes_left(session, member.id)
        toast = f"Backup code used — {left} left"
    return after_change(target, toast)


# ---- My account -----------------------------------------------------------------------------


def me(*, lock: bool = False) -> StaffUser:
    member = request_session().get(StaffUser, current_user.staff.id, with_for_update=lock or None)
    if member is None:
        abort(404)
    return member


def mfa_required() -> bool:
    return current_app.config["PORTAL"].staff_mfa_required


def render_account(block: str | None = None, *, status: int = 200, **forms):
    session = request_session()
    member = me()
    return render_page(
        "console/account.html",
        block,
        member=member,
        mfa_required=mfa_required(),
        enrolment_required=mfa_enrolment_required(),
        codes_left=staff_backup_codes_left(session, member.id) if member.mfa_enabled else 0,
        setup=security.enrolment_setup(
            pending_staff_mfa_secret(member), account=member.email, issuer=ISSUER
        ),
        sessions=staff_sessions_of(session, member.id),
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


def change_password(session, member, form, *, actor) -> int:
    """Every other session of the member ends."""
    return change_staff_password(
        session,
        member,
        current=form.current_password.data,
        new=form.new_password.data,
        actor=actor,
        current_session=current_user.session_id,
    )


def confirm_enrolment(session, member, code, *, actor) -> list[str]:
    """This session has now proven the second factor (a hand-off that needs MFA may follow)."""
    return confirm_staff_mfa_enrolment(
        session, member, code, actor=actor, current_session=current_user.session_id
    )


ACCOUNT = security.AccountSecurity(
    page="console.account",
    codes_template="console/backup_codes.html",
    render=render_account,
    owner=me,
    actor=current_actor,
    throttle=staff_throttle,
    mfa_required=mfa_required,
    change_password=change_password,
    start_enrolment=start_staff_mfa_enrolment,
    confirm_enrolment=confirm_enrolment,
    regenerate_backup_codes=regenerate_staff_backup_codes,
    disable_mfa=disable_staff_mfa,
)


@bp.get("/account")
@login_required
def account():
    return render_account()


@bp.post("/account/password")
@flood.hashes_password
@login_required
def account_password():
    """Change the password; every other session of the member ends."""
    return security.change_password(ACCOUNT)


@bp.post("/account/mfa/start")
@login_required
def account_mfa_start():
    return security.start_mfa(ACCOUNT)


@bp.post("/account/mfa/confirm")
@login_required
def account_mfa_confirm():
    return security.confirm_mfa(ACCOUNT)


@bp.post("/account/mfa/backup-codes")
@flood.hashes_password
@login_required
def account_mfa_backup_codes():
    return security.new_backup_codes(ACCOUNT)


@bp.post("/account/mfa/disable")
@flood.hashes_password
@login_required
def account_mfa_disable():
    return security.turn_off_mfa(ACCOUNT)


@bp.post("/account/sessions/<int:session_id>/revoke")
@login_required
def account_session_revoke(session_id):
    """End one of the member's own sessions, and the tenant visits it started."""
    if not ActionForm().validate_on_submit():
        abort(400)
    if not 0 < session_id < 2**31:  # not an id at all (int4)
        abort(404)
    if not revoke_staff_session(
        request_session(), current_user.staff.id, session_id, actor=current_actor()
    ):
        abort(404)
    if session_id == current_user.session_id:
        logout_user()
        cookie.clear()
        return after_change(url_for("console.sign_in"), "You signed out of this browser")
    return after_change(url_for("console.account", _anchor="sessions"), "Session ended")
