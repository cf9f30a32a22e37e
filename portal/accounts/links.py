"""One-time links (invitation, password reset): issued, voided, redeemed; the invitation mail."""

# A link is a random 256-bit token stored as a hash, expiring and single use; issuing one voids
# the user's earlier unused links of that purpose. Links die with what they were issued for:
# lifecycle voids them on an email change, suspension and deletion, auth on a password change.

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal.accounts.models import TokenPurpose, User, UserToken
from portal.compliance.audit import Actor
from portal.db import scope_tenant
from portal.mail import Mail, send_mail
from portal.sessions import token_hash

INVITATION_HOURS = 72


PASSWORD_RESET_HOURS = 1


def issue_token(session: Session, user: User, purpose: TokenPurpose, hours: int) -> str:
    """A new one-time link token for `user`; earlier unused tokens of that purpose are void."""
    session.execute(
        delete(UserToken).where(
            UserToken.user_id == user.id, UserToken.purpose == purpose, UserToken.used_at.is_(None)
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(
        UserToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=token_hash(token),
            expires_at=datetime.now(UTC) + timedelta(hours=hours),
        )
    )
    session.flush()
    return token


def void_tokens(session: Session, user_id: int, *purposes: TokenPurpose) -> int:
    """Kill the user's unused one-time links (of `purposes`, or all); returns how many."""
    query = delete(UserToken).where(UserToken.user_id == user_id, UserToken.used_at.is_(None))
    if purposes:
        query = query.where(UserToken.purpose.in_([str(p) for p in purposes]))
    return session.execute(query).rowcount


def redeem_token(
    session: Session, token: str, purpose: TokenPurpose, *, consume: bool = True
) -> User | None:
    """The user a valid, unexpired, unused token belongs to (marking it used), or None."""
    if not token or len(token) > 200:
        return None
    row = session.scalars(
        select(UserToken)
        .where(UserToken.token_hash == token_hash(token), UserToken.purpose == purpose)
        .with_for_update()
    ).first()
    now = datetime.now(UTC)
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    user = session.get(User, row.user_id, with_for_update=True)
    if user is None:
        return None
    if user.registration_expires_at is not None and user.registration_expires_at <= now:
        return None  # an unconfirmed sign-up past its time, waiting to be purged
    if consume:
        row.used_at = datetime.now(UTC)
        session.flush()
    return user


def send_invitation(session: Session, user: User, *, actor: Actor, base_url: str) -> None:
    token = issue_token(session, user, TokenPurpose.INVITATION, INVITATION_HOURS)
    link = f"{base_url.rstrip('/')}/invitation/{token}"
    organisation = scope_tenant(session).name
    inviter = actor.label if actor.type in ("user", "staff") and actor.label else "An administrator"
    send_mail(
        session,
        Mail(
            to=user.email,
            subject=f"You are invited to {organisation}",
            body=(
                f"Hello{' ' + user.name if user.name else ''},\n\n"
                f"{inviter} invited you to {organisation} on MSP Portal.\n\n"
                f"Choose your password here (the link works once, for {INVITATION_HOURS} hours):\n"
                f"{link}\n\n"
                "If you did not expect this invitation, you can ignore this email.\n"
            ),
            kind="invitation",
            tenant_slug=scope_tenant(session).slug,
        ),
    )
