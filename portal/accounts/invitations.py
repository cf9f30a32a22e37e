"""Invitations and self-registration: invite, resend, register, accept, purge expired sign-ups."""

# Unconfirmed self-registrations do not count toward max users; they expire after
# INVITATION_HOURS and are purged (purge_expired_registrations, an hourly job). Confirming one
# takes the quota lock and checks the limit. Registration answers the same whether or not the
# address has an account.

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal.accounts.lifecycle import count_users, create_user, find_user, lock_user_quota
from portal.accounts.links import INVITATION_HOURS, redeem_token, send_invitation, void_tokens
from portal.accounts.models import TokenPurpose, User, UserStatus
from portal.accounts.settings import security_settings
from portal.accounts.validation import AccountError, QuotaExceeded, validate_email, validate_name
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import scope_tenant
from portal.mail import Mail, send_mail
from portal.password_policy import check_password
from portal.passwords import hash_password


def invite_user(
    session: Session,
    *,
    email: str,
    name: str = "",
    role_keys=(),
    actor: Actor,
    base_url: str,
) -> User:
    """Create an invited user and email them a link (valid 72 h, single use) to set a password."""
    user = create_user(
        session,
        email=email,
        name=name,
        status=UserStatus.INVITED,
        role_keys=role_keys,
        actor=actor,
        action=AuditAction.USER_INVITE,
    )
    send_invitation(session, user, actor=actor, base_url=base_url)
    return user


def resend_invitation(session: Session, user: User, *, actor: Actor, base_url: str) -> None:
    if user.status != UserStatus.INVITED:
        raise AccountError(f"{user.email} has already accepted the invitation.")
    if user.registration_pending:  # an unconfirmed sign-up: its new link gets a new term
        user.registration_expires_at = datetime.now(UTC) + timedelta(hours=INVITATION_HOURS)
    send_invitation(session, user, actor=actor, base_url=base_url)
    record(
        session,
        AuditAction.USER_INVITE,
        actor=actor,
        target=("user", user.id),
        detail={"resent": True},
    )


def register_user(
    session: Session, *, email: str, name: str, actor: Actor, base_url: str
) -> User | None:
    """Self-registration (only when the tenant allows it): an invited user and a link to set a
    password. An email that is already registered gets a notice instead, and the caller shows
    the same page either way, so registration never reveals who has an account."""
    if not security_settings(session).self_registration:
        raise AccountError("This organisation does not allow self-registration.")
    email = validate_email(email)
    name = validate_name(name)
    existing = find_user(session, email, lock=True)
    if (
        existing is not None
        and existing.status == UserStatus.INVITED
        and existing.registration_pending
    ):
        # Registering again before confirming (or after the link expired, before the purge):
        # a fresh link and a fresh expiry, as a person would expect.
        if name:
            existing.name = name
        existing.registration_expires_at = datetime.now(UTC) + timedelta(hours=INVITATION_HOURS)
        session.flush()
        record(
            session,
            AuditAction.USER_REGISTER,
            actor=actor,
            target=("user", existing.id),
            detail={"again": True},
        )
        send_invitation(session, existing, actor=actor, base_url=base_url)
        return None
    if existing is not None:
        if existing.status in (UserStatus.ACTIVE, UserStatus.INVITED):
            send_mail(
                session,
                Mail(
                    to=existing.email,
                    subject=f"Someone tried to register with your email at {scope_tenant(session).name}",
                    body=(
                        "Someone (perhaps you) asked to register an account with this email "
                        "address, but you already have one.\n\n"
                        f"Sign in: {base_url.rstrip('/')}/sign-in\n"
                        f"Forgot your password? {base_url.rstrip('/')}/forgot-password\n"
                    ),
                    kind="notice",
                    tenant_slug=scope_tenant(session).slug,
                ),
            )
        return None
    tenant = scope_tenant(session)
    if tenant.max_users is not None and count_users(session) >= tenant.max_users:
        # No link that could not be confirmed; the page answers the same either way.
        send_mail(
            session,
            Mail(
                to=email,
                subject=f"{tenant.name} cannot take new accounts right now",
                body=(
                    "Someone (perhaps you) asked to register an account with this email "
                    f"address at {tenant.name}, but the organisation has reached its number "
                    "of users. Ask its administrator for an invitation.\n"
                ),
                kind="notice",
                tenant_slug=tenant.slug,
            ),
        )
        return None
    user = create_user(
        session,
        email=email,
        name=name,
        status=UserStatus.INVITED,
        actor=actor,
        action=AuditAction.USER_REGISTER,
        registration=True,
    )
    send_invitation(session, user, actor=actor, base_url=base_url)
    return user


def accept_invitation(
    session: Session, token: str, *, password: str, name: str | None = None, actor: Actor
) -> User | None:
    """Set the invited user's password and activate them; None for a bad or used link.

    A self-registration counts toward max users from here: confirming it takes the quota lock
    and is refused (QuotaExceeded, the link still good) while the organisation is full."""
    user = redeem_token(session, token, TokenPurpose.INVITATION, consume=False)
    if user is None or user.status != UserStatus.INVITED:
        return None
    check_password(
        password, email=user.email, min_length=security_settings(session).password_min_length
    )
    confirming = user.registration_pending
    if confirming:
        tenant = scope_tenant(session)
        lock_user_quota(session)
        if tenant.max_users is not None and count_users(session) >= tenant.max_users:
            raise QuotaExceeded(
                f"{tenant.name} has reached its limit of {tenant.max_users} users, so your "
                "registration cannot be confirmed now. Ask its administrator to make room, "
                f"then use this link again (it works until "
                f"{user.registration_expires_at:%Y-%m-%d %H:%M} UTC)."
            )
        user.registration_expires_at = None
    redeem_token(session, token, TokenPurpose.INVITATION)
    void_tokens(session, user.id, TokenPurpose.PASSWORD_RESET)
    if name is not None and validate_name(name):
        user.name = validate_name(name)
    user.password_hash = hash_password(password)
    user.password_changed_at = datetime.now(UTC)
    user.status = UserStatus.ACTIVE
    session.flush()
    record(
        session,
        AuditAction.USER_ACTIVATE,
        actor=actor,
        target=("user", user.id),
        detail={"via": "registration" if confirming else "invitation"},
    )
    return user


REGISTRATION_PURGE_BATCH = 200


def purge_expired_registrations(
    session: Session, *, actor: Actor, limit: int = REGISTRATION_PURGE_BATCH
) -> int:
    """Remove up to `limit` unconfirmed self-registrations whose time is over (their tokens,
    roles and sessions go with them), each audited; returns how many. Rows another transaction
    holds are skipped, so the job never waits on a sign-up being confirmed right now. The
    caller commits, and calls again while a whole batch was removed."""
    expired = session.scalars(
        select(User)
        .where(
            User.status == UserStatus.INVITED,
            User.registration_expires_at <= datetime.now(UTC),
        )
        .order_by(User.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for user in expired:
        record(
            session,
            AuditAction.USER_REGISTRATION_EXPIRE,
            actor=actor,
            target=("user", user.id),
            detail={
                "registered_at": user.created_at.isoformat(),
                "expired_at": user.registration_expires_at.isoformat(),
            },
        )
    if expired:
        ids = [user.id for user in expired]
        session.execute(
            delete(User).where(User.id.in_(ids)), execution_options={"synchronize_session": False}
        )
        for user in expired:
            session.expunge(user)
    return len(expired)
