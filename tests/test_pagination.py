"""The list machinery (portal.pagination): a spec parses a query string into normalised
filters, a sort and cursors, junk ignored; a page walks keyset cursors both ways, counts its
total and builds its own links. The pages that use it are tried in tests/console and tests/site."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Integer, String, column, select, values

from portal.db import db
from portal.pagination import (
    Filter,
    Ignored,
    ListSpec,
    choice_filter,
    date_filter,
    encode_cursor,
    text_filter,
)


def _positive(raw: str) -> int | None:
    if not raw:
        return None
    if raw.isdigit() and 0 < int(raw) < 1000:
        return int(raw)
    raise Ignored("Not a number between 1 and 999")


SPEC = ListSpec(
    filters=(
        text_filter("q", 10),
        choice_filter("colour", ("red", "blue")),
        date_filter("from", "From is not a date"),
        date_filter("to"),
        Filter("n", _positive, None),
    ),
    sorts={"name": ("name", "id"), "id": ("id",), "seen": ("seen", "id")},
    default_sort="name",
    size=2,
    nullable=frozenset({"seen"}),
)

# id, name, seen (NULL: never)
ROWS = [(1, "d", 5), (2, "a", None), (3, "c", 1), (4, "b", None), (5, "e", 3)]


def link(**args) -> str:
    return "/things" + ("?" + "&".join(f"{k}={v}" for k, v in args.items()) if args else "")


def listed():
    table = values(
        column("id", Integer), column("name", String), column("seen", Integer), name="things"
    ).data(ROWS)
    return select(table).subquery("listed")


@pytest.fixture
def session(app):
    with db.platform_scope() as session:
        yield session


def page(session, args, *, spec=SPEC):
    return spec.page(session, listed(), spec.parse(args), url=link)


def walk(session, args) -> tuple[list[list[int]], list[list[int]]]:
    """Every page by Next, then back by Previous, as ids."""
    pages, cursor = [], None
    while True:
        current = page(session, {**args, "after": cursor} if cursor else args)
        pages.append([row.id for row in current.rows])
        if not current.next_cursor:
            break
        cursor = current.next_cursor
    back, cursor = [pages[-1]], current.prev_cursor
    while cursor:
        current = page(session, {**args, "before": cursor})
        back.append([row.id for row in current.rows])
        cursor = current.prev_cursor
    return pages, back[::-1]


def test_bad_filter_values_are_ignored_and_noted_where_the_filter_says_so():
    query = SPEC.parse(
        {"q": "  a   b  " + "x" * 20, "colour": "green", "from": "yesterday", "to": "2026-13-01"}
        | {"n": "-1"}
    )
    assert query.filters == {"q": "a b xxxxxx", "colour": "", "from": None, "to": None, "n": None}
    assert query.ignored == ("From is not a date", "Not a number between 1 and 999")
    assert query.narrowed() and not query.narrowed("q")


def test_good_filter_values_are_normalised_and_only_non_defaults_reach_the_url():
    query = SPEC.parse({"colour": "red", "from": "2026-01-02", "n": "7", "sort": "name"})
    assert query.filters["from"] == date(2026, 1, 2) and query.filters["n"] == 7
    assert query.args() == {"colour": "red", "from": "2026-01-02", "n": "7"}
    assert query.args(colour=None, sort="-id") == {"from": "2026-01-02", "n": "7", "sort": "-id"}


@pytest.mark.parametrize("sort", ["password", "--name", "-", "name-", ""])
def test_unknown_sorts_fall_back_to_the_default(sort):
    assert SPEC.parse({"sort": sort}).sort == "name"


@pytest.mark.parametrize(
    "cursor",
    ["garbage", encode_cursor((1, "a")), encode_cursor(("a",)), "A" * 10_000, "n." + "x"],
)
def test_bad_cursors_give_the_first_page(session, cursor):
    for direction in ("after", "before"):
        listing = page(session, {direction: cursor})
        assert [row.id for row in listing.rows] == [2, 4]
        assert listing.prev_cursor is None and listing.total == 5


def test_pages_walk_both_ways_in_sort_order(session):
    assert walk(session, {}) == ([[2, 4], [3, 1], [5]],) * 2
    assert walk(session, {"sort": "-id"}) == ([[5, 4], [3, 2], [1]],) * 2


def test_a_nullable_sort_puts_null_first_ascending_and_last_descending(session):
    assert walk(session, {"sort": "seen"}) == ([[2, 4], [3, 5], [1]],) * 2
    assert walk(session, {"sort": "-seen"}) == ([[1, 5], [3, 4], [2]],) * 2


def test_the_total_is_counted_past_the_first_page_and_past_the_end(session):
    second = page(session, {"after": page(session, {}).next_cursor})
    assert second.total == 5
    past_the_end = page(session, {"after": encode_cursor(("zzz", 99))})
    assert past_the_end.rows == [] and past_the_end.total == 5
    in_page = ListSpec(SPEC.filters, SPEC.sorts, "name", size=2, total_in_page=True)
    assert page(session, {"after": encode_cursor(("zzz", 99))}, spec=in_page).total == 5
    assert page(session, {"after": encode_cursor(("b", 4))}, spec=in_page).total == 5
    uncounted = ListSpec(SPEC.filters, SPEC.sorts, "name", size=2, counted=False)
    assert page(session, {}, spec=uncounted).total is None


def test_links_keep_the_filters_and_sort_flips_on_the_current_column(session):
    listing = page(session, {"colour": "red", "sort": "name"})
    assert listing.next_url == f"/things?colour=red&after={listing.next_cursor}"
    assert listing.prev_url is None and listing.here == "/things?colour=red"
    assert listing.sort_url("name") == "/things?colour=red&sort=-name"
    assert listing.sort_url("id") == "/things?colour=red&sort=id"
    descending = page(session, {"sort": "-name"})
    assert descending.sort_url("name") == "/things"  # back to the default
