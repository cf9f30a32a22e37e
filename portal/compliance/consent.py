"""The consent ledger (G1): purposes a tenant defines, and its users' grants and withdrawals.

Invariants:
- Records are append-only (database trigger, no UPDATE/DELETE grant): a user's answer for a
  purpose is their latest record; nothing is ever overwritten, so the full history stays.
- A record names the purpose version whose words the user was shown. Changing a purpose's
  title, description or lawful basis makes a new version (its text kept in
  consent_purpose_versions); users are asked again at their next sign-in (`pending_for`), and
  until they answer, a consent given to the old words does not count (`has_consent`).
- Purposes are archived, never deleted: records keep pointing at them.
- A person records consent only for themselves; recording it for someone else (the CLI, an
  import) takes CONSENT_MANAGE, which the system actor holds. Defining, rewording and archiving
  purposes take CONSENT_MANAGE too.
- Every change writes its audit entry in the caller's transaction; nothing here commits. A
  change that changes nothing returns False and records nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Integer, MetaData, String, Table, and_, func, insert, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from portal.compliance.audit import Actor, AuditAction, record
from portal.compliance.consent_models import (
    ConsentAction,
    ConsentPurpose,
    ConsentPurposeVersion,
    ConsentRecord,
    ConsentSource,
    LawfulBasis,
)
from portal.db import TENANT_PLACEHOLDER, advisory_key
from portal.permissions import Permission
from portal.validation import InputError

PURPOSE_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
MAX_DESCRIPTION = 5_000
LAWFUL_BASIS_LABELS = {
    LawfulBasis.CONSENT: "Consent",
    LawfulBasis.CONTRACT: "Contract",
    LawfulBasis.LEGAL_OBLIGATION: "Legal obligation",
    LawfulBasis.VITAL_INTERESTS: "Vital interests",
    LawfulBasis.PUBLIC_TASK: "Public task",
    LawfulBasis.LEGITIMATE_INTERESTS: "Legitimate interests",
}
# Users whose answers count: people with an account they can use (or could again). Invited
# people have not joined; deleted ones are gone. The accounts area owns `users`; this area
# reads two of its columns without importing it (accounts imports compliance, not back).
COUNTED_STATUSES = ("active", "suspended")
_users = Table(
    "users",
    MetaData(schema=TENANT_PLACEHOLDER),
    Column("id", Integer, primary_key=True),
    Column("status", String(16)),
)


class ConsentError(InputError):
    """A consent change a person can correct."""


def _holds(actor: Actor, permission: Permission) -> bool:
    """The system (CLI, jobs, seeding) holds every permission; a person what the door put on
    their Actor, and none when it put nothing."""
    return actor.type == "system" or permission in (actor.permissions or ())


def _ensure_may_manage(actor: Actor) -> None:
    if not _holds(actor, Permission.CONSENT_MANAGE):
        raise ConsentError(
            f"You cannot change consent purposes: that takes {Permission.CONSENT_MANAGE}."
        )


# ---- purposes -----------------------------------------------------------------------------


def purposes(session: Session, *, include_archived: bool = True) -> list[ConsentPurpose]:
    """Purposes in use first (required ones first), then archived ones; by title."""
    query = select(ConsentPurpose).order_by(
        ConsentPurpose.archived_at.is_not(None),
        ConsentPurpose.required.desc(),
        func.lower(ConsentPurpose.title),
    )
    if not include_archived:
        query = query.where(ConsentPurpose.archived_at.is_(None))
    return list(session.scalars(query))


def get_purpose(session: Session, key: str, *, lock: bool = False) -> ConsentPurpose | None:
    query = select(ConsentPurpose).where(ConsentPurpose.key == key)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def purpose_versions(session: Session, key: str) -> list[ConsentPurposeVersion]:
    """Every version of a purpose's text, newest first."""
    return list(
        session.scalars(
            select(ConsentPurposeVersion)
            .where(ConsentPurposeVersion.purpose_key == key)
            .order_by(ConsentPurposeVersion.version.desc())
        )
    )


def _clean_text(title: str | None, description: str | None) -> tuple[str, str]:
    title = " ".join((title or "").split())
    if not 2 <= len(title) <= 200:
        raise ConsentError("Give the purpose a title of 2 to 200 characters.", "title")
    description = (description or "").strip()
    if not description:
        raise ConsentError(
            "Describe what the purpose covers: users read this before they agree.", "description"
        )
    if len(description) > MAX_DESCRIPTION:
        raise ConsentError(
            f"Keep the description under {MAX_DESCRIPTION:,} characters.", "description"
        )
    return title, description


def _lawful_basis(value: str | None) -> str:
    if value not in set(LawfulBasis):
        raise ConsentError("Choose the lawful basis for this processing.", "lawful_basis")
    return str(value)


def define_purpose(
    session: Session,
    *,
    key: str,
    title: str,
    description: str,
    required: bool = False,
    lawful_basis: str = LawfulBasis.CONSENT,
    actor: Actor,
) -> ConsentPurpose:
    """A new purpose at version 1."""
    _ensure_may_manage(actor)
    key = (key or "").strip()
    if not PURPOSE_KEY_RE.match(key):
        raise ConsentError(
            "Use 2 to 63 lower-case letters, digits and underscores, starting with a letter.",
            "key",
        )
    title, description = _clean_text(title, description)
    basis = _lawful_basis(lawful_basis)
    if session.scalar(select(ConsentPurpose.id).where(ConsentPurpose.key == key)) is not None:
        raise ConsentError(f"A purpose with the key “{key}” already exists.", "key")
    purpose = ConsentPurpose(
        key=key,
        title=title,
        description=description,
        version=1,
        required=bool(required),
        lawful_basis=basis,
    )
    session.add(purpose)
    session.flush()
    session.add(
        ConsentPurposeVersion(
            purpose_key=key, version=1, title=title, description=description, lawful_basis=basis
        )
    )
    session.flush()
    record(
        session,
        AuditAction.CONSENT_PURPOSE_CREATE,
        actor=actor,
        target=("consent_purpose", key),
        detail={"title": title, "version": 1, "required": purpose.required, "lawful_basis": basis},
    )
    return purpose


def update_purpose(
    session: Session,
    purpose: ConsentPurpose,
    *,
    title: str,
    description: str,
    required: bool,
    lawful_basis: str,
    actor: Actor,
) -> bool:
    """Change a purpose; new words (title, description, lawful basis) make a new version, which
    users are asked about again. Returns False when nothing changed. `purpose` is locked."""
    _ensure_may_manage(actor)
    if purpose.archived_at is not None:
        raise ConsentError("This purpose is archived: define a new one instead.")
    title, description = _clean_text(title, description)
    new = {
        "title": title,
        "description": description,
        "lawful_basis": _lawful_basis(lawful_basis),
        "required": bool(required),
    }
    before = {k: getattr(purpose, k) for k in new}
    if before == new:
        return False
    reworded = any(before[k] != new[k] for k in ("title", "description", "lawful_basis"))
    for k, v in new.items():
        setattr(purpose, k, v)
    purpose.updated_at = datetime.now(UTC)
    if reworded:
        purpose.version += 1
        session.add(
            ConsentPurposeVersion(
                purpose_key=purpose.key,
                version=purpose.version,
                title=title,
                description=description,
                lawful_basis=new["lawful_basis"],
            )
        )
    session.flush()
    record(
        session,
        AuditAction.CONSENT_PURPOSE_UPDATE,
        actor=actor,
        target=("consent_purpose", purpose.key),
        detail={
            "before": {k: before[k] for k in new if before[k] != new[k]},
            "after": {k: new[k] for k in new if before[k] != new[k]},
            "version": purpose.version,
        },
    )
    return True


def archive_purpose(session: Session, purpose: ConsentPurpose, *, actor: Actor) -> bool:
    """Stop asking for a purpose; its records stay. Returns False when already archived."""
    _ensure_may_manage(actor)
    if purpose.archived_at is not None:
        return False
    purpose.archived_at = datetime.now(UTC)
    session.flush()
    record(
        session,
        AuditAction.CONSENT_PURPOSE_ARCHIVE,
        actor=actor,
        target=("consent_purpose", purpose.key),
        detail={"title": purpose.title, "version": purpose.version},
    )
    return True


# ---- a user's answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentState:
    """A purpose and the user's latest record for it (None: never answered)."""

    purpose: ConsentPurpose
    latest: ConsentRecord | None

    @property
    def granted(self) -> bool:
        return self.latest is not None and self.latest.action == ConsentAction.GRANTED

    @property
    def current(self) -> bool:
        """Whether the latest answer is to the purpose's current words."""
        return self.latest is not None and self.latest.version == self.purpose.version

    @property
    def pending(self) -> bool:
        """A required purpose not granted in its current words, or an optional one whose
        current words the user has not answered (never, or only an older version)."""
        if self.purpose.archived_at is not None:
            return False
        if self.purpose.required:
            return not (self.granted and self.current)
        return not self.current


def _latest_records(session: Session, user_id: int) -> dict[str, ConsentRecord]:
    rows = session.scalars(
        select(ConsentRecord)
        .where(ConsentRecord.user_id == user_id)
        .ext(distinct_on(ConsentRecord.purpose_key))
        .order_by(ConsentRecord.purpose_key, ConsentRecord.id.desc())
    )
    return {row.purpose_key: row for row in rows}


def states_for(session: Session, user_id: int) -> list[ConsentState]:
    """The user's answer for every purpose in use."""
    in_use = purposes(session, include_archived=False)
    if not in_use:
        return []
    latest = _latest_records(session, user_id)
    return [ConsentState(p, latest.get(p.key)) for p in in_use]


def pending_for(session: Session, user_id: int) -> list[ConsentState]:
    """What the user must answer before going on (see ConsentState.pending)."""
    return [state for state in states_for(session, user_id) if state.pending]


def has_consent(session: Session, user_id: int, purpose_key: str) -> bool:
    """Whether processing for `purpose_key` may use this user's data: the purpose is in use and
    the user's latest answer grants its current words. The one question processing asks."""
    latest = (
        select(ConsentRecord.action, ConsentRecord.version)
        .where(ConsentRecord.user_id == user_id, ConsentRecord.purpose_key == purpose_key)
        .order_by(ConsentRecord.id.desc())
        .limit(1)
        .subquery()
    )
    return bool(
        session.scalar(
            select(func.count())
            .select_from(latest)
            .join(
                ConsentPurpose,
                and_(
                    ConsentPurpose.key == purpose_key,
                    ConsentPurpose.version == latest.c.version,
                    ConsentPurpose.archived_at.is_(None),
                ),
            )
            .where(latest.c.action == ConsentAction.GRANTED)
        )
    )


def _answer(
    session: Session,
    user,
    purpose_key: str,
    action: ConsentAction,
    *,
    actor: Actor,
    source: str,
    version: int | None,
) -> bool:
    if str(source) not in set(ConsentSource):
        raise ConsentError(f"Unknown source {source!r}.", "source")
    if not (actor.type == "user" and actor.id == str(user.id)):
        if not _holds(actor, Permission.CONSENT_MANAGE):
            raise ConsentError("You can only give or withdraw your own consent.")
    if user.status not in COUNTED_STATUSES:
        raise ConsentError(f"This user is {user.status}: their consent cannot be recorded.")
    # FOR SHARE: a rewording of the purpose waits, so the version answered is the one shown.
    purpose = session.scalars(
        select(ConsentPurpose).where(ConsentPurpose.key == purpose_key).with_for_update(read=True)
    ).first()
    if purpose is None or purpose.archived_at is not None:
        raise ConsentError(f"No consent purpose “{purpose_key}” is in use.", "purpose")
    if version is not None and version != purpose.version:
        raise ConsentError(
            f"“{purpose.title}” has changed since you read it. Read the new text and answer again.",
            "version",
        )
    # One answer at a time per user: a double click records once.
    schema = session.info["tenant_schema"]
    session.execute(select(func.pg_advisory_xact_lock(advisory_key(f"consent:{schema}:{user.id}"))))
    latest = session.scalars(
        select(ConsentRecord)
        .where(ConsentRecord.user_id == user.id, ConsentRecord.purpose_key == purpose_key)
        .order_by(ConsentRecord.id.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.action == action and latest.version == purpose.version:
        return False
    session.add(
        ConsentRecord(
            user_id=user.id,
            purpose_key=purpose_key,
            version=purpose.version,
            action=str(action),
            occurred_at=datetime.now(UTC),
            source=str(source),
            client_addr=actor.client_addr,
        )
    )
    session.flush()
    record(
        session,
        AuditAction.CONSENT_GRANT
        if action == ConsentAction.GRANTED
        else AuditAction.CONSENT_WITHDRAW,
        actor=actor,
        target=("user", user.id),
        detail={"purpose": purpose_key, "version": purpose.version, "source": str(source)},
    )
    return True


def grant_consent(
    session: Session,
    user,
    purpose_key: str,
    *,
    actor: Actor,
    source: str = ConsentSource.WEB,
    version: int | None = None,
) -> bool:
    """Record that `user` (an accounts User) agrees to the purpose's current words; `version`,
    when given, is the one they were shown (refused if it changed since). False if the latest
    record already says so."""
    return _answer(
        session,
        user,
        purpose_key,
        ConsentAction.GRANTED,
        actor=actor,
        source=source,
        version=version,
    )


def withdraw_consent(
    session: Session,
    user,
    purpose_key: str,
    *,
    actor: Actor,
    source: str = ConsentSource.WEB,
    version: int | None = None,
) -> bool:
    """Record that `user` withdraws (or, never having agreed, declines) the purpose. False if
    the latest record already says so for its current words."""
    return _answer(
        session,
        user,
        purpose_key,
        ConsentAction.WITHDRAWN,
        actor=actor,
        source=source,
        version=version,
    )


def import_answers(
    session: Session,
    purpose_key: str,
    *,
    granted: list[int] = (),
    withdrawn: list[int] = (),
    actor: Actor,
) -> int:
    """Record many users' answers to the purpose's current words at once (source "import": a
    migration from another system, the demo), with one audit entry counting them. Users whose
    latest record already says the same, and users without a usable account, are skipped.
    Returns how many records were written."""
    if not _holds(actor, Permission.CONSENT_MANAGE):
        raise ConsentError(f"Importing consent answers takes {Permission.CONSENT_MANAGE}.")
    purpose = session.scalars(
        select(ConsentPurpose).where(ConsentPurpose.key == purpose_key).with_for_update(read=True)
    ).first()
    if purpose is None or purpose.archived_at is not None:
        raise ConsentError(f"No consent purpose “{purpose_key}” is in use.", "purpose")
    wanted = {user_id: ConsentAction.GRANTED for user_id in granted}
    wanted.update({user_id: ConsentAction.WITHDRAWN for user_id in withdrawn})
    if not wanted:
        return 0
    eligible = set(
        session.scalars(
            select(_users.c.id).where(
                _users.c.id.in_(list(wanted)), _users.c.status.in_(COUNTED_STATUSES)
            )
        )
    )
    latest = {
        row.user_id: (row.action, row.version)
        for row in session.execute(
            select(ConsentRecord.user_id, ConsentRecord.action, ConsentRecord.version)
            .where(ConsentRecord.purpose_key == purpose_key, ConsentRecord.user_id.in_(eligible))
            .ext(distinct_on(ConsentRecord.user_id))
            .order_by(ConsentRecord.user_id, ConsentRecord.id.desc())
        )
    }
    now = datetime.now(UTC)
    rows = [
        {
            "user_id": user_id,
            "purpose_key": purpose_key,
            "version": purpose.version,
            "action": str(action),
            "occurred_at": now,
            "source": str(ConsentSource.IMPORT),
            "client_addr": actor.client_addr,
        }
        for user_id, action in sorted(wanted.items())
        if user_id in eligible and latest.get(user_id) != (action, purpose.version)
    ]
    if not rows:
        return 0
    session.execute(insert(ConsentRecord), rows)
    record(
        session,
        AuditAction.CONSENT_IMPORT,
        actor=actor,
        target=("consent_purpose", purpose_key),
        detail={
            "version": purpose.version,
            "granted": sum(r["action"] == ConsentAction.GRANTED for r in rows),
            "withdrawn": sum(r["action"] == ConsentAction.WITHDRAWN for r in rows),
        },
    )
    return len(rows)


@dataclass(frozen=True)
class HistoryRow:
    record: ConsentRecord
    title: str  # the purpose's title in the version answered


def history(session: Session, user_id: int) -> list[HistoryRow]:
    """Every record of the user, newest first, with the title they were shown."""
    rows = session.execute(
        select(ConsentRecord, ConsentPurposeVersion.title)
        .join(
            ConsentPurposeVersion,
            and_(
                ConsentPurposeVersion.purpose_key == ConsentRecord.purpose_key,
                ConsentPurposeVersion.version == ConsentRecord.version,
            ),
        )
        .where(ConsentRecord.user_id == user_id)
        .order_by(ConsentRecord.id.desc())
    ).all()
    return [HistoryRow(row, title) for row, title in rows]


# ---- the compliance officer's view ---------------------------------------------------------


@dataclass(frozen=True)
class PurposeStats:
    """Latest answers of counted users (COUNTED_STATUSES) for one purpose."""

    people: int
    granted: int = 0  # to the current words
    granted_earlier: int = 0  # to an older version, not answered since
    withdrawn: int = 0

    @property
    def unanswered(self) -> int:
        return self.people - self.granted - self.granted_earlier - self.withdrawn

    @property
    def rate(self) -> float | None:
        """Share of counted users who grant the current words."""
        return self.granted / self.people if self.people else None


def purpose_stats(session: Session) -> dict[str, PurposeStats]:
    """Counts per purpose key, in two queries whatever the number of purposes."""
    people = session.scalar(
        select(func.count()).select_from(_users).where(_users.c.status.in_(COUNTED_STATUSES))
    )
    latest = (
        select(ConsentRecord.purpose_key, ConsentRecord.action, ConsentRecord.version)
        .join(_users, _users.c.id == ConsentRecord.user_id)
        .where(_users.c.status.in_(COUNTED_STATUSES))
        .ext(distinct_on(ConsentRecord.user_id, ConsentRecord.purpose_key))
        .order_by(ConsentRecord.user_id, ConsentRecord.purpose_key, ConsentRecord.id.desc())
        .subquery()
    )
    granted = latest.c.action == ConsentAction.GRANTED
    rows = session.execute(
        select(
            ConsentPurpose.key,
            func.count().filter(granted, latest.c.version == ConsentPurpose.version),
            func.count().filter(granted, latest.c.version != ConsentPurpose.version),
            func.count().filter(latest.c.action == ConsentAction.WITHDRAWN),
        )
        .join(latest, latest.c.purpose_key == ConsentPurpose.key)
        .group_by(ConsentPurpose.key)
    ).all()
    stats = {p: PurposeStats(people) for p in session.scalars(select(ConsentPurpose.key))}
    for key, now, earlier, withdrawn in rows:
        stats[key] = PurposeStats(people, now, earlier, withdrawn)
    return stats
