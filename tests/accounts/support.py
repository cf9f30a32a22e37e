"""What the accounts service tests share: the system actor, audit entries, users and sessions."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.accounts import lifecycle
from portal.accounts.models import User, UserSession
from portal.compliance.audit import Actor
from portal.compliance.models import TenantAuditEntry
from portal.sessions import token_hash
from tests.conftest import PASSWORD

SYSTEM = Actor.system("test")
ADMIN_PERMISSIONS = ["accounts:user:view", "accounts:user:manage", "accounts:role:manage"]


def entries(session, action, target_id=None) -> list[TenantAuditEntry]:
    query = select(TenantAuditEntry).where(TenantAuditEntry.action == action)
    if target_id is not None:
        query = query.where(
            TenantAuditEntry.target_type == "user", TenantAuditEntry.target_id == str(target_id)
        )
    return list(session.scalars(query.order_by(TenantAuditEntry.seq)))


def make(session, email, roles=(), **kwargs) -> User:
    return lifecycle.create_user(
        session, email=email, password=PASSWORD, role_keys=list(roles), actor=SYSTEM, **kwargs
    )


def add_session(session, user) -> None:
    session.add(
        UserSession(user_id=user.id, token_hash=token_hash(f"token-{user.id}-{user.email}"))
    )
    session.flush()


def session_count(session, user) -> int:
    return session.scalar(
        select(func.count()).select_from(UserSession).where(UserSession.user_id == user.id)
    )
