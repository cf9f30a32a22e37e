"""Bulk actions on selected users, each through its own service, refusals reported per row."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.accounts.lifecycle import (
    delete_user,
    reactivate_user,
    revoke_all_sessions,
    suspend_user,
)
from portal.accounts.models import User
from portal.accounts.roles import ensure_grantable, roles, set_user_roles, user_role_keys
from portal.accounts.validation import AccountError
from portal.compliance.audit import Actor

BULK_ACTIONS = ("suspend", "reactivate", "assign_role", "revoke_sessions", "delete")


@dataclass
class BulkResult:
    changed: int = 0
    unchanged: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (email, why)

    def summary(self, verb: str) -> str:
        parts = [f"{self.changed} user{'s' if self.changed != 1 else ''} {verb}"]
        if self.unchanged:
            parts.append(f"{self.unchanged} already so")
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        return ", ".join(parts)


def bulk_apply(
    session: Session,
    user_ids,
    action: str,
    *,
    actor: Actor,
    role_key: str | None = None,
) -> BulkResult:
    """Apply one action to many users in this transaction, each through its own service (so
    each is audited and each rule holds); a refusal for one user is reported, not fatal."""
    if action not in BULK_ACTIONS:
        raise AccountError("Choose an action.", "action")
    if action == "assign_role" and role_key not in {r.key for r in roles(session)}:
        raise AccountError("Choose a role to assign.", "role")
    if action == "assign_role":
        ensure_grantable(session, {role_key}, actor=actor, field="role")
    ids = sorted({int(i) for i in user_ids})[:1000]
    if not ids:
        raise AccountError("Select at least one user.", "ids")
    result = BulkResult()
    users = session.scalars(
        select(User).where(User.id.in_(ids)).order_by(User.id).with_for_update()
    )
    for user in users:
        try:
            with session.begin_nested():
                if action == "suspend":
                    done = suspend_user(session, user, actor=actor, reason="bulk action")
                elif action == "reactivate":
                    done = reactivate_user(session, user, actor=actor)
                elif action == "delete":
                    done = delete_user(session, user, actor=actor)
                elif action == "revoke_sessions":
                    done = revoke_all_sessions(session, user, actor=actor) > 0
                else:
                    keys = user_role_keys(session, user.id)
                    done = role_key not in keys and set_user_roles(
                        session, user, [*keys, role_key], actor=actor
                    )
        except AccountError as error:
            result.refused.append((user.email, str(error)))
            continue
        if done:
            result.changed += 1
        else:
            result.unchanged += 1
    return result
