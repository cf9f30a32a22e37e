"""Roles and the rights rules: who holds which permissions, role changes, who may change whom."""

# Invariants (A10, rights never grow by delegation), checked here whatever the door:
# - An actor acts with held_permissions(actor): every tenant permission for the system (CLI,
#   jobs, seeding); for a person (tenant user or staff visit) what the door put on their Actor,
#   and none when it put nothing.
# - Nobody grants a role, or creates or widens one, with a permission they do not hold.
# - Nobody changes or deletes a tenant-defined role they hold, or one with a permission they
#   lack.
# - Nobody changes a user (profile, roles, status, sessions) who holds a permission they lack;
#   your own account is yours to change, within the other rules.
# - At least one active tenant admin remains: removing the last one's powers (by suspending,
#   deleting or demoting them, or by changing or deleting their role) is refused, under a
#   per-tenant advisory lock.
# - Built-in roles live in code (portal.permissions); tenant-defined roles hold only tenant
#   permissions, and what a user holds is read again on every request.
# Functions flush and write their audit entry in the caller's transaction; they never commit.

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from portal.accounts.models import Role, User, UserRole, UserStatus
from portal.accounts.validation import AccountError
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import advisory_key
from portal.permissions import BUILTIN_ROLES, TENANT_PERMISSIONS, BuiltinRole, Permission

# ---- never more than you hold (A10) --------------------------------------------------------


def held_permissions(actor: Actor) -> frozenset[str]:
    """The tenant permissions `actor` acts with: every one for the system (CLI, jobs, seeding);
    for a person, what the door put on the Actor, and none when it put nothing (fail closed)."""
    if actor.type == "system":
        return frozenset(TENANT_PERMISSIONS)
    return frozenset(actor.permissions or ()) & frozenset(TENANT_PERMISSIONS)


def _listed(permissions) -> str:
    return ", ".join(sorted(str(p) for p in permissions))


def is_actor(actor: Actor, user_id: int) -> bool:
    """Whether `actor` is the tenant user `user_id` (acting on their own account)."""
    return actor.type == "user" and actor.id == str(user_id)


def user_change_refusal(
    session: Session, user_id: int, *, actor: Actor, doing: str = "change"
) -> str | None:
    """Why `actor` may not change user `user_id` (who holds a permission the actor lacks), or
    None. Your own account is always yours to change (within the other rules)."""
    if is_actor(actor, user_id):
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


def ensure_grantable(session: Session, role_keys, *, actor: Actor, field: str = "roles") -> None:
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


# ---- roles and who holds them --------------------------------------------------------------

ROLE_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")


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
        ensure_admin_remains(session, removing_role=role.key, new_permissions=new["permissions"])
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
    ensure_admin_remains(session, removing_role=role.key, new_permissions=[])
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


# ---- the last administrator ---------------------------------------------------------------


def admin_role_keys(session: Session, *, override: dict[str, list[str]] | None = None) -> set[str]:
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


def is_active_admin(session: Session, user: User) -> bool:
    """Whether `user` is active and holds a role that confers user management."""
    return user.status == UserStatus.ACTIVE and bool(
        set(user_role_keys(session, user.id)) & admin_role_keys(session)
    )


def has_other_admins(session: Session, user_id: int) -> bool:
    return bool(_active_admin_ids(session, admin_role_keys(session)) - {user_id})


def ensure_admin_remains(
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
    before = _active_admin_ids(session, admin_role_keys(session))
    if not before:
        return  # no admin to protect (e.g. a tenant created without one)
    override = {removing_role: new_permissions or []} if removing_role else None
    after = _active_admin_ids(session, admin_role_keys(session, override=override))
    if removing_role and removing_role == BuiltinRole.TENANT_ADMIN:
        after = set()
    after.discard(losing_user)
    if not after:
        raise AccountError(
            "This would leave the organisation without an administrator. "
            "Make someone else a tenant admin first."
        )


# ---- a user's roles -----------------------------------------------------------------------


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
    ensure_grantable(session, set(wanted) - set(before), actor=actor)
    admin_keys = admin_role_keys(session)
    if set(before) & admin_keys and not set(wanted) & admin_keys:
        ensure_admin_remains(session, losing_user=user.id)
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
