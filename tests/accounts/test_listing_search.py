"""portal.accounts.listing's search: word prefixes of email and name over a generated tsvector
column, served by its GIN index; the Sessions page's order served by its index."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from portal.accounts import lifecycle
from portal.accounts.listing import list_users, search_condition, search_query
from portal.accounts.models import User, UserSession
from portal.db import TENANT_PLACEHOLDER, db, scope_tenant
from tests.accounts.support import SYSTEM, make

PEOPLE = [
    ("anna.schmidt.12@example.com", "Anna Schmidt"),
    ("alex@acme.example", "Alex O'Neil-Smith"),
    ("bob.alex@x.example", "Bob"),
    ("alexander@acme.example", "Alexander Gross"),
    ("alex.smith@acme.example", "Al Smith"),
    ("m.schmidtke@other.example", "Mia Schmidtke"),
    ("carla@example.com", "Carla Schmidt-Weber"),
]


@pytest.fixture
def people(tenant):
    with db.tenant_scope(tenant) as session:
        for email, name in PEOPLE:
            make(session, email, name=name)
    return tenant


def found(tenant, q: str) -> set[str]:
    with db.tenant_scope(tenant) as session:
        page = list_users(session, {"q": q}, size=100)
    emails = {row.email for row in page.rows}
    assert page.total == len(emails)
    return emails


def test_a_word_finds_it_in_the_email_and_in_the_name(people):
    assert found(people, "schmidt") == {
        "anna.schmidt.12@example.com",
        "m.schmidtke@other.example",  # a prefix of schmidtke
        "carla@example.com",  # Schmidt-Weber
    }
    assert found(people, "SCHMIDT") == found(people, "schmidt")


def test_an_email_prefix_with_its_at_sign_finds_only_that_local_part(people):
    assert found(people, "alex@") == {"alex@acme.example", "bob.alex@x.example"}
    assert found(people, "alex@acme") == {"alex@acme.example"}
    assert found(people, "alex") >= {"alexander@acme.example", "alex.smith@acme.example"}


def test_typed_words_must_all_match_each_as_a_prefix(people):
    assert found(people, "anna sch") == {"anna.schmidt.12@example.com"}
    assert found(people, "smith acme") == {"alex@acme.example", "alex.smith@acme.example"}
    assert found(people, "anna carla") == set()


def test_pieces_across_separators_match_in_the_email_and_the_name(people):
    assert found(people, "schmidt.12") == {"anna.schmidt.12@example.com"}
    assert found(people, "@example.com") == {"anna.schmidt.12@example.com", "carla@example.com"}
    assert found(people, "o'neil") == {"alex@acme.example"}
    assert found(people, "schmidt-we") == {"carla@example.com"}
    assert found(people, "anna.schmidt.12@example.com") == {"anna.schmidt.12@example.com"}


def test_the_middle_of_a_word_no_longer_matches(people):
    # Deliberate change from the former contains-search: only word prefixes are indexable.
    assert found(people, "chmidt") == set()


@pytest.mark.parametrize(
    "q",
    ["a & !b", "x:* | y", "\\", "a\\", "it's", "<->", "!", "%", "*", "é ü 😀", "'a':*"],
)
def test_tsquery_syntax_typed_is_searched_as_text_not_read_as_syntax(people, q):
    assert found(people, q) == set()


def test_a_search_of_only_separators_lists_everyone(people):
    for q in ("@", "- .", "'", "''", "(", ")", "_"):
        assert search_query(q) is None
        assert len(found(people, q)) == len(PEOPLE)


def test_the_search_column_follows_a_changed_email_and_name(people):
    with db.tenant_scope(people) as session:
        user = lifecycle.find_user(session, "bob.alex@x.example")
        lifecycle.update_profile(
            session, user, name="Robert Zed", email="robert.zed@y.example", actor=SYSTEM
        )
    assert found(people, "zed") == {"robert.zed@y.example"}
    assert found(people, "bob") == set()


def plan(session, statement) -> str:
    compiled = statement.compile(
        dialect=session.bind.dialect,
        compile_kwargs={"literal_binds": True},
        schema_translate_map={TENANT_PLACEHOLDER: scope_tenant(session).schema},
        render_schema_translate=True,
    )
    return "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))


def test_the_search_is_served_by_the_gin_index(people):
    with db.tenant_scope(people) as session:
        # Few rows: tell the planner a scan of the table is out, as at 100,000 users.
        session.execute(text("SET LOCAL enable_seqscan = off"))
        statement = select(func.count()).select_from(User).where(search_condition("schmidt"))
        assert "ix_users_search" in plan(session, statement)


def test_the_sessions_order_is_served_by_its_index(people):
    with db.tenant_scope(people) as session:
        # Without the index, only a sort can give this order: rule it out, and the scans that
        # would need one.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            session.execute(text(f"SET LOCAL {setting} = off"))
        statement = (
            select(UserSession.id)
            .where(UserSession.last_seen_at >= func.now() - text("interval '30 minutes'"))
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
            .limit(51)
        )
        shown = plan(session, statement)
        assert "Scan Backward using ix_user_sessions_last_seen_order" in shown
        assert "Sort" not in shown
