"""TOTP and backup codes for every kind of account that has them: tenant users and MSP staff.

An account (the "holder") carries three columns: `mfa_secret`, the TOTP secret sealed with
portal.crypto (pending until `mfa_enabled_at` is set), `mfa_enabled_at`, and `mfa_last_step`,
the last time step accepted: a code is accepted once, and no older code after it. Its backup
codes are rows of a table of their own (an owner column, `code_hash`, `used_at`), stored as
keyed hashes (portal/auth/mfa.py `backup_code_hash`) and each used once.

The second sign-in step is one function for both, `check`: it locks the holder's row
(SELECT … FOR UPDATE), so two concurrent uses of one code cannot both pass, counts refusals in
the sign-in throttle and records them, and the use of a backup code, with the audit actions of
the holder's kind (`SecondStep`). Enrolment and the other changes leave the audit entries to
the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from portal import crypto
from portal.auth import mfa
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor, AuditAction, record

TOTP_PURPOSE = "totp"


def begin_enrolment(holder) -> str:
    """A new pending TOTP secret, kept sealed on the holder until confirmed with a code."""
    secret = mfa.new_secret()
    set_secret(holder, secret)
    return secret


def set_secret(holder, secret: str) -> None:
    """Store `secret` (sealed) as the holder's pending secret; no step has been used yet."""
    holder.mfa_secret = crypto.seal(secret, purpose=TOTP_PURPOSE)
    holder.mfa_last_step = None


def secret_of(holder) -> str | None:
    """The holder's TOTP secret in clear, or None (none stored, or it does not open)."""
    if not holder.mfa_secret:
        return None
    try:
        return crypto.unseal(holder.mfa_secret, purpose=TOTP_PURPOSE)
    except crypto.SealError:
        return None


def pending_secret(holder) -> str | None:
    """The secret of an enrolment begun but not yet confirmed."""
    return None if holder.mfa_enabled_at is not None else secret_of(holder)


def accept_totp(holder, code: str, *, now: float | None = None) -> int | None:
    """The accepted time step (now recorded on the holder), or None; a step is accepted once."""
    secret = secret_of(holder)
    if secret is None:
        return None
    step = mfa.verify_totp(secret, code or "", last_step=holder.mfa_last_step, now=now)
    if step is not None:
        holder.mfa_last_step = step
    return step


def enable(holder) -> None:
    holder.mfa_enabled_at = datetime.now(UTC)


@dataclass(frozen=True)
class BackupCodes:
    """The backup codes of one kind of account: `model` rows owned through column `owner`."""

    model: type
    owner: str

    def _owned(self, owner_id: int):
        return getattr(self.model, self.owner) == owner_id

    def replace(self, session: Session, owner_id: int) -> list[str]:
        """A new set of 10 codes, to show once; the old set stops working."""
        self.delete_all(session, owner_id)
        codes = mfa.generate_backup_codes()
        session.add_all(
            self.model(**{self.owner: owner_id}, code_hash=mfa.backup_code_hash(code))
            for code in codes
        )
        session.flush()
        return codes

    def use(self, session: Session, owner_id: int, code: str) -> bool:
        """Mark `code` used if it is one of the owner's unused codes."""
        row = session.scalars(
            select(self.model)
            .where(
                self._owned(owner_id),
                self.model.code_hash == mfa.backup_code_hash(code),
                self.model.used_at.is_(None),
            )
            .with_for_update()
        ).first()
        if row is None:
            return False
        row.used_at = datetime.now(UTC)
        session.flush()
        return True

    def left(self, session: Session, owner_id: int) -> int:
        return session.scalar(
            select(func.count())
            .select_from(self.model)
            .where(self._owned(owner_id), self.model.used_at.is_(None))
        )

    def delete_all(self, session: Session, owner_id: int) -> None:
        session.execute(delete(self.model).where(self._owned(owner_id)))


def match(session: Session, holder, codes: BackupCodes, code: str) -> str | None:
    """ "totp" or "backup_code" when `code` is a valid second factor of the enrolled holder
    (a backup code is then used up), else None."""
    if holder.mfa_enabled_at is None or not holder.mfa_secret:
        return None
    if mfa.looks_like_backup_code(code):
        return "backup_code" if codes.use(session, holder.id, code) else None
    return "totp" if accept_totp(holder, code) is not None else None


@dataclass(frozen=True)
class SecondStep:
    """One kind of account's second sign-in step: its backup codes, who may pass it, and the
    audit actions it records (targets of type `target`)."""

    codes: BackupCodes
    target: str
    may_sign_in: Callable[[Any], bool]
    failed: AuditAction
    throttled: AuditAction
    backup_code_used: AuditAction


def check(
    session: Session,
    holder,
    code: str,
    step: SecondStep,
    *,
    actor: Actor,
    throttle: SignInThrottle | None,
) -> str | None:
    """The second sign-in step: "totp" or "backup_code" when `code` is right, else None.

    Under the holder's row lock. A throttled attempt is refused without looking at the code; a
    refusal is recorded and counted in the throttle; only a pass clears the failure count. A
    used backup code is recorded with how many are left, the holder as its actor.
    """
    session.refresh(holder, with_for_update=True)
    waiting = throttle.wait_seconds(holder.email, actor.client_addr) if throttle else 0
    method = None
    if not waiting and step.may_sign_in(holder):
        method = match(session, holder, step.codes, (code or "")[:64])
    if method is None:
        if throttle and not waiting:
            throttle.failed(holder.email, actor.client_addr)
        record(
            session,
            step.throttled if waiting else step.failed,
            actor=actor,
            target=(step.target, holder.id),
            detail={"reason": "throttled" if waiting else "bad_code", "step": "mfa"},
            keep=True,
        )
        return None
    if method == "backup_code":
        record(
            session,
            step.backup_code_used,
            actor=replace(actor, type=step.target, id=str(holder.id), label=holder.email),
            target=(step.target, holder.id),
            detail={"left": step.codes.left(session, holder.id)},
        )
    if throttle:
        throttle.succeeded(holder.email)
    return method


def clear(session: Session, holder, codes: BackupCodes) -> None:
    """Remove the holder's MFA entirely: secret, last step and backup codes."""
    holder.mfa_secret = None
    holder.mfa_enabled_at = None
    holder.mfa_last_step = None
    codes.delete_all(session, holder.id)
    session.flush()
