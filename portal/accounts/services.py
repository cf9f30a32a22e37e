"""Tenant user changes: lifecycle, roles, security settings, invitations and registration.

Every function runs inside a tenant scope (the session's schema is the tenant's), flushes but
never commits, writes its audit entry in the same transaction, and sends mail only after
commit (portal.mail.send_mail). Functions that would change nothing return False.

Invariants kept here:
- Email is unique per tenant, case-insensitively (a unique index on lower(email)).
- A tenant never exceeds its max users: counted and inserted under a per-tenant advisory lock.
- At least one active tenant admin remains: suspending, deleting or demoting the last one is
  refused.
- Suspending or deleting a user deletes all their sessions in the same transaction.
- Nobody gets more than the actor holds (A10): a person (tenant user or staff visit, with the
  permissions the door put on their Actor) grants or creates only roles whose permissions they
  hold, never changes a role they hold, and changes nothing about a user who holds a permission
  they lack. System actors (CLI, jobs) hold every permission.
- A one-time link dies with what it was issued for: an email change voids a user's invitation
  and reset links, a password change their reset links, suspension and deletion all of them.
- Unconfirmed self-registrations do not count toward max users; they expire after
  INVITATION_HOURS and are purged (purge_expired_registrations). Confirming one takes the quota
  lock and checks the limit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from portal.accounts.models import (
    Role,
    SecuritySettings,
    TokenPurpose,
    User,
    UserRole,
    UserSession,
    UserStatus,
    UserToken,
)
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import advisory_key
from portal.mail import Mail, send_mail
from portal.passwords import hash_password
from portal.permissions import BUILTIN_ROLES, TENANT_PERMISSIONS, BuiltinRole, Permission
from portal.sessions import token_hash
from portal.validation import InputError

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
ROLE_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
INVITATION_HOURS = 72
PASSWORD_RESET_HOURS = 1
USER_DELETE_GRACE_DAYS = 30


class AccountError(InputError):
    """An account change a person can correct."""


class QuotaExceeded(AccountError):
    pass


def validate_email(email: str | None) -> str:
    """`email`, stripped, if it is an address that can be stored and found again.

    Addresses are compared without regard to case: Python's lower case of what is typed
    against PostgreSQL's lower(email) of what is stored (the unique index). The two agree
    letter for letter except where Python's lower case is not one letter for one: "İ"
    (U+0130) becomes "i̇" (two code points) in Python but "i" in PostgreSQL, and a word-final
    "Σ" becomes "ς" in Python but "σ" in PostgreSQL. Such an address could never be found
    again, and its twin ("İnci@…" beside "inci@…") passed the duplicate check and then hit
    the unique index (a 500). They are refused, asking for the address in lower case, on
    which both sides agree. Control characters and lone surrogates cannot be stored at all.
    """
    email = (email or "").strip()
    if (
        len(email) > 320
        or not EMAIL_RE.match(email)
        or any(unicodedata.category(c) in ("Cc", "Cs") for c in email)
    ):
        raise AccountError("Enter a valid email address.", "email")
    lowered = email.lower()
    if len(lowered) != len(email) or lowered != "".join(c.lower() for c in email):
        odd = next((c for c in email if len(c.lower()) != 1), "Σ")
        raise AccountError(
            f"Type the address in lower case: “{odd}” has more than one lower-case form, "
            "so the address could not be matched reliably.",
            "email",
        )
    return email


def validate_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if len(name) > 200:
        raise AccountError("Use at most 200 characters.", "name")
    return name


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


# ---- security settings --------------------------------------------------------------------

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


# ---- never more than you hold (A10) --------------------------------------------------------


def held_permissions(actor: Actor) -> frozenset[str]:
    """The tenant permissions `actor` acts with: every one for the system (CLI, jobs, seeding);
    for a person, what the door put on the Actor, and none when it put nothing (fail closed)."""
    if actor.type == "system":
        return frozenset(TENANT_PERMISSIONS)
    return frozenset(actor.permissions or ()) & frozenset(TENANT_PERMISSIONS)


def _listed(permissions) -> str:
    return ", ".join(sorted(str(p) for p in permissions))


def _is_actor(actor: Actor, user_id: int) -> bool:
    return actor.type == "user" and actor.id == str(user_id)


def user_change_refusal(
    session: Session, user_id: int, *, actor: Actor, doing: str = "change"
) -> str | None:
    """Why `actor` may not change user `user_id` (who holds a permission the actor lacks), or
    None. Your own account is always yours to change (within the other rules)."""
    if _is_actor(actor, user_id):
        return None
    missing = permissions_for(session, user_id) - held_permissions(actor)
    if not missing:
        return None
    return (
        f"You cannot {doing} this user: they hold permissions you do not ({_listed(missing)}). "
        "Ask someone who holds them."
    )


def ensure_may_change_user(
    session: Session, user: User | int, *, actor: Actor, doing: str = "change"
) -> None:
    user_id = user if isinstance(user, int) else user.id
    refusal = user_change_refusal(session, user_id, actor=actor, doing=doing)
    if refusal:
        raise AccountError(refusal)


def grantable_role_keys(session: Session, actor: Actor, all_roles=None) -> set[str]:
    """Keys of the roles `actor` may give: those whose permissions they all hold."""
    held = held_permissions(actor)
    return {r.key for r in (all_roles or roles(session)) if r.permissions <= held}


def _ensure_grantable(session: Session, role_keys, *, actor: Actor, field: str = "roles") -> None:
    held = held_permissions(actor)
    for info in roles(session):
        if info.key in set(role_keys or ()) and not info.permissions <= held:
            raise AccountError(
                f"You cannot give the role {info.name}: it has permissions you do not hold "
                f"({_listed(info.permissions - held)}).",
                field,
            )


def _held_role_keys(session: Session, actor: Actor) -> set[str]:
    if actor.type != "user" or not (actor.id or "").isdigit():
        return set()
    return set(user_role_keys(session, int(actor.id)))


def role_change_refusal(session: Session, role: Role | RoleInfo, *, actor: Actor) -> str | None:
    """Why `actor` may not change or delete the tenant-defined `role`, or None: nobody changes
    a role they hold, nor one with a permission they lack."""
    if role.key in _held_role_keys(session, actor):
        return f"You hold the role {role.name}, so someone else must change it."
    missing = set(role.permissions) - held_permissions(actor)
    if missing:
        return (
            f"The role {role.name} has permissions you do not hold ({_listed(missing)}); "
            "only someone who holds them can change it."
        )
    return None


def _ensure_permissions_held(permissions, *, actor: Actor) -> None:
    missing = set(permissions) - held_permissions(actor)
    if missing:
        raise AccountError(
            f"You cannot give a role permissions you do not hold ({_listed(missing)}).",
            "permissions",
        )


# ---- roles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleInfo:
    key: str
    name: str
    description: str
    permissions: frozenset[str]
    builtin: bool
    id: int | None = None
    members: int = 0


def roles(session: Session, *, with_counts: bool = False) -> list[RoleInfo]:
    """Built-in roles first, then the tenant's own, by name."""
    counts: dict[str, int] = {}
    if with_counts:
        counts = dict(
            session.execute(
                select(UserRole.role_key, func.count())
                .join(User, User.id == UserRole.user_id)
                .where(User.status != UserStatus.DELETED)
                .group_by(UserRole.role_key)
            ).all()
        )
    result = [
        RoleInfo(key, name, description, frozenset(perms), True, members=counts.get(key, 0))
        for key, (name, description, perms) in BUILTIN_ROLES.items()
    ]
    for role in session.scalars(select(Role).order_by(Role.name)):
        result.append(
            RoleInfo(
                role.key,
                role.name,
                role.description,
                frozenset(role.permissions),
                False,
                id=role.id,
                members=counts.get(role.key, 0),
            )
        )
    return result


def role_names(session: Session) -> dict[str, str]:
    return {role.key: role.name for role in roles(session)}


def user_role_keys(session: Session, user_id: int) -> list[str]:
    return list(
        session.scalars(
            select(UserRole.role_key).where(UserRole.user_id == user_id).order_by(UserRole.role_key)
        )
    )


def permissions_for(session: Session, user_id: int) -> frozenset[str]:
    """The permissions a user holds now, through built-in and tenant-defined roles. Read on
    every request, so removing a permission from a role takes effect on the next one."""
    rows = session.execute(
        select(UserRole.role_key, Role.permissions)
        .outerjoin(Role, Role.key == UserRole.role_key)
        .where(UserRole.user_id == user_id)
    ).all()
    return permissions_of(dict(rows))


def role_permissions_column(user_id_column):
    """A correlated column holding {role key: custom role's permissions, or null for a
    built-in} for the user in `user_id_column`, so the per-request session query also brings
    what `permissions_of` needs."""
    return (
        select(func.jsonb_object_agg(UserRole.role_key, func.to_jsonb(Role.permissions)))
        .select_from(UserRole)
        .outerjoin(Role, Role.key == UserRole.role_key)
        .where(UserRole.user_id == user_id_column)
        .scalar_subquery()
        .label("role_permissions")
    )


def permissions_of(role_permissions: dict[str, list[str] | None] | None) -> frozenset[str]:
    """Permissions from {role key: custom permissions (None for a built-in role)}."""
    held: set[str] = set()
    for key, custom in (role_permissions or {}).items():
        if key in BUILTIN_ROLES:
            held |= BUILTIN_ROLES[key][2]
        elif custom:
            held |= set(custom) & set(TENANT_PERMISSIONS)
    return frozenset(held)


def _validate_permissions(permissions) -> list[str]:
    chosen = sorted(set(permissions or ()))
    unknown = [p for p in chosen if p not in set(TENANT_PERMISSIONS)]
    if unknown:
        raise AccountError(f"Unknown permission: {', '.join(unknown)}", "permissions")
    return chosen


def _role_key_from_name(name: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60]
    if not key or not key[0].isalpha():
        key = f"role_{key}"[:60]
    return key


def create_role(
    session: Session, *, name: str, description: str = "", permissions=(), actor: Actor
) -> Role:
    name = " ".join((name or "").split())
    if not 2 <= len(name) <= 100:
        raise AccountError("Give the role a name of 2 to 100 characters.", "name")
    key = _role_key_from_name(name)
    taken = {r.key for r in roles(session)} | {r.name.lower() for r in roles(session)}
    if key in taken or name.lower() in taken:
        raise AccountError(f"A role named “{name}” already exists.", "name")
    chosen = _validate_permissions(permissions)
    _ensure_permissions_held(chosen, actor=actor)
    role = Role(
        key=key,
        name=name,
        description=(description or "").strip()[:500],
        permissions=chosen,
    )
    session.add(role)
    session.flush()
    record(
        session,
        AuditAction.ROLE_CREATE,
        actor=actor,
        target=("role", role.key),
        detail={"name": role.name, "permissions": role.permissions},
    )
    return role


def update_role(
    session: Session, role: Role, *, name: str, description: str, permissions, actor: Actor
) -> bool:
    refusal = role_change_refusal(session, role, actor=actor)
    if refusal:
        raise AccountError(refusal)
    name = " ".join((name or "").split())
    if not 2 <= len(name) <= 100:
        raise AccountError("Give the role a name of 2 to 100 characters.", "name")
    others = [r for r in roles(session) if r.key != role.key]
    if name.lower() in {r.name.lower() for r in others}:
        raise AccountError(f"A role named “{name}” already exists.", "name")
    new = {
        "name": name,
        "description": (description or "").strip()[:500],
        "permissions": _validate_permissions(permissions),
    }
    _ensure_permissions_held(new["permissions"], actor=actor)
    before = {k: getattr(role, k) for k in new}
    if before == new:
        return False
    if set(before["permissions"]) != set(new["permissions"]):
        _ensure_admin_remains(session, removing_role=role.key, new_permissions=new["permissions"])
    for k, v in new.items():
        setattr(role, k, v)
    session.flush()
    record(
        session,
        AuditAction.ROLE_UPDATE,
        actor=actor,
        target=("role", role.key),
        detail={"before": before, "after": new},
    )
    return True


def delete_role(session: Session, role: Role, *, actor: Actor) -> None:
    refusal = role_change_refusal(session, role, actor=actor)
    if refusal:
        raise AccountError(refusal)
    _ensure_admin_remains(session, removing_role=role.key, new_permissions=[])
    members = session.scalar(
        select(func.count()).select_from(UserRole).where(UserRole.role_key == role.key)
    )
    session.execute(delete(UserRole).where(UserRole.role_key == role.key))
    session.delete(role)
    session.flush()
    record(
        session,
        AuditAction.ROLE_DELETE,
        actor=actor,
        target=("role", role.key),
        detail={"name": role.name, "permissions": role.permissions, "members": members},
    )


def _admin_role_keys(session: Session, *, override: dict[str, list[str]] | None = None) -> set[str]:
    """Role keys that confer user management (the powers of a tenant admin)."""
    keys = {BuiltinRole.TENANT_ADMIN.value}
    for role in session.scalars(select(Role)):
        permissions = (override or {}).get(role.key, role.permissions)
        if Permission.USERS_MANAGE in permissions and Permission.ROLES_MANAGE in permissions:
            keys.add(role.key)
    return keys


def _active_admin_ids(session: Session, admin_keys: set[str]) -> set[int]:
    return set(
        session.scalars(
            select(UserRole.user_id)
            .join(User, User.id == UserRole.user_id)
            .where(UserRole.role_key.in_(admin_keys), User.status == UserStatus.ACTIVE)
        )
    )


def _ensure_admin_remains(
    session: Session,
    *,
    losing_user: int | None = None,
    removing_role: str | None = None,
    new_permissions: list[str] | None = None,
) -> None:
    """Refuse a change that would leave the tenant without an active administrator."""
    session.execute(
        select(func.pg_advisory_xact_lock(advisory_key(f"admins:{session.info['tenant_schema']}")))
    )
    before = _active_admin_ids(session, _admin_role_keys(session))
    if not before:
        return  # no admin to protect (e.g. a tenant created without one)
    override = {removing_role: new_permissions or []} if removing_role else None
    after = _active_admin_ids(session, _admin_role_keys(session, override=override))
    if removing_role and removing_role == BuiltinRole.TENANT_ADMIN:
        after = set()
    after.discard(losing_user)
    if not after:
        raise AccountError(
            "This would leave the organisation without an administrator. "
            "Make someone else a tenant admin first."
        )


def set_user_roles(session: Session, user: User, role_keys, *, actor: Actor) -> bool:
    """Replace the user's roles; returns False when they are unchanged."""
    known = {r.key for r in roles(session)}
    wanted = sorted(set(role_keys or ()) - {BuiltinRole.MEMBER})
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise AccountError(f"Unknown role: {', '.join(unknown)}", "roles")
    before = [k for k in user_role_keys(session, user.id) if k != BuiltinRole.MEMBER]
    if before == wanted:
        return False
    ensure_may_change_user(session, user, actor=actor, doing="change the roles of")
    _ensure_grantable(session, set(wanted) - set(before), actor=actor)
    admin_keys = _admin_role_keys(session)
    if set(before) & admin_keys and not set(wanted) & admin_keys:
        _ensure_admin_remains(session, losing_user=user.id)
    session.execute(delete(UserRole).where(UserRole.user_id == user.id))
    for key in wanted:
        session.add(UserRole(user_id=user.id, role_key=key))
    session.flush()
    record(
        session,
        AuditAction.USER_ROLES_CHANGE,
        actor=actor,
        target=("user", user.id),
        detail={"before": before, "after": wanted},
    )
    return True


# ---- creating users -----------------------------------------------------------------------


def _lock_user_quota(session: Session) -> None:
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
    tenant = session.info["tenant"]
    email = validate_email(email)
    name = validate_name(name)
    if password is not None and check_password_policy:
        from portal.auth.password_policy import check_password

        check_password(
            password, email=email, min_length=security_settings(session).password_min_length
        )
    known_roles = {r.key for r in roles(session)}
    unknown = [k for k in role_keys or () if k not in known_roles]
    if unknown:
        raise AccountError(f"Unknown role: {', '.join(unknown)}", "roles")
    _ensure_grantable(session, set(role_keys or ()), actor=actor)
    _lock_user_quota(session)
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


def issue_token(session: Session, user: User, purpose: TokenPurpose, hours: int) -> str:
    """A new one-time link token for `user`; earlier unused tokens of that purpose are void."""
    import secrets

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


def _tenant_name(session: Session) -> str:
    return session.info["tenant"].name


def _tenant_slug(session: Session) -> str:
    return session.info["tenant"].slug


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
    _send_invitation(session, user, actor=actor, base_url=base_url)
    return user


def resend_invitation(session: Session, user: User, *, actor: Actor, base_url: str) -> None:
    if user.status != UserStatus.INVITED:
        raise AccountError(f"{user.email} has already accepted the invitation.")
    if user.registration_pending:  # an unconfirmed sign-up: its new link gets a new term
        user.registration_expires_at = datetime.now(UTC) + timedelta(hours=INVITATION_HOURS)
    _send_invitation(session, user, actor=actor, base_url=base_url)
    record(
        session,
        AuditAction.USER_INVITE,
        actor=actor,
        target=("user", user.id),
        detail={"resent": True},
    )


def _send_invitation(session: Session, user: User, *, actor: Actor, base_url: str) -> None:
    token = issue_token(session, user, TokenPurpose.INVITATION, INVITATION_HOURS)
    link = f"{base_url.rstrip('/')}/invitation/{token}"
    organisation = _tenant_name(session)
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
            tenant_slug=_tenant_slug(session),
        ),
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
        _send_invitation(session, existing, actor=actor, base_url=base_url)
        return None
    if existing is not None:
        if existing.status in (UserStatus.ACTIVE, UserStatus.INVITED):
            send_mail(
                session,
                Mail(
                    to=existing.email,
                    subject=f"Someone tried to register with your email at {_tenant_name(session)}",
                    body=(
                        "Someone (perhaps you) asked to register an account with this email "
                        "address, but you already have one.\n\n"
                        f"Sign in: {base_url.rstrip('/')}/sign-in\n"
                        f"Forgot your password? {base_url.rstrip('/')}/forgot-password\n"
                    ),
                    kind="notice",
                    tenant_slug=_tenant_slug(session),
                ),
            )
        return None
    tenant = session.info["tenant"]
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
    _send_invitation(session, user, actor=actor, base_url=base_url)
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
                "registered_at": _plain(user.created_at),
                "expired_at": _plain(user.registration_expires_at),
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


def accept_invitation(
    session: Session, token: str, *, password: str, name: str | None = None, actor: Actor
) -> User | None:
    """Set the invited user's password and activate them; None for a bad or used link.

    A self-registration counts toward max users from here: confirming it takes the quota lock
    and is refused (QuotaExceeded, the link still good) while the organisation is full."""
    from portal.auth.password_policy import check_password

    user = redeem_token(session, token, TokenPurpose.INVITATION, consume=False)
    if user is None or user.status != UserStatus.INVITED:
        return None
    check_password(
        password, email=user.email, min_length=security_settings(session).password_min_length
    )
    confirming = user.registration_pending
    if confirming:
        tenant = session.info["tenant"]
        _lock_user_quota(session)
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


# ---- changing users -----------------------------------------------------------------------


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
            _send_invitation(session, user, actor=actor, base_url=base_url)
    return True


def _email_changed_notice(session: Session, user: User, *, old: str, actor: Actor) -> None:
    """Tell the old address that the account's email changed (after commit), so a takeover
    through a changed address does not go unnoticed."""
    organisation = _tenant_name(session)
    by = "you" if _is_actor(actor, user.id) else (actor.label or "an administrator")
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
            tenant_slug=_tenant_slug(session),
        ),
    )


def end_all_sessions(session: Session, user_id: int, *, except_session: int | None = None) -> int:
    """Delete the user's sessions (all, or all but one); returns how many."""
    query = delete(UserSession).where(UserSession.user_id == user_id)
    if except_session is not None:
        query = query.where(UserSession.id != except_session)
    return session.execute(query).rowcount


def _is_active_admin(session: Session, user: User) -> bool:
    return user.status == UserStatus.ACTIVE and bool(
        set(user_role_keys(session, user.id)) & _admin_role_keys(session)
    )


def suspend_user(session: Session, user: User, *, actor: Actor, reason: str = "") -> bool:
    """Suspend: sign-in refused, every session ended at once, data kept."""
    if user.status == UserStatus.SUSPENDED:
        return False
    if user.status == UserStatus.DELETED:
        raise AccountError(f"{user.email} is deleted; restore them first.")
    if actor.type == "user" and actor.id == str(user.id):
        raise AccountError("You cannot suspend yourself.")
    ensure_may_change_user(session, user, actor=actor, doing="suspend")
    if _is_active_admin(session, user):
        _ensure_admin_remains(session, losing_user=user.id)
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
    if _is_active_admin(session, user):
        _ensure_admin_remains(session, losing_user=user.id)
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
    tenant = session.info["tenant"]
    _lock_user_quota(session)
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


# ---- bulk actions -------------------------------------------------------------------------

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
        _ensure_grantable(session, {role_key}, actor=actor, field="role")
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


def has_other_admins(session: Session, user_id: int) -> bool:
    return bool(_active_admin_ids(session, _admin_role_keys(session)) - {user_id})
