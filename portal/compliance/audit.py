"""The audit trail: one service that every state change calls, and its verifier.

Invariants:
- Append-only. The database refuses UPDATE, DELETE and TRUNCATE on audit tables (trigger), and
  tenant roles hold only INSERT and SELECT on theirs.
- Hash-chained per trail (the platform's, and each tenant's). Entry N stores the hash of entry
  N-1 and its own hash over the canonical JSON of its hashed fields; `seq` is gapless. Appends
  to one trail are serialised by a transaction-scoped advisory lock, so the chain has no forks.
- Personal data stays outside the hashed fields (actor_label, client_addr, personal), so erasing
  it later leaves the chain verifiable. Subjects are referenced by id.
- `record` flushes but never commits: the entry lands in the caller's transaction, together
  with the change it describes, or not at all. The one exception is a refusal recorded with
  `keep=True` (a failed sign-in): the request that refuses rolls back, and the entry is then
  appended again in a transaction of its own (portal.db `write_kept`), chained afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.compliance.models import PlatformAuditEntry, TenantAuditEntry
from portal.db import PLATFORM_SCHEMA, advisory_key, keep_on_rollback

GENESIS_HASH = "0" * 64


class AuditAction(StrEnum):
    """Every action the trail knows, named source:subject:action."""

    TENANT_CREATE = "tenancy:tenant:create"
    TENANT_UPDATE = "tenancy:tenant:update"
    TENANT_SUSPEND = "tenancy:tenant:suspend"
    TENANT_RESUME = "tenancy:tenant:resume"
    TENANT_DELETE = "tenancy:tenant:delete"
    TENANT_RESTORE = "tenancy:tenant:restore"
    TENANT_PURGE = "tenancy:tenant:purge"
    TENANT_MIGRATE = "tenancy:schema:migrate"
    DOMAIN_ADD = "tenancy:domain:add"
    DOMAIN_REMOVE = "tenancy:domain:remove"
    STAFF_CREATE = "console:staff:create"
    STAFF_UPDATE = "console:staff:update"
    STAFF_DEACTIVATE = "console:staff:deactivate"
    STAFF_REACTIVATE = "console:staff:reactivate"
    STAFF_SIGN_IN = "console:staff:sign_in"
    STAFF_SIGN_IN_FAILED = "console:staff:sign_in_failed"
    STAFF_SIGN_OUT = "console:staff:sign_out"
    AUDIT_EXPORT = "compliance:audit:export"
    JOB_RETRY = "ops:job:retry"
    STAFF_TENANTS_ASSIGN = "console:staff:assign_tenants"
    STAFF_TENANT_ACCESS = "console:tenant:access"
    STAFF_PASSWORD_CHANGE = "console:staff:password_change"
    STAFF_SESSION_REVOKE = "console:staff:session_revoke"
    STAFF_MFA_ENROL = "console:staff:mfa_enrol"
    STAFF_MFA_DISABLE = "console:staff:mfa_disable"
    STAFF_MFA_RESET = "console:staff:mfa_reset"
    STAFF_MFA_FAILED = "console:staff:mfa_failed"
    STAFF_MFA_BACKUP_CODES = "console:staff:mfa_backup_codes"
    STAFF_MFA_BACKUP_CODE_USED = "console:staff:mfa_backup_code_used"
    MAIL_RETRY = "ops:outbox:retry"
    USER_CREATE = "accounts:user:create"
    USER_INVITE = "accounts:user:invite"
    USER_REGISTER = "accounts:user:register"
    USER_ACTIVATE = "accounts:user:activate"
    USER_UPDATE = "accounts:user:update"
    USER_SUSPEND = "accounts:user:suspend"
    USER_REACTIVATE = "accounts:user:reactivate"
    USER_DELETE = "accounts:user:delete"
    USER_RESTORE = "accounts:user:restore"
    USER_REGISTRATION_EXPIRE = "accounts:user:registration_expire"
    USER_ROLES_CHANGE = "accounts:user:roles"
    ROLE_CREATE = "accounts:role:create"
    ROLE_UPDATE = "accounts:role:update"
    ROLE_DELETE = "accounts:role:delete"
    SECURITY_SETTINGS_UPDATE = "auth:settings:update"
    USER_SIGN_IN = "auth:user:sign_in"
    USER_SIGN_IN_FAILED = "auth:user:sign_in_failed"
    USER_SIGN_IN_LOCKED = "auth:user:sign_in_locked"
    USER_SIGN_OUT = "auth:user:sign_out"
    USER_NEW_DEVICE = "auth:device:new"
    SESSION_REVOKE = "auth:session:revoke"
    PASSWORD_CHANGE = "auth:password:change"
    PASSWORD_RESET_REQUEST = "auth:password:reset_request"
    PASSWORD_RESET = "auth:password:reset"
    MFA_ENROL = "auth:mfa:enrol"
    MFA_DISABLE = "auth:mfa:disable"
    MFA_RESET = "auth:mfa:reset"
    MFA_FAILED = "auth:mfa:failed"
    MFA_BACKUP_CODES = "auth:mfa:backup_codes"
    MFA_BACKUP_CODE_USED = "auth:mfa:backup_code_used"
    CONSENT_PURPOSE_CREATE = "compliance:consent_purpose:create"
    CONSENT_PURPOSE_UPDATE = "compliance:consent_purpose:update"
    CONSENT_PURPOSE_ARCHIVE = "compliance:consent_purpose:archive"
    CONSENT_GRANT = "compliance:consent:grant"
    CONSENT_WITHDRAW = "compliance:consent:withdraw"
    CONSENT_IMPORT = "compliance:consent:import"


@dataclass(frozen=True)
class Actor:
    """Who did it, from where. `label` and `client_addr` are personal data, kept unhashed."""

    type: str  # staff | user | system
    id: str | None = None
    label: str | None = None
    client_addr: str | None = None
    request_id: str | None = None
    # The tenant permissions a person acted with (a tenant user's roles, a staff visit's role),
    # set by the door; services never let them grant or act beyond these (A10). Not recorded.
    # A system actor (CLI, jobs) holds every permission; a person without them holds none.
    permissions: frozenset[str] | None = None

    @classmethod
    def system(cls, label: str = "system", request_id: str | None = None) -> Actor:
        return cls(type="system", id=None, label=label, request_id=request_id)


def _trail(session: Session) -> tuple[type[PlatformAuditEntry] | type[TenantAuditEntry], str]:
    schema = session.info.get("tenant_schema")
    if schema:
        return TenantAuditEntry, schema
    return PlatformAuditEntry, PLATFORM_SCHEMA


def _plain_json(value: Any) -> Any:
    """Round-trip through JSON so what we hash is exactly what jsonb gives back."""
    return json.loads(json.dumps(value or {}, default=str))


def hashed_fields(entry: PlatformAuditEntry | TenantAuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "occurred_at": entry.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "request_id": entry.request_id,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
    }


def entry_hash(entry: PlatformAuditEntry | TenantAuditEntry) -> str:
    canonical = json.dumps(
        hashed_fields(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    session: Session,
    action: AuditAction,
    *,
    actor: Actor,
    target: tuple[str, object] | None = None,
    detail: dict[str, Any] | None = None,
    personal: dict[str, Any] | None = None,
    keep: bool = False,
) -> PlatformAuditEntry | TenantAuditEntry:
    """Append an entry to the session's trail (tenant scope → tenant trail, else platform).

    `keep`: the entry records a refusal, and stays in the trail even if the caller's
    transaction rolls back (appended again after the rollback, with its seq and prev_hash
    taken anew, so the chain holds)."""
    model, schema = _trail(session)
    session.execute(select(func.pg_advisory_xact_lock(advisory_key(f"audit:{schema}"))))
    last = session.execute(
        select(model.seq, model.hash).order_by(model.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
    entry = model(
        seq=seq,
        occurred_at=datetime.now(UTC),
        actor_type=actor.type,
        actor_id=None if actor.id is None else str(actor.id),
        action=str(action),
        target_type=target[0] if target else None,
        target_id=str(target[1]) if target else None,
        request_id=actor.request_id,
        detail=_plain_json(detail),
        prev_hash=prev_hash,
        actor_label=actor.label,
        client_addr=actor.client_addr,
        personal=_plain_json(personal) if personal else None,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.flush()
    if keep:
        keep_on_rollback(
            session,
            lambda again: record(
                again, action, actor=actor, target=target, detail=detail, personal=personal
            ),
        )
    return entry


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    broken_id: int | None = None
    broken_seq: int | None = None
    reason: str | None = None

    def message(self, trail: str) -> str:
        if self.ok:
            return f"ok: {self.count} entries"
        return (
            f"broken: {trail} entry id {self.broken_id} (seq {self.broken_seq}): {self.reason}; "
            f"{self.count} entries verified before it"
        )


def verify_chain(session: Session) -> VerifyResult:
    """Walk the session's trail in chain order and report the first entry that does not fit."""
    model, _ = _trail(session)
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    rows = session.execute(
        select(model).order_by(model.seq).execution_options(yield_per=1000)
    ).scalars()
    for entry in rows:
        reason = None
        if entry.seq != expected_seq:
            reason = f"expected seq {expected_seq}, found {entry.seq} (entry missing or moved)"
        elif entry.prev_hash != prev_hash:
            reason = "prev_hash does not match the previous entry's hash"
        elif entry_hash(entry) != entry.hash:
            reason = "content does not match its hash (entry altered)"
        if reason:
            return VerifyResult(False, count, entry.id, entry.seq, reason)
        count += 1
        expected_seq += 1
        prev_hash = entry.hash
    return VerifyResult(True, count)


def append_only_ddl(schema: str, table: str = "audit_entries") -> list[str]:
    """DDL that makes `<schema>.<table>` (the audit trail, consent records) refuse UPDATE,
    DELETE and TRUNCATE by trigger, whoever asks, and revokes them from the tenant's role."""
    noun = table.replace("_", " ")
    return [
        f"""CREATE FUNCTION "{schema}".{table}_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{noun} are append-only'
                    USING ERRCODE = 'insufficient_privilege', DETAIL = TG_OP || ' refused';
            END $$""",
        f"""CREATE TRIGGER {table}_append_only
            BEFORE UPDATE OR DELETE ON "{schema}".{table}
            FOR EACH ROW EXECUTE FUNCTION "{schema}".{table}_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate
            BEFORE TRUNCATE ON "{schema}".{table}
            FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".{table}_append_only()""",
        f'REVOKE UPDATE, DELETE, TRUNCATE ON "{schema}".{table} FROM "{schema}"',
    ]
