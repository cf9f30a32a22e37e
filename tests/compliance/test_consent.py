"""The consent ledger (G1): versioned purposes, append-only records, the current state per user,
`has_consent`, what a user must answer at sign-in, counts, and every change audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from portal.accounts.models import User
from portal.compliance import consent
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.consent_models import ConsentRecord
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.permissions import Permission
from tests.site.support import SYSTEM, make_user


def define(tenant, key="analytics", *, required=False, title="Product analytics", **kwargs):
    with db.tenant_scope(tenant) as session:
        return consent.define_purpose(
            session,
            key=key,
            title=title,
            description=kwargs.pop("description", "We count which pages you use."),
            required=required,
            actor=kwargs.pop("actor", SYSTEM),
            **kwargs,
        )


def as_user(user, addr="203.0.113.9") -> Actor:
    return Actor(type="user", id=str(user.id), label=user.email, client_addr=addr)


def answer(tenant, user, key, action="grant", *, actor=None, **kwargs) -> bool:
    change = consent.grant_consent if action == "grant" else consent.withdraw_consent
    with db.tenant_scope(tenant) as session:
        row = session.get(User, user.id)
        return change(session, row, key, actor=actor or as_user(user), **kwargs)


def reword(tenant, key, **changes):
    with db.tenant_scope(tenant) as session:
        purpose = consent.get_purpose(session, key, lock=True)
        fields = {
            "title": purpose.title,
            "description": purpose.description,
            "required": purpose.required,
            "lawful_basis": purpose.lawful_basis,
        }
        return consent.update_purpose(session, purpose, **{**fields, **changes}, actor=SYSTEM)


def entries(tenant, action):
    with db.tenant_scope(tenant) as session:
        return session.scalars(
            select(TenantAuditEntry)
            .where(TenantAuditEntry.action == str(action))
            .order_by(TenantAuditEntry.seq)
        ).all()


def pending_keys(tenant, user) -> list[str]:
    with db.tenant_scope(tenant) as session:
        return [s.purpose.key for s in consent.pending_for(session, user.id)]


def has(tenant, user, key) -> bool:
    with db.tenant_scope(tenant) as session:
        return consent.has_consent(session, user.id, key)


def test_define_purpose_keeps_version_one_text_and_writes_audit_entry(tenant):
    purpose = define(tenant, required=True, lawful_basis="contract")
    assert purpose.version == 1 and purpose.required and purpose.lawful_basis == "contract"
    with db.tenant_scope(tenant) as session:
        versions = consent.purpose_versions(session, "analytics")
    assert [(v.version, v.title) for v in versions] == [(1, "Product analytics")]
    (entry,) = entries(tenant, AuditAction.CONSENT_PURPOSE_CREATE)
    assert entry.target_id == "analytics" and entry.detail["lawful_basis"] == "contract"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"key": "Bad Key"}, "key"),
        ({"title": "x"}, "title"),
        ({"description": "  "}, "description"),
        ({"lawful_basis": "because"}, "lawful_basis"),
    ],
)
def test_define_purpose_refuses_bad_input_naming_the_field(tenant, fields, field):
    with pytest.raises(consent.ConsentError) as error:
        define(tenant, **fields)
    assert error.value.field == field


def test_define_purpose_refuses_a_taken_key(tenant):
    define(tenant)
    with pytest.raises(consent.ConsentError, match="already exists"):
        define(tenant, title="Another")


def test_managing_purposes_takes_consent_manage(tenant):
    viewer = Actor(type="user", id="1", permissions=frozenset({Permission.CONSENT_VIEW}))
    with pytest.raises(consent.ConsentError, match="compliance:consent:manage"):
        define(tenant, actor=viewer)
    manager = Actor(type="user", id="1", permissions=frozenset({Permission.CONSENT_MANAGE}))
    assert define(tenant, actor=manager).key == "analytics"


def test_rewording_makes_a_new_version_and_keeps_the_old_text(tenant):
    define(tenant)
    assert reword(tenant, "analytics", description="We count pages and buttons you use.")
    with db.tenant_scope(tenant) as session:
        purpose = consent.get_purpose(session, "analytics")
        versions = consent.purpose_versions(session, "analytics")
    assert purpose.version == 2
    assert [v.description for v in versions] == [
        "We count pages and buttons you use.",
        "We count which pages you use.",
    ]
    (entry,) = entries(tenant, AuditAction.CONSENT_PURPOSE_UPDATE)
    assert entry.detail["version"] == 2 and "description" in entry.detail["after"]


def test_making_a_purpose_required_is_no_new_version_and_no_change_is_a_no_op(tenant):
    define(tenant)
    assert reword(tenant, "analytics", required=True)
    assert not reword(tenant, "analytics", required=True)
    with db.tenant_scope(tenant) as session:
        assert consent.get_purpose(session, "analytics").version == 1
    assert len(entries(tenant, AuditAction.CONSENT_PURPOSE_UPDATE)) == 1


def test_grant_and_withdraw_are_recorded_with_source_and_address_and_audited(tenant):
    define(tenant)
    user = make_user(tenant)
    assert answer(tenant, user, "analytics")
    assert has(tenant, user, "analytics")
    assert answer(tenant, user, "analytics", "withdraw")
    assert not has(tenant, user, "analytics")
    with db.tenant_scope(tenant) as session:
        rows = consent.history(session, user.id)
    assert [(r.record.action, r.record.source, r.record.client_addr) for r in rows] == [
        ("withdrawn", "web", "203.0.113.9"),
        ("granted", "web", "203.0.113.9"),
    ]
    assert rows[0].title == "Product analytics"
    (granted,) = entries(tenant, AuditAction.CONSENT_GRANT)
    (withdrawn,) = entries(tenant, AuditAction.CONSENT_WITHDRAW)
    assert granted.target_id == str(user.id)
    assert granted.detail == {"purpose": "analytics", "version": 1, "source": "web"}
    assert withdrawn.actor_id == str(user.id)


def test_granting_twice_records_once(tenant):
    define(tenant)
    user = make_user(tenant)
    assert answer(tenant, user, "analytics")
    assert not answer(tenant, user, "analytics")
    assert len(entries(tenant, AuditAction.CONSENT_GRANT)) == 1


def test_a_person_answers_only_for_themselves(tenant):
    define(tenant)
    user, other = make_user(tenant), make_user(tenant)
    with pytest.raises(consent.ConsentError, match="your own"):
        answer(tenant, user, "analytics", actor=as_user(other))
    assert answer(tenant, user, "analytics", actor=SYSTEM, source="admin")
    with db.tenant_scope(tenant) as session:
        assert consent.history(session, user.id)[0].record.source == "admin"


def test_answers_for_unknown_archived_or_changed_purposes_are_refused(tenant):
    define(tenant)
    define(tenant, "old", title="Old newsletter")
    user = make_user(tenant)
    with pytest.raises(consent.ConsentError, match="No consent purpose"):
        answer(tenant, user, "nope")
    with db.tenant_scope(tenant) as session:
        assert consent.archive_purpose(session, consent.get_purpose(session, "old"), actor=SYSTEM)
    with pytest.raises(consent.ConsentError, match="No consent purpose"):
        answer(tenant, user, "old")
    reword(tenant, "analytics", title="Product analytics and surveys")
    with pytest.raises(consent.ConsentError, match="has changed") as error:
        answer(tenant, user, "analytics", version=1)
    assert error.value.field == "version"
    assert answer(tenant, user, "analytics", version=2)
    (entry,) = entries(tenant, AuditAction.CONSENT_PURPOSE_ARCHIVE)
    assert entry.target_id == "old"


def test_invited_and_deleted_users_have_no_consent_recorded(tenant):
    define(tenant)
    invited = make_user(tenant, status="invited", password=None)
    with pytest.raises(consent.ConsentError, match="invited"):
        answer(tenant, invited, "analytics", actor=SYSTEM)


def test_pending_lists_unanswered_purposes_and_new_versions(tenant):
    define(tenant, "terms", title="Terms of service", required=True, lawful_basis="contract")
    define(tenant)
    user = make_user(tenant)
    assert sorted(pending_keys(tenant, user)) == ["analytics", "terms"]
    answer(tenant, user, "terms", "withdraw")  # declining a required purpose leaves it pending
    answer(tenant, user, "analytics", "withdraw")  # declining an optional one answers it
    assert pending_keys(tenant, user) == ["terms"]
    answer(tenant, user, "terms")
    assert pending_keys(tenant, user) == []
    reword(tenant, "analytics", description="We count pages, and now buttons too.")
    assert pending_keys(tenant, user) == ["analytics"]
    reword(tenant, "terms", description="Terms, version two.")
    assert sorted(pending_keys(tenant, user)) == ["analytics", "terms"]


def test_has_consent_needs_the_current_words_and_a_purpose_in_use(tenant):
    define(tenant)
    user = make_user(tenant)
    answer(tenant, user, "analytics")
    assert has(tenant, user, "analytics")
    reword(tenant, "analytics", title="Product analytics and surveys")
    assert not has(tenant, user, "analytics")
    answer(tenant, user, "analytics")
    assert has(tenant, user, "analytics")
    with db.tenant_scope(tenant) as session:
        consent.archive_purpose(session, consent.get_purpose(session, "analytics"), actor=SYSTEM)
    assert not has(tenant, user, "analytics")
    assert not has(tenant, user, "never_defined")


def test_states_show_the_latest_answer_and_whether_it_is_for_the_current_version(tenant):
    define(tenant)
    user = make_user(tenant)
    answer(tenant, user, "analytics")
    reword(tenant, "analytics", title="Product analytics and surveys")
    with db.tenant_scope(tenant) as session:
        (state,) = consent.states_for(session, user.id)
    assert state.granted and not state.current and state.pending
    assert state.latest.version == 1 and state.purpose.version == 2


def test_purpose_stats_count_latest_answers_of_people_with_accounts(tenant):
    define(tenant)
    users = [make_user(tenant) for _ in range(4)]
    make_user(tenant, status="invited", password=None)  # not counted
    answer(tenant, users[0], "analytics")
    answer(tenant, users[1], "analytics")
    answer(tenant, users[1], "analytics", "withdraw")
    answer(tenant, users[2], "analytics")
    reword(tenant, "analytics", title="Product analytics and surveys")
    answer(tenant, users[0], "analytics")
    with db.tenant_scope(tenant) as session:
        stats = consent.purpose_stats(session)["analytics"]
    assert (stats.people, stats.granted, stats.granted_earlier, stats.withdrawn) == (4, 1, 1, 1)
    assert stats.unanswered == 1 and stats.rate == 0.25


def test_records_are_append_only_for_the_tenant_role(tenant):
    define(tenant)
    user = make_user(tenant)
    answer(tenant, user, "analytics")
    for statement in (
        "UPDATE consent_records SET action = 'withdrawn'",
        "DELETE FROM consent_records",
        "TRUNCATE consent_records",
    ):
        with pytest.raises(ProgrammingError, match="permission denied"):
            with db.tenant_scope(tenant) as session:
                session.execute(
                    text(statement.replace("consent_records", f'"{tenant.schema}".consent_records'))
                )
    assert has(tenant, user, "analytics")


def test_even_the_owner_role_is_refused_by_the_trigger(tenant):
    define(tenant)
    user = make_user(tenant)
    answer(tenant, user, "analytics")
    table = f'"{tenant.schema}".consent_records'
    for statement in (f"UPDATE {table} SET action = 'withdrawn'", f"DELETE FROM {table}"):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.owner_engine.begin() as conn:
                conn.exec_driver_sql(statement)
    with pytest.raises(DBAPIError, match="append-only"):
        with db.owner_engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {table}")
    with db.tenant_scope(tenant) as session:
        assert session.scalars(select(ConsentRecord.action)).all() == ["granted"]


def test_a_failed_audit_write_leaves_no_record(tenant, monkeypatch):
    define(tenant)
    user = make_user(tenant)

    def broken(*args, **kwargs):
        raise RuntimeError("audit down")

    monkeypatch.setattr(consent, "record", broken)
    with pytest.raises(RuntimeError):
        answer(tenant, user, "analytics")
    with db.tenant_scope(tenant) as session:
        assert consent.history(session, user.id) == []


def test_demo_people_answer_every_demo_purpose(make_tenant):
    from portal.demo import DEMO_PURPOSES, seed_tenant_people

    tenant = make_tenant()
    with db.tenant_scope(tenant) as session:
        seed_tenant_people(session, tenant, members=6)
    with db.tenant_scope(tenant) as session:
        assert {p.key for p in consent.purposes(session)} == {p[0] for p in DEMO_PURPOSES}
        people = session.scalars(select(User).where(User.status != "invited")).all()
        assert people and all(not consent.pending_for(session, u.id) for u in people)
        assert consent.purpose_stats(session)["terms"].withdrawn == 0


def test_import_answers_writes_records_skipping_no_ops_with_one_audit_entry(tenant):
    define(tenant)
    users = [make_user(tenant) for _ in range(3)]
    invited = make_user(tenant, status="invited", password=None)
    answer(tenant, users[0], "analytics")
    with db.tenant_scope(tenant) as session:
        written = consent.import_answers(
            session,
            "analytics",
            granted=[users[0].id, users[1].id, invited.id],
            withdrawn=[users[2].id],
            actor=SYSTEM,
        )
    assert written == 2  # users[0] had granted already; the invited user is skipped
    assert has(tenant, users[1], "analytics") and not has(tenant, users[2], "analytics")
    with db.tenant_scope(tenant) as session:
        assert consent.history(session, users[1].id)[0].record.source == "import"
    (entry,) = entries(tenant, AuditAction.CONSENT_IMPORT)
    assert entry.detail == {"version": 1, "granted": 1, "withdrawn": 1}
    viewer = Actor(type="user", id="1", permissions=frozenset({Permission.CONSENT_VIEW}))
    with pytest.raises(consent.ConsentError, match="manage"):
        with db.tenant_scope(tenant) as session:
            consent.import_answers(session, "analytics", granted=[users[2].id], actor=viewer)
