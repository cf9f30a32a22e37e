"""Staff second sign-in step (portal/staff/mfa.py over portal/auth/second_factor.check), run as
the console runs it: the audit entries it writes and the members it refuses."""

from __future__ import annotations

from sqlalchemy import select

from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.staff.mfa import (
    check_staff_second_factor,
    regenerate_staff_backup_codes,
    staff_backup_codes_left,
)
from portal.staff.models import StaffUser

ADDR = "203.0.113.60"
ANONYMOUS = Actor("anonymous", None, None, ADDR)


def backup_codes(member) -> list[str]:
    with db.platform_scope() as session:
        return regenerate_staff_backup_codes(
            session, session.get(StaffUser, member.id), actor=Actor.system("test")
        )


def last_entry(member, action: str) -> PlatformAuditEntry:
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry)
            .where(
                PlatformAuditEntry.action == action,
                PlatformAuditEntry.target_id == str(member.id),
            )
            .order_by(PlatformAuditEntry.seq.desc())
        ).first()


def test_a_used_backup_code_is_recorded_with_the_member_as_actor(make_staff):
    member = make_staff()
    codes = backup_codes(member)
    with db.platform_scope() as session:
        method = check_staff_second_factor(
            session, session.get(StaffUser, member.id), codes[0], actor=ANONYMOUS, throttle=None
        )
    assert method == "backup_code"
    entry = last_entry(member, AuditAction.STAFF_MFA_BACKUP_CODE_USED)
    assert entry.detail == {"left": 9} and entry.target_type == "staff"
    assert (entry.actor_type, entry.actor_id) == ("staff", str(member.id))
    assert (entry.actor_label, entry.client_addr) == (member.email, ADDR)


def test_a_deactivated_member_is_refused_even_with_a_right_code(make_staff):
    member = make_staff()
    codes = backup_codes(member)
    with db.platform_scope() as session:
        session.get(StaffUser, member.id).active = False
    with db.platform_scope() as session:
        method = check_staff_second_factor(
            session, session.get(StaffUser, member.id), codes[0], actor=ANONYMOUS, throttle=None
        )
        assert method is None
        assert staff_backup_codes_left(session, member.id) == 10  # the code was not used up
    entry = last_entry(member, AuditAction.STAFF_MFA_FAILED)
    assert entry.detail == {"reason": "bad_code", "step": "mfa"}
    assert (entry.actor_type, entry.client_addr) == ("anonymous", ADDR)
