"""The tenants list: live search, keyset pagination both ways, sorting, bad cursors."""

import re

import pytest

from portal.console import tenants_views
from portal.pagination import decode_cursor, encode_cursor
from tests.console.support import HOST, HTMX


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(tenants_views, "PAGE_SIZE", 2)


def names_on(body: str, prefix: str) -> list[str]:
    return re.findall(rf">({prefix} \d)</a>", body)


def link(body: str, label: str) -> str | None:
    match = re.search(rf'<a class="btn[^"]*" href="([^"]+)"[^>]*>{label}</a>', body)
    return match.group(1).replace("&amp;", "&") if match else None


def test_live_search_returns_only_the_results_fragment(client, sign_in_as, make_tenant):
    sign_in_as()
    wanted = make_tenant(name="Findable Widgets")
    make_tenant(name="Other Company")
    response = client.get("/tenants?q=findable", headers=HTMX)
    body = response.data.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<div id="results">')
    assert wanted.slug in body and "Other Company" not in body
    assert "HX-Request" in response.headers["Vary"]
    full = client.get("/tenants?q=findable", headers=HOST).data.decode()
    assert "<html" in full and wanted.slug in full


def test_pages_forward_and_back_with_keyset_cursors(client, sign_in_as, make_tenant, small_pages):
    sign_in_as()
    prefix = f"Pager{make_tenant().slug[-4:]}"
    for i in range(5):
        make_tenant(name=f"{prefix} {i}")
    first = client.get(f"/tenants?q={prefix}&sort=name", headers=HOST).data.decode()
    assert names_on(first, prefix) == [f"{prefix} 0", f"{prefix} 1"]
    assert "5 tenants" in first and link(first, "Previous") is None
    second = client.get(link(first, "Next"), headers=HOST).data.decode()
    assert names_on(second, prefix) == [f"{prefix} 2", f"{prefix} 3"]
    third = client.get(link(second, "Next"), headers=HOST).data.decode()
    assert names_on(third, prefix) == [f"{prefix} 4"] and link(third, "Next") is None
    back = client.get(link(third, "Previous"), headers=HOST).data.decode()
    assert names_on(back, prefix) == [f"{prefix} 2", f"{prefix} 3"]
    start = client.get(link(back, "Previous"), headers=HOST).data.decode()
    assert (
        names_on(start, prefix) == [f"{prefix} 0", f"{prefix} 1"]
        and link(start, "Previous") is None
    )


def test_descending_sort_by_creation(client, sign_in_as, make_tenant, small_pages):
    sign_in_as()
    prefix = f"Newest{make_tenant().slug[-4:]}"
    for i in range(3):
        make_tenant(name=f"{prefix} {i}")
    body = client.get(f"/tenants?q={prefix}&sort=-created", headers=HOST).data.decode()
    assert names_on(body, prefix) == [f"{prefix} 2", f"{prefix} 1"]
    assert 'aria-sort="descending"' in body
    later = client.get(link(body, "Next"), headers=HOST).data.decode()
    assert names_on(later, prefix) == [f"{prefix} 0"]


@pytest.mark.parametrize("cursor", ["garbage", "e30", encode_cursor(("a", "b", "c")), "%ff%fe"])
def test_tampered_cursors_and_sorts_fall_back_to_the_first_page(client, sign_in_as, cursor):
    sign_in_as()
    for params in (f"after={cursor}", f"before={cursor}", "sort=password_hash", "sort=--name"):
        assert client.get(f"/tenants?{params}", headers=HOST).status_code == 200


def test_cursor_round_trips_datetimes():
    from datetime import UTC, datetime

    value = (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "acme")
    assert decode_cursor(encode_cursor(value), 2) == value


def raw_cursor(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor(("acme\x00",)),  # PostgreSQL text cannot hold NUL
        encode_cursor(("active\x00", "acme")),
        encode_cursor(("Acme", "acme\x00")),
        raw_cursor('["\\udcff"]'),  # a lone surrogate
        raw_cursor('["a", "\\ud800"]'),
        raw_cursor('[{"t": "2026-01-01T00:00:00+00:00"}, "\\u0000"]'),
        raw_cursor("[" * 3000 + "]" * 3000),
        "B" * 50_000,
    ],
)
@pytest.mark.parametrize("sort", ["slug", "-name", "created", "-status"])
def test_cursors_holding_what_postgresql_cannot_take_give_the_first_page(
    client, sign_in_as, cursor, sort
):
    sign_in_as()
    for direction in ("after", "before"):
        response = client.get(f"/tenants?sort={sort}&{direction}={cursor}", headers=HOST)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
