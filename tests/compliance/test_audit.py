"""The audit trail is append-only in the database and hash-chained; verify finds tampering (G6)."""

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from portal.compliance.audit import GENESIS_HASH, Actor, AuditAction, record, verify_chain
from portal.compliance.models import TenantAuditEntry
from portal.db import db

ACTOR = Actor(
    type="staff",
    id="7",
    label="ops@msp.example",
    client_addr="192.0.2.10",
    request_id="req-12345678",
)


def write_entries(tenant, n=5):
    with db.tenant_scope(tenant) as session:
        for i in range(n):
            record(
                session,
                AuditAction.USER_CREATE,
                actor=ACTOR,
                target=("user", i),
                detail={"n": i, "note": "é ünicode", "ratio": 0.1},
                personal={"email": f"u{i}@x.example"},
            )


def verify(tenant):
    with db.tenant_scope(tenant) as session:
        return verify_chain(session)


def tamper(sql):
    """Change the trail as the database superuser, with the append-only trigger bypassed."""
    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(sql)


def test_entries_are_chained_in_order_and_verify(tenant):
    write_entries(tenant, 3)
    with db.tenant_scope(tenant) as session:
        rows = session.scalars(select(TenantAuditEntry).order_by(TenantAuditEntry.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS_HASH
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash
    assert rows[0].actor_label == "ops@msp.example" and rows[0].client_addr == "192.0.2.10"
    result = verify(tenant)
    assert result.ok and result.count == 3
    assert result.message("x") == "ok: 3 entries"


def test_updating_an_entry_is_found(tenant):
    write_entries(tenant)
    tamper(f"""UPDATE "{tenant.schema}".audit_entries SET detail = '{{"n": 99}}' WHERE seq = 3""")
    result = verify(tenant)
    assert not result.ok and result.broken_seq == 3 and result.count == 2
    assert "altered" in result.reason


def test_deleting_an_entry_is_found_at_the_next_one(tenant):
    write_entries(tenant)
    tamper(f'DELETE FROM "{tenant.schema}".audit_entries WHERE seq = 2')
    result = verify(tenant)
    assert not result.ok and result.broken_seq == 3
    assert "missing" in result.reason


def test_reordering_entries_is_found(tenant):
    write_entries(tenant)
    schema = tenant.schema
    tamper(f"""UPDATE "{schema}".audit_entries SET seq = -seq WHERE seq IN (2, 4);
               UPDATE "{schema}".audit_entries SET seq = 4 WHERE seq = -2;
               UPDATE "{schema}".audit_entries SET seq = 2 WHERE seq = -4""")
    result = verify(tenant)
    assert not result.ok and result.broken_seq == 2


def test_erasing_personal_data_keeps_the_chain_verifiable(tenant):
    write_entries(tenant)
    tamper(
        f'UPDATE "{tenant.schema}".audit_entries SET actor_label = NULL, client_addr = NULL, personal = NULL'
    )
    assert verify(tenant).ok


def test_tenant_role_cannot_update_or_delete_audit_rows(tenant):
    write_entries(tenant, 1)
    for statement in (
        "UPDATE audit_entries SET action = 'x'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
    ):
        with pytest.raises(ProgrammingError, match="permission denied"):
            with db.tenant_scope(tenant) as session:
                session.execute(
                    text(statement.replace("audit_entries", f'"{tenant.schema}".audit_entries'))
                )
    assert verify(tenant).count == 1


def test_even_the_owner_role_is_refused_by_the_trigger(tenant):
    write_entries(tenant, 1)
    for statement in ("UPDATE {t} SET action = 'x'", "DELETE FROM {t}", "TRUNCATE {t}"):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.owner_engine.begin() as conn:
                conn.exec_driver_sql(statement.format(t=f'"{tenant.schema}".audit_entries'))


def test_platform_trail_is_append_only_too(app):
    with pytest.raises(DBAPIError, match="append-only"):
        with db.owner_engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM platform.audit_entries WHERE seq = 1")


def test_platform_tampering_is_found_and_names_the_entry(app, tenant, run_cli):
    ok = run_cli("audit", "verify")
    assert ok.exit_code == 0 and ok.output.startswith("ok: ")
    with db.platform_scope() as session:
        entry_id, seq, action = session.execute(
            text("SELECT id, seq, action FROM platform.audit_entries ORDER BY seq DESC LIMIT 1")
        ).one()
    tamper(f"UPDATE platform.audit_entries SET action = 'tampered' WHERE id = {entry_id}")
    try:
        broken = run_cli("audit", "verify")
        assert broken.exit_code == 1
        assert f"entry id {entry_id} (seq {seq})" in broken.output
    finally:
        tamper(f"UPDATE platform.audit_entries SET action = '{action}' WHERE id = {entry_id}")
    assert run_cli("audit", "verify").exit_code == 0


def test_concurrent_appends_never_fork_the_chain(tenant):
    from concurrent.futures import ThreadPoolExecutor

    def append(i):
        with db.tenant_scope(tenant) as session:
            record(session, AuditAction.USER_CREATE, actor=ACTOR, target=("user", i))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append, range(40)))
    result = verify(tenant)
    assert result.ok and result.count == 40
