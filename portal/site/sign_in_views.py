"""Tenant site pages: sign-in (password, then a second factor), sign-out, forgotten and reset
passwords, invitations and self-registration. (A suspended tenant's notice: blueprint.py.)

Sign-in rules kept here (A3–A5):
- Every refusal of the password step (unknown account, wrong password, suspended user, throttled
  or locked, even with the right password) is the same 422 page; its audit entry is kept
  (`record(..., keep=True)`) and written again after the 4xx rolls the request back.
- A user with MFA is not signed in by the password: the Flask session (a signed cookie) holds
  who passed it, when, and where to go next, for five minutes; /sign-in/verify asks for the code.
  Wrong or missing codes count as failed sign-ins; after a few the pending state is dropped.
- A completed sign-in empties the Flask session and starts a server-side session with a new
  token, so no cookie from before it (or from before sign-out) signs anyone in.
- Links sent by mail (reset, invitation, registration) point at the host name this tenant was
  reached on, with the configured port (never the Host header's); mail-sending forms are rate
  limited per address and per email, answering the same either way.
"""

from __future__ import annotations

import hashlib
import time

from flask import abort, current_app, flash, redirect, request, url_for
from flask import session as cookie
from flask_login import current_user, login_user, logout_user

from portal.accounts import invitations, lifecycle, links, validation
from portal.accounts.models import TokenPurpose, User, UserStatus
from portal.auth import flood, pending, staff_access
from portal.auth import services as auth
from portal.auth.forms import (
    ForgotPasswordForm,
    InvitationForm,
    NewPasswordForm,
    RegisterForm,
    SecondFactorForm,
    SignInForm,
)
from portal.forms import attach_error
from portal.queue import queues
from portal.site.auth import (
    DEVICE_COOKIE,
    DEVICE_COOKIE_SECONDS,
    SignedInUser,
    current_actor,
    tenant_settings,
)
from portal.site.blueprint import bp
from portal.site.common import sign_in_throttle, site_base_url
from portal.validation import InputError
from portal.web import (
    actor_for,
    after_change,
    client_addr,
    current_tenant,
    local_path,
    render_page,
    request_session,
    see_other,
)

SIGN_IN_ERROR = "Email or password is not right."
CODE_ERROR = "That code is not right."
MFA_PENDING_SECONDS = 5 * 60
MFA_ATTEMPTS = 5  # wrong codes before the password step must be done again
# Mail-sending forms (reset, registration): per email, and per client address (shared by many).
MAIL_LIMIT_PER_EMAIL = 5
MAIL_LIMIT_PER_ADDRESS = 20
MAIL_LIMIT_SECONDS = 15 * 60


# ---- helpers of the sign-in pages ----------------------------------------------------------


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else the home page (no open redirect)."""
    return local_path(target, url_for("site.home"))


def finish_sign_in(user: User, *, method: str, target: str, toast: str | None = None):
    """Sign `user` in: empty the Flask session (nothing from before sign-in survives it), start a
    server-side session with a new token, remember the device, and go to `target`."""
    session = request_session()
    cookie.clear()
    started = auth.start_user_session(
        session,
        user,
        actor=actor_for("user", user.id, user.email),
        user_agent=request.user_agent.string,
        device_token=request.cookies.get(DEVICE_COOKIE),
        method=method,
    )
    login_user(SignedInUser(started.token, started.row.id, user))
    response = after_change(target, toast)
    response.set_cookie(
        DEVICE_COOKIE,
        started.device_token,
        max_age=DEVICE_COOKIE_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["PORTAL"].production,
    )
    return response


def mail_allowed(kind: str, email: str) -> bool:
    """Count one mail-sending request; False once this email or client address has made too
    many in the window. The caller answers the same either way, only sending nothing."""
    slug = current_tenant().slug
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    allowed = True
    for key, limit in (
        (f"throttle:{kind}:{slug}:email:{digest}", MAIL_LIMIT_PER_EMAIL),
        (f"throttle:{kind}:{slug}:address:{client_addr()}", MAIL_LIMIT_PER_ADDRESS),
    ):
        with queues.redis.pipeline() as pipe:
            pipe.set(key, 0, ex=MAIL_LIMIT_SECONDS, nx=True)
            pipe.incr(key)
            count = pipe.execute()[1]
        allowed = allowed and count <= limit
    return allowed


def link_invalid(kind: str):
    """The designed page for a reset or invitation link that is wrong, used or expired (410)."""
    response = render_page("site/link_invalid.html", kind=kind, status=410)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# ---- sign-in --------------------------------------------------------------------------------


def sign_in_page(form, *, error: str | None = None, status: int = 200):
    return render_page(
        "site/sign_in.html",
        form=form,
        error=error,
        self_registration=tenant_settings().self_registration,
        status=status,
    )


@bp.route("/sign-in", methods=["GET", "POST"])
@flood.hashes_password
def sign_in():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = SignInForm()
    if not form.validate_on_submit():
        return sign_in_page(form, status=422 if request.method == "POST" else 200)
    session = request_session()
    user = auth.check_password_step(
        session,
        form.email.data,
        form.password.data,
        actor=current_actor(),
        throttle=sign_in_throttle(),
    )
    target = safe_next(request.args.get("next"))
    if user is None:
        return sign_in_page(form, error=SIGN_IN_ERROR, status=422)
    if not user.mfa_enabled:
        return finish_sign_in(user, method="password", target=target)
    cookie.clear()
    cookie.update(
        mfa_user=user.id,
        mfa_at=int(time.time()),
        mfa_password=password_stamp(user),
        # The wrong codes are counted on the server under this id, not in this cookie.
        mfa_pending=pending.start(queues.redis, user.id, seconds=MFA_PENDING_SECONDS),
        next=target,
    )
    return see_other(url_for("site.mfa_verify"))


def password_stamp(user: User) -> str:
    """Changes with the password, so a password step done before a change or reset cannot be
    completed after it."""
    changed = user.password_changed_at
    return changed.isoformat() if changed else ""


def pending_user_id() -> int | None:
    """Who passed the password step in this browser less than five minutes ago, if anyone,
    and whose step the server has not ended (too many wrong codes, or completed)."""
    user_id, at = cookie.get("mfa_user"), cookie.get("mfa_at")
    if not isinstance(user_id, int) or not isinstance(at, int):
        return None
    if not 0 <= time.time() - at <= MFA_PENDING_SECONDS:
        return None
    if not pending.is_open(queues.redis, cookie.get("mfa_pending"), user_id):
        return None
    return user_id


def drop_pending() -> None:
    """End the pending step, on the server too (every copy of the cookie stops working)."""
    pending.end(queues.redis, cookie.get("mfa_pending"))
    for key in ("mfa_user", "mfa_at", "mfa_password", "mfa_pending", "next"):
        cookie.pop(key, None)


@bp.route("/sign-in/verify", methods=["GET", "POST"])
@flood.checks_code
def mfa_verify():
    if current_user.is_authenticated:
        return redirect(url_for("site.home"))
    user_id = pending_user_id()
    session = request_session()
    user = lifecycle.get_user(session, user_id) if user_id is not None else None
    if (
        user is None
        or user.status != UserStatus.ACTIVE
        or not user.mfa_enabled
        or cookie.get("mfa_password") != password_stamp(user)
    ):
        if "mfa_user" in cookie:
            drop_pending()
            flash("Your sign-in timed out. Sign in again.", "danger")
        return see_other(url_for("site.sign_in"))
    form = SecondFactorForm()
    if not form.is_submitted():
        return render_page("site/sign_in_mfa.html", form=form, error=None)
    method = auth.check_second_factor(
        session,
        user,
        (form.code.data or "")[:64],
        actor=current_actor(),
        throttle=sign_in_throttle(),
    )
    if method is None:
        if not pending.failed(queues.redis, cookie["mfa_pending"], attempts=MFA_ATTEMPTS):
            drop_pending()
            flash("That code is not right, too many times. Sign in again.", "danger")
            return see_other(url_for("site.sign_in"))
        form.code.data = ""
        return render_page("site/sign_in_mfa.html", form=form, error=CODE_ERROR, status=422)
    toast = None
    if method == "backup_code":
        left = auth.backup_codes_left(session, user.id)
        toast = f"Backup code used — {left} left"
    pending.end(queues.redis, cookie.get("mfa_pending"))  # a pending step completes once
    return finish_sign_in(user, method=method, target=safe_next(cookie.get("next")), toast=toast)


@bp.post("/sign-out")
def sign_out():
    if current_user.is_authenticated:
        if getattr(current_user, "is_staff", False):
            staff_access.end(queues.redis, current_user.token)
        else:
            auth.end_user_session(request_session(), current_user.token, actor=current_actor())
        logout_user()
    cookie.clear()
    return see_other(url_for("site.sign_in"))


# ---- forgotten password -------------------------------------------------------------------


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_page("site/forgot_password.html", form=form, sent=False, status=status)
    email = form.email.data.strip()
    if mail_allowed("reset", email):
        auth.request_password_reset(
            request_session(), email, actor=current_actor(), base_url=site_base_url()
        )
    return render_page("site/forgot_password.html", form=form, sent=True)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@flood.hashes_password
def reset_password(token):
    session = request_session()
    if not auth.reset_token_valid(session, token):
        return link_invalid("password_reset")
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            user = auth.reset_password(session, token, form.password.data, actor=current_actor())
        except InputError as error:
            attach_error(form, error, "password")
        else:
            if user is None:
                return link_invalid("password_reset")
            return after_change(
                url_for("site.sign_in"), "Password changed — sign in with your new password"
            )
    status = 422 if request.method == "POST" else 200
    response = render_page("site/reset_password.html", form=form, status=status)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# ---- invitation and registration ----------------------------------------------------------


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@flood.hashes_password
def invitation(token):
    session = request_session()
    invited = links.redeem_token(session, token, TokenPurpose.INVITATION, consume=False)
    if invited is None or invited.status != UserStatus.INVITED:
        return link_invalid("invitation")
    form = InvitationForm(name=invited.name)
    if form.validate_on_submit():
        try:
            user = invitations.accept_invitation(
                session,
                token,
                password=form.password.data,
                name=form.name.data or "",
                actor=actor_for("user", invited.id, invited.email),
            )
        except validation.QuotaExceeded as error:
            # The organisation is full: not the password's fault, so above the form.
            form.form_errors.append(str(error))
        except InputError as error:
            attach_error(form, error, "password")
        else:
            if user is None:
                return link_invalid("invitation")
            if current_user.is_authenticated and not getattr(current_user, "is_staff", False):
                auth.end_user_session(session, current_user.token, actor=current_actor())
            return finish_sign_in(
                user,
                method="invitation",
                target=url_for("site.account_security", welcome=1),
            )
    status = 422 if request.method == "POST" else 200
    response = render_page("site/invitation.html", form=form, invited=invited, status=status)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/register", methods=["GET", "POST"])
@flood.hashes_password
def register():
    if not tenant_settings().self_registration:
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("site.home"))
    form = RegisterForm()
    if form.validate_on_submit():
        session = request_session()
        try:
            email = validation.validate_email(form.email.data)
            if mail_allowed("register", email):
                invitations.register_user(
                    session,
                    email=email,
                    name=form.name.data or "",
                    actor=current_actor(),
                    base_url=site_base_url(),
                )
        except validation.QuotaExceeded:
            # Answered like success: an error here would tell which addresses already exist.
            return render_page("site/register.html", form=form, sent=True)
        except InputError as error:
            attach_error(form, error, "email")
        else:
            return render_page("site/register.html", form=form, sent=True)
    status = 422 if request.method == "POST" else 200
    return render_page("site/register.html", form=form, sent=False, status=status)
