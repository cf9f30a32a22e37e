"""A tenant's security settings: MFA policy and its grace period, timeouts, password length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from portal.accounts.models import SecuritySettings
from portal.accounts.validation import AccountError
from portal.compliance.audit import Actor, AuditAction, record
from portal.permissions import Permission

SETTINGS_LIMITS = {
    "password_min_length": (8, 64),
    "idle_timeout_minutes": (5, 1440),
    "absolute_timeout_minutes": (15, 43200),
    "mfa_grace_days": (0, 90),
}


def security_settings(session: Session) -> SecuritySettings:
    """The tenant's settings row, or an unsaved one holding the defaults."""
    row = session.get(SecuritySettings, 1)
    if row is None:
        row = SecuritySettings(
            id=1,
            mfa_policy="off",
            mfa_grace_days=7,
            idle_timeout_minutes=30,
            absolute_timeout_minutes=12 * 60,
            self_registration=False,
            password_min_length=12,
        )
    return row


def update_security_settings(session: Session, *, actor: Actor, **changes) -> bool:
    """Change security settings; returns False when nothing changed.

    Tightening the MFA policy starts its grace period now: users it newly binds may sign in
    without MFA until `mfa_policy_since + mfa_grace_days`, then must enrol at sign-in."""
    current = security_settings(session)
    unknown = set(changes) - {*SETTINGS_LIMITS, "mfa_policy", "self_registration"}
    if unknown:
        raise AccountError(f"Unknown setting: {', '.join(sorted(unknown))}")
    for name, (low, high) in SETTINGS_LIMITS.items():
        if name in changes:
            value = changes[name]
            if not isinstance(value, int) or not low <= value <= high:
                raise AccountError(f"Enter a whole number from {low} to {high}.", name)
    if "mfa_policy" in changes and changes["mfa_policy"] not in ("off", "admins", "everyone"):
        raise AccountError("Choose off, admins or everyone.", "mfa_policy")
    if "self_registration" in changes:
        changes["self_registration"] = bool(changes["self_registration"])
    idle = changes.get("idle_timeout_minutes", current.idle_timeout_minutes)
    absolute = changes.get("absolute_timeout_minutes", current.absolute_timeout_minutes)
    if absolute < idle:
        raise AccountError(
            "The absolute timeout cannot be shorter than the idle timeout.",
            "absolute_timeout_minutes",
        )
    before = {name: getattr(current, name) for name in changes}
    after = {name: value for name, value in changes.items() if before[name] != value}
    if not after:
        return False
    strength = {"off": 0, "admins": 1, "everyone": 2}
    if strength[after.get("mfa_policy", current.mfa_policy)] > strength[current.mfa_policy]:
        after["mfa_policy_since"] = datetime.now(UTC)
    values = {
        column: getattr(current, column)
        for column in (
            "mfa_policy",
            "mfa_grace_days",
            "mfa_policy_since",
            "idle_timeout_minutes",
            "absolute_timeout_minutes",
            "self_registration",
            "password_min_length",
        )
    }
    values.update(after, updated_at=datetime.now(UTC))
    statement = insert(SecuritySettings).values(id=1, **values)
    session.execute(
        statement.on_conflict_do_update(index_elements=["id"], set_=values),
        execution_options={"synchronize_session": False},
    )
    session.expire_all()
    record(
        session,
        AuditAction.SECURITY_SETTINGS_UPDATE,
        actor=actor,
        target=("settings", "security"),
        detail={
            "before": {k: before[k] for k in after if k in before},
            "after": {k: _plain(v) for k, v in after.items()},
        },
    )
    return True


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value


def mfa_enforced_for(settings: SecuritySettings, permissions: frozenset[str]) -> bool:
    """Whether the tenant's policy requires MFA of someone holding `permissions`."""
    if settings.mfa_policy == "everyone":
        return True
    return settings.mfa_policy == "admins" and is_admin(permissions)


def mfa_deadline(settings: SecuritySettings) -> datetime | None:
    """When the grace period of the current MFA policy ends (None: the policy is off)."""
    if settings.mfa_policy == "off":
        return None
    since = settings.mfa_policy_since or datetime(1970, 1, 1, tzinfo=UTC)
    return since + timedelta(days=settings.mfa_grace_days)


def is_admin(permissions: frozenset[str]) -> bool:
    """An administrator for the MFA policy: anyone who can manage users, roles or security."""
    return bool(
        permissions & {Permission.USERS_MANAGE, Permission.ROLES_MANAGE, Permission.SECURITY_MANAGE}
    )
