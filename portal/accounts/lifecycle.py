"""A tenant user's lifecycle: create, profile, suspend, reactivate, delete, restore, sign out."""

# Invariants:
# - Email is unique per tenant, case-insensitively (a unique index on lower(email)).
# - A tenant never exceeds its max users: counted and inserted (or restored) under a per-tenant
#   advisory lock (lock_user_quota). Unconfirmed self-registrations do not count.
# - Suspending or deleting a user ends all their sessions and voids their one-time links in
#   the same transaction; an email change voids their links and tells the old address.
# - Every change goes through the rights rules of portal.accounts.roles (never act on someone
#   who holds more than you; the last active tenant admin remains).
# Functions run inside a tenant scope, flush but never commit, write their audit entry in the
# same transaction and send mail only after commit; one that would change nothing returns False.

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from portal.accounts.links import INVITATION_HOURS, send_invitation, void_tokens
from portal.accounts.models import User, UserRole, UserSession, UserStatus, UserToken
from portal.accounts.roles import (
    ensure_admin_remains,
    ensure_grantable,
    ensure_may_change_user,
    is_active_admin,
    is_actor,
    roles,
)
from portal.accounts.settings import security_settings
from portal.accounts.validation import AccountError, QuotaExceeded, validate_email, validate_name
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import advisory_key, scope_tenant
from portal.mail import Mail, send_mail
from portal.password_policy import check_password
from portal.passwords import hash_password
from portal.permissions import BuiltinRole

USER_DELETE_GRACE_DAYS = 30


def count_users(session: Session) -> int:
    """Users that count toward max users: not deleted, and not an unconfirmed sign-up."""
    return session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.status != UserStatus.DELETED, User.registration_expires_at.is_(None))
    )


def find_user(session: Session, email: str, *, lock: bool = False) -> User | None:
    query = select(User).where(func.lower(User.email) == (email or "").strip().lower())
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def get_user(session: Session, user_id: int, *, lock: bool = False) -> User | None:
    return session.get(User, user_id, with_for_update=lock)


def lock_user_quota(session: Session) -> None:
    """Serialise this tenant's quota checks until the transaction ends (count, then insert)."""
    session.execute(
        select(func.pg_advisory_xact_lock(advisory_key(f"users:{session.info['tenant_schema']}")))
    )


def create_user(
    session: Session,
    *,
    email: str,
    name: str = "",
    password: str | None = None,
    status: str = UserStatus.ACTIVE,
    role_keys=(),
    actor: Actor,
    action: AuditAction = AuditAction.USER_CREATE,
    check_password_policy: bool = True,
    registration: bool = False,
) -> User:
    """Create a user in the session's tenant, never exceeding the tenant's max users.

    The quota check and the insert happen under a transaction-scoped advisory lock per tenant,
    so concurrent creations are serialised and the count seen is the committed one. A
    self-registration (`registration`) is not counted until confirmed (accept_invitation
    checks the quota then) and expires after INVITATION_HOURS.
    """
    tenant = scope_tenant(session)
    email = validate_email(email)
    name = validate_name(name)
    if password is not None and check_password_policy:
        check_password(
            password, email=email, min_length=security_settings(session).password_min_length
        )
    known_roles = {r.key for r in roles(session)}
    unknown = [k for k in role_keys or () if k not in known_roles]
    if unknown:
        raise AccountError(f"Unknown role: {', '.join(unknown)}", "roles")
    ensure_grantable(session, set(role_keys or ()), actor=actor)
    lock_user_quota(session)
    if session.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
        raise AccountError("A user with this email already exists.", "email")
    if (
        not registration
        and tenant.max_users is not None
        and count_users(session) >= tenant.max_users
    ):
        raise QuotaExceeded(
            f"{tenant.name} has reached its limit of {tenant.max_users} users.", "email"
        )
    now = datetime.now(UTC)
    user = User(
        email=email,
        name=name,
        status=status,
        password_hash=hash_password(password) if password else None,
        password_changed_at=now if password else None,
        sign_in_count=0,
        registration_expires_at=now + timedelta(hours=INVITATION_HOURS) if registration else None,
    )
    session.add(user)
    session.flush()
    for key in sorted(set(role_keys or ()) - {BuiltinRole.MEMBER}):
        session.add(UserRole(user_id=user.id, role_key=key))
    session.flush()
    record(
        session,
        action,
        actor=actor,
        target=("user", user.id),
        detail={"status": status, "roles": sorted(set(role_keys or ()))},
        personal={"email": email, "name": user.name},
    )
    return user


def update_profile(
    session: Session,
    user: User,
    *,
    name: str,
    email: str | None = None,
    actor: Actor,
    base_url: str | None = None,
) -> bool:
    """Change name (and, for admins, email); returns False when nothing changed.

    A new email voids the user's pending invitation and reset links (they went to the old
    address) and mails a notice to the old address; an invited user gets a new invitation at
    the new address when `base_url` is given."""
    new = {"name": validate_name(name)}
    if email is not None:
        new["email"] = validate_email(email)
    before = {k: getattr(user, k) for k in new}
    changed = {k: v for k, v in new.items() if before[k] != v}
    if not changed:
        return False
    ensure_may_change_user(session, user, actor=actor, doing="change the profile of")
    if "email" in changed and changed["email"].lower() != user.email.lower():
        if find_user(session, changed["email"]) is not None:
            raise AccountError("A user with this email already exists.", "email")
    for k, v in changed.items():
        setattr(user, k, v)
    voided = void_tokens(session, user.id) if "email" in changed else 0
    session.flush()
    record(
        session,
        AuditAction.USER_UPDATE,
        actor=actor,
        target=("user", user.id),
        detail={"fields": sorted(changed), **({"links_voided": voided} if voided else {})},
        personal={"before": {k: before[k] for k in changed}, "after": changed},
    )
    if "email" in changed:
        _email_changed_notice(session, user, old=before["email"], actor=actor)
        if user.status == UserStatus.INVITED and base_url:
            send_invitation(session, user, actor=actor, base_url=base_url)
    return True


def _email_changed_notice(session: Session, user: User, *, old: str, actor: Actor) -> None:
    """Tell the old address that the account's email changed (after commit), so a takeover
    through a changed address does not go unnoticed."""
    organisation = scope_tenant(session).name
    by = "you" if is_actor(actor, user.id) else (actor.label or "an administrator")
    send_mail(
        session,
        Mail(
            to=old,
            subject=f"{organisation}: the email of your account was changed",
            body=(
                f"Hello{' ' + user.name if user.name else ''},\n\n"
                f"The email address of your {organisation} account was changed from {old} to "
                f"{user.email} by {by}. Links sent earlier to this address no longer work.\n\n"
                "If you did not expect this, contact your administrator at once.\n"
            ),
            kind="security",
            tenant_slug=scope_tenant(session).slug,
        ),
    )


def end_all_sessions(session: Session, user_id: int, *, except_session: int | None = None) -> int:
    """Delete the user's sessions (all, or all but one); returns how many."""
    query = delete(UserSession).where(UserSession.user_id == user_id)
    if except_session is not None:
        query = query.where(UserSession.id != except_session)
    return session.execute(query).rowcount


def suspend_user(session: Session, user: User, *, actor: Actor, reason: str = "") -> bool:
    """Suspend: sign-in refused, every session ended at once, data kept."""
    if user.status == UserStatus.SUSPENDED:
        return False
    if user.status == UserStatus.DELETED:
        raise AccountError(f"{user.email} is deleted; restore them first.")
    if actor.type == "user" and actor.id == str(user.id):
        raise AccountError("You cannot suspend yourself.")
    ensure_may_change_user(session, user, actor=actor, doing="suspend")
    if is_active_admin(session, user):
        ensure_admin_remains(session, losing_user=user.id)
    before = user.status
    user.status = UserStatus.SUSPENDED
    user.status_reason = (reason or "").strip()[:500] or None
    ended = end_all_sessions(session, user.id)
    void_tokens(session, user.id)
    session.flush()
    record(
        session,
        AuditAction.USER_SUSPEND,
        actor=actor,
        target=("user", user.id),
        detail={"before": before, "reason": user.status_reason, "sessions_ended": ended},
    )
    return True


def reactivate_user(session: Session, user: User, *, actor: Actor) -> bool:
    if user.status != UserStatus.SUSPENDED:
        return False
    ensure_may_change_user(session, user, actor=actor, doing="reactivate")
    user.status = UserStatus.ACTIVE if user.password_hash else UserStatus.INVITED
    user.status_reason = None
    session.flush()
    record(
        session,
        AuditAction.USER_REACTIVATE,
        actor=actor,
        target=("user", user.id),
        detail={"after": user.status},
    )
    return True


def delete_user(session: Session, user: User, *, actor: Actor) -> bool:
    """Soft delete: the user disappears from the organisation and cannot sign in; an admin can
    restore them within the grace period, after which retention erases them."""
    if user.status == UserStatus.DELETED:
        return False
    if actor.type == "user" and actor.id == str(user.id):
        raise AccountError("You cannot delete yourself.")
    ensure_may_change_user(session, user, actor=actor, doing="delete")
    if is_active_admin(session, user):
        ensure_admin_remains(session, losing_user=user.id)
    before = user.status
    user.status = UserStatus.DELETED
    user.status_reason = before  # restored to this
    user.deleted_at = datetime.now(UTC)
    ended = end_all_sessions(session, user.id)
    session.execute(delete(UserToken).where(UserToken.user_id == user.id))
    session.flush()
    record(
        session,
        AuditAction.USER_DELETE,
        actor=actor,
        target=("user", user.id),
        detail={"before": before, "sessions_ended": ended},
    )
    return True


def restore_deadline(user: User) -> datetime | None:
    if user.status != UserStatus.DELETED or user.deleted_at is None:
        return None
    return user.deleted_at + timedelta(days=USER_DELETE_GRACE_DAYS)


def restore_user(session: Session, user: User, *, actor: Actor) -> bool:
    if user.status != UserStatus.DELETED:
        return False
    deadline = restore_deadline(user)
    if deadline is not None and deadline < datetime.now(UTC):
        raise AccountError(f"{user.email} was deleted more than {USER_DELETE_GRACE_DAYS} days ago.")
    ensure_may_change_user(session, user, actor=actor, doing="restore")
    tenant = scope_tenant(session)
    lock_user_quota(session)
    if tenant.max_users is not None and count_users(session) >= tenant.max_users:
        raise QuotaExceeded(f"{tenant.name} has reached its limit of {tenant.max_users} users.")
    previous = user.status_reason if user.status_reason in set(UserStatus) else None
    if previous in (None, UserStatus.DELETED):
        previous = UserStatus.ACTIVE if user.password_hash else UserStatus.INVITED
    user.status = previous
    user.status_reason = None
    user.deleted_at = None
    session.flush()
    record(
        session,
        AuditAction.USER_RESTORE,
        actor=actor,
        target=("user", user.id),
        detail={"after": user.status},
    )
    return True


def revoke_all_sessions(
    session: Session, user: User, *, actor: Actor, except_session: int | None = None
) -> int:
    """Sign the user out of every browser (but `except_session`); audited when any ended."""
    ensure_may_change_user(session, user, actor=actor, doing="sign out")
    ended = end_all_sessions(session, user.id, except_session=except_session)
    if ended:
        record(
            session,
            AuditAction.SESSION_REVOKE,
            actor=actor,
            target=("user", user.id),
            detail={"sessions": ended, "all": except_session is None},
        )
    return ended


def revoke_session(session: Session, user_id: int, session_id: int, *, actor: Actor) -> bool:
    """End one session of `user_id`; False if it is not theirs or already gone."""
    ensure_may_change_user(session, user_id, actor=actor, doing="sign out")
    ended = session.execute(
        delete(UserSession).where(UserSession.id == session_id, UserSession.user_id == user_id)
    ).rowcount
    if not ended:
        return False
    record(
        session,
        AuditAction.SESSION_REVOKE,
        actor=actor,
        target=("user", user_id),
        detail={"session": session_id},
    )
    return True
