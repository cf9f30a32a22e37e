"""Tenant user authentication: sign-in (password, then TOTP or a backup code), sessions and
devices, password change and reset, MFA enrolment. Runs inside a tenant scope, like
the services of portal.accounts, and follows their rules (flush, audit, mail after commit).

Rules kept here (A3–A7):
- Every password check costs one Argon2 verification, known account or not, and throttled or
  not; the caller shows one generic message for every refusal.
- A wrong or missing second factor counts as a failed sign-in for the throttle; only a
  completed sign-in clears the account's failure count.
- A TOTP code is accepted at most once: the accepted time step is stored and later codes must
  be newer (checked under a row lock, so two concurrent uses cannot both pass).
- Backup codes are stored as SHA-256 and used once.
- A password reset never signs in (so it cannot bypass MFA) and ends every session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal import sessions
from portal.accounts.lifecycle import end_all_sessions, find_user
from portal.accounts.links import PASSWORD_RESET_HOURS, issue_token, redeem_token, void_tokens
from portal.accounts.models import (
    BackupCode,
    Device,
    SecuritySettings,
    TokenPurpose,
    User,
    UserSession,
    UserStatus,
)
from portal.accounts.roles import ensure_may_change_user, role_permissions_column
from portal.accounts.settings import security_settings
from portal.accounts.validation import AccountError
from portal.auth import second_factor
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import scope_tenant
from portal.mail import Mail, send_mail
from portal.password_policy import check_password
from portal.passwords import hash_password, rehashed, verify_password
from portal.validation import InputError

TOTP_PURPOSE = second_factor.TOTP_PURPOSE
BACKUP_CODES = second_factor.BackupCodes(BackupCode, "user_id")
SECOND_STEP = second_factor.SecondStep(
    codes=BACKUP_CODES,
    target="user",
    may_sign_in=lambda user: user.status == UserStatus.ACTIVE,
    failed=AuditAction.MFA_FAILED,
    throttled=AuditAction.USER_SIGN_IN_LOCKED,
    backup_code_used=AuditAction.MFA_BACKUP_CODE_USED,
)


def _notice(session: Session, user: User, subject: str, body: str) -> None:
    """A security notice to the user, after commit."""
    tenant = scope_tenant(session)
    send_mail(
        session,
        Mail(
            to=user.email,
            subject=f"{tenant.name}: {subject}",
            body=f"Hello{' ' + user.name if user.name else ''},\n\n{body}\n\n"
            "If this was not you, reset your password and tell your administrator.\n",
            kind="security",
            tenant_slug=tenant.slug,
        ),
    )


# ---- sign-in ------------------------------------------------------------------------------


def check_password_step(
    session: Session,
    email: str,
    password: str,
    *,
    actor: Actor,
    throttle: SignInThrottle | None,
) -> User | None:
    """First step: the active user with these credentials, or None (audited, counted).

    A user without MFA has completed sign-in here, so their failure count is cleared; a user
    with MFA clears it only after the second factor."""
    email = (email or "").strip()[:320]
    waiting = throttle.wait_seconds(email, actor.client_addr) if throttle else 0
    user = find_user(session, email)
    ok = verify_password(user.password_hash if user else None, password or "")
    if waiting or not ok or user is None or user.status != UserStatus.ACTIVE:
        reason = "throttled" if waiting else user.status if ok and user else "bad_credentials"
        if throttle and not waiting:
            throttle.failed(email, actor.client_addr)
        record(
            session,
            AuditAction.USER_SIGN_IN_LOCKED if waiting else AuditAction.USER_SIGN_IN_FAILED,
            actor=actor,
            target=("user", user.id) if user else None,
            detail={"reason": reason, "step": "password"},
            personal={"email": email},
            keep=True,
        )
        return None
    if (fresh := rehashed(user.password_hash, password)) is not None:
        user.password_hash = fresh  # made with older Argon2 parameters (portal/passwords.py)
    if throttle and not user.mfa_enabled:
        throttle.succeeded(email)
    return user


def check_second_factor(
    session: Session,
    user: User,
    code: str,
    *,
    actor: Actor,
    throttle: SignInThrottle | None,
) -> str | None:
    """Second step: "totp" or "backup_code" when `code` is right, else None (audited, counted)."""
    return second_factor.check(session, user, code, SECOND_STEP, actor=actor, throttle=throttle)


def verify_totp(user: User, code: str) -> int | None:
    """The accepted time step (now recorded on the user), or None; a step is accepted once."""
    return second_factor.accept_totp(user, code)


@dataclass(frozen=True)
class Started:
    token: str  # the session cookie's value
    row: UserSession
    device_token: str  # the device cookie's value (unchanged for a known device)
    new_device: bool


def start_user_session(
    session: Session,
    user: User,
    *,
    actor: Actor,
    user_agent: str | None,
    device_token: str | None,
    method: str = "password",
) -> Started:
    """A new server-side session with a fresh token; the device is recognised or recorded."""
    now = datetime.now(UTC)
    device = None
    if device_token and len(device_token) <= 200:
        device = session.scalars(
            select(Device).where(
                Device.user_id == user.id, Device.token_hash == sessions.token_hash(device_token)
            )
        ).first()
    new_device = device is None
    if new_device:
        device_token = secrets.token_urlsafe(32)
        device = Device(
            user_id=user.id,
            token_hash=sessions.token_hash(device_token),
            label=describe_agent(user_agent),
            user_agent=(user_agent or "")[:500],
            last_addr=actor.client_addr,
        )
        session.add(device)
        session.flush()
        record(
            session,
            AuditAction.USER_NEW_DEVICE,
            actor=actor,
            target=("user", user.id),
            detail={"device": device.id, "label": device.label},
        )
        if user.sign_in_count:
            _notice(
                session,
                user,
                "new sign-in to your account",
                f"Your account was just signed in to from a new device: {device.label}"
                f" (address {actor.client_addr or 'unknown'}, {now:%Y-%m-%d %H:%M} UTC).",
            )
    else:
        device.last_seen_at = now
        device.last_addr = actor.client_addr
    token, row = sessions.start(
        session,
        UserSession,
        owner_field="user_id",
        owner_id=user.id,
        client_addr=actor.client_addr,
        user_agent=user_agent,
    )
    row.device_id = device.id
    row.method = method
    user.last_sign_in_at = now
    user.last_sign_in_addr = actor.client_addr
    user.sign_in_count = (user.sign_in_count or 0) + 1
    session.flush()
    record(
        session,
        AuditAction.USER_SIGN_IN,
        actor=actor,
        target=("user", user.id),
        detail={"session": row.id, "method": method, "device": device.id, "new_device": new_device},
    )
    return Started(token, row, device_token, new_device)


def describe_agent(user_agent: str | None) -> str:
    """A short human label for a browser: "Firefox on Windows"."""
    agent = user_agent or ""
    browser = next(
        (
            name
            for needle, name in (
                ("Edg/", "Edge"),
                ("OPR/", "Opera"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Chromium/", "Chromium"),
                ("Safari/", "Safari"),
                ("curl/", "curl"),
            )
            if needle in agent
        ),
        "Browser",
    )
    system = next(
        (
            name
            for needle, name in (
                ("Windows", "Windows"),
                ("iPhone", "iPhone"),
                ("iPad", "iPad"),
                ("Android", "Android"),
                ("Mac OS X", "macOS"),
                ("CrOS", "ChromeOS"),
                ("Linux", "Linux"),
            )
            if needle in agent
        ),
        None,
    )
    return f"{browser} on {system}" if system else browser


def end_user_session(session: Session, token: str, *, actor: Actor) -> None:
    row = sessions.end(session, UserSession, token)
    if row is not None:
        record(
            session,
            AuditAction.USER_SIGN_OUT,
            actor=actor,
            target=("user", row.user_id),
            detail={"session": row.id},
        )


# Built once: sessions.load caches its statement per tuple of extra columns.
_ROLE_PERMISSIONS = (role_permissions_column(User.id),)


def load_user_session(session: Session, token: str, settings: SecuritySettings | None = None):
    """The signed-in user's row (user columns plus `session_id`, `session_created_at` and
    `role_permissions`, see accounts.roles.permissions_of), or None. The tenant's idle and absolute timeouts apply (`settings`, read if not given); only
    active users stay signed in."""
    settings = settings or security_settings(session)
    row = sessions.load(
        session,
        UserSession,
        User,
        token,
        idle_seconds=settings.idle_timeout_minutes * 60,
        absolute_seconds=settings.absolute_timeout_minutes * 60,
        extra_columns=_ROLE_PERMISSIONS,
    )
    return row if row is not None and row.status == UserStatus.ACTIVE else None


def user_sessions(session: Session, user_id: int) -> list[UserSession]:
    return list(
        session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user_id)
            .order_by(UserSession.last_seen_at.desc())
        )
    )


def user_devices(session: Session, user_id: int) -> list[Device]:
    return list(
        session.scalars(
            select(Device).where(Device.user_id == user_id).order_by(Device.last_seen_at.desc())
        )
    )


def forget_device(session: Session, user_id: int, device_id: int, *, actor: Actor) -> bool:
    """Forget a device and end its sessions; the next sign-in from it counts as new."""
    ensure_may_change_user(session, user_id, actor=actor, doing="sign out")
    device = session.scalars(
        select(Device).where(Device.id == device_id, Device.user_id == user_id)
    ).first()
    if device is None:
        return False
    ended = session.execute(delete(UserSession).where(UserSession.device_id == device.id)).rowcount
    session.delete(device)
    session.flush()
    record(
        session,
        AuditAction.SESSION_REVOKE,
        actor=actor,
        target=("user", user_id),
        detail={"device": device_id, "sessions": ended, "forgotten": True},
    )
    return True


# ---- passwords ----------------------------------------------------------------------------


def _set_password(session: Session, user: User, password: str, field: str = "password") -> None:
    try:
        check_password(
            password, email=user.email, min_length=security_settings(session).password_min_length
        )
    except InputError as error:
        raise AccountError(str(error), field) from None
    user.password_hash = hash_password(password)
    user.password_changed_at = datetime.now(UTC)


def change_password(
    session: Session,
    user: User,
    *,
    current: str,
    new: str,
    actor: Actor,
    sign_out_others: bool,
    current_session: int | None,
) -> int:
    """Change the password (the current one is required); returns sessions ended."""
    if not verify_password(user.password_hash, current or ""):
        raise AccountError("That is not your current password.", "current_password")
    if new == current:
        raise AccountError("Choose a password different from the current one.", "new_password")
    _set_password(session, user, new, "new_password")
    void_tokens(session, user.id, TokenPurpose.PASSWORD_RESET)  # a reset link dies with it
    ended = (
        end_all_sessions(session, user.id, except_session=current_session) if sign_out_others else 0
    )
    session.flush()
    record(
        session,
        AuditAction.PASSWORD_CHANGE,
        actor=actor,
        target=("user", user.id),
        detail={"signed_out_others": sign_out_others, "sessions_ended": ended},
    )
    _notice(session, user, "your password was changed", "The password of your account was changed.")
    return ended


def request_password_reset(session: Session, email: str, *, actor: Actor, base_url: str) -> None:
    """Mail a reset link (1 h, single use) to an active user; silently nothing otherwise, so
    the answer never reveals whether the account exists."""
    email = (email or "").strip()[:320]
    user = find_user(session, email)
    active = user is not None and user.status == UserStatus.ACTIVE
    record(
        session,
        AuditAction.PASSWORD_RESET_REQUEST,
        actor=actor,
        target=("user", user.id) if user else None,
        detail={"sent": active},
        personal={"email": email},
    )
    if not active:
        return
    token = issue_token(session, user, TokenPurpose.PASSWORD_RESET, PASSWORD_RESET_HOURS)
    tenant = scope_tenant(session)
    send_mail(
        session,
        Mail(
            to=user.email,
            subject=f"Reset your {tenant.name} password",
            body=(
                "Someone (hopefully you) asked to reset the password of your account.\n\n"
                f"Choose a new password here (the link works once, for {PASSWORD_RESET_HOURS} "
                f"hour):\n{base_url.rstrip('/')}/reset-password/{token}\n\n"
                "If you did not ask for this, ignore this email; your password stays as it is.\n"
            ),
            kind="password_reset",
            tenant_slug=tenant.slug,
        ),
    )


def reset_token_valid(session: Session, token: str) -> bool:
    user = redeem_token(session, token, TokenPurpose.PASSWORD_RESET, consume=False)
    return user is not None and user.status == UserStatus.ACTIVE


def reset_password(session: Session, token: str, new: str, *, actor: Actor) -> User | None:
    """Set a new password from a reset link; ends every session; never signs in. None when
    the link is invalid, expired or used."""
    user = redeem_token(session, token, TokenPurpose.PASSWORD_RESET, consume=False)
    if user is None or user.status != UserStatus.ACTIVE:
        return None
    _set_password(session, user, new)
    redeem_token(session, token, TokenPurpose.PASSWORD_RESET)
    void_tokens(session, user.id, TokenPurpose.PASSWORD_RESET)
    ended = end_all_sessions(session, user.id)
    session.flush()
    record(
        session,
        AuditAction.PASSWORD_RESET,
        actor=Actor("user", str(user.id), user.email, actor.client_addr, actor.request_id),
        target=("user", user.id),
        detail={"sessions_ended": ended},
    )
    _notice(session, user, "your password was reset", "The password of your account was reset.")
    return user


# ---- MFA ----------------------------------------------------------------------------------


def start_mfa_enrolment(session: Session, user: User) -> str:
    """A new pending TOTP secret (kept sealed on the user until confirmed with a code)."""
    if user.mfa_enabled:
        raise AccountError("Two-factor authentication is already on.")
    secret = second_factor.begin_enrolment(user)
    session.flush()
    return secret


def pending_mfa_secret(user: User) -> str | None:
    return second_factor.pending_secret(user)


def confirm_mfa_enrolment(session: Session, user: User, code: str, *, actor: Actor) -> list[str]:
    """Turn MFA on once the user proves their app shows the right code; returns 10 backup
    codes, shown once."""
    session.refresh(user, with_for_update=True)
    if user.mfa_enabled:
        raise AccountError("Two-factor authentication is already on.")
    if pending_mfa_secret(user) is None:
        raise AccountError("Start again: scan the new QR code.", "code")
    if verify_totp(user, code or "") is None:
        raise AccountError(
            "That code is not right. Check your device's clock and try again.", "code"
        )
    second_factor.enable(user)
    codes = _replace_backup_codes(session, user)
    record(session, AuditAction.MFA_ENROL, actor=actor, target=("user", user.id))
    _notice(
        session,
        user,
        "two-factor authentication turned on",
        "Two-factor authentication was turned on for your account.",
    )
    return codes


def _replace_backup_codes(session: Session, user: User) -> list[str]:
    return BACKUP_CODES.replace(session, user.id)


def regenerate_backup_codes(session: Session, user: User, *, actor: Actor) -> list[str]:
    """A new set of 10 codes; the old set stops working."""
    if not user.mfa_enabled:
        raise AccountError("Turn on two-factor authentication first.")
    codes = _replace_backup_codes(session, user)
    record(session, AuditAction.MFA_BACKUP_CODES, actor=actor, target=("user", user.id))
    return codes


def backup_codes_left(session: Session, user_id: int) -> int:
    return BACKUP_CODES.left(session, user_id)


def _clear_mfa(session: Session, user: User) -> None:
    second_factor.clear(session, user, BACKUP_CODES)


def disable_mfa(
    session: Session, user: User, *, password: str, actor: Actor, required: bool
) -> bool:
    """Turn MFA off after re-entering the password; refused where the tenant requires MFA."""
    if not user.mfa_enabled:
        return False
    if not verify_password(user.password_hash, password or ""):
        raise AccountError("That is not your password.", "password")
    if required:
        raise AccountError("Your organisation requires two-factor authentication.")
    _clear_mfa(session, user)
    record(session, AuditAction.MFA_DISABLE, actor=actor, target=("user", user.id))
    _notice(
        session,
        user,
        "two-factor authentication turned off",
        "Two-factor authentication was turned off for your account.",
    )
    return True


def reset_mfa(session: Session, user: User, *, actor: Actor) -> bool:
    """An administrator removes a user's MFA (lost phone); they enrol again when required.
    Refused for a user who holds a permission the administrator lacks (A10)."""
    if not user.mfa_enabled and not user.mfa_secret:
        return False
    ensure_may_change_user(session, user, actor=actor, doing="reset two-factor authentication of")
    _clear_mfa(session, user)
    record(session, AuditAction.MFA_RESET, actor=actor, target=("user", user.id))
    _notice(
        session,
        user,
        "two-factor authentication was reset",
        "An administrator reset two-factor authentication for your account. "
        "Set it up again from your account's Security page.",
    )
    return True
