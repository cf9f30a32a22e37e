"""Keyset cursors are opaque but not trusted: a cursor edited to hold values of the wrong type
or out of range gives the first page, never a database error (500)."""

from __future__ import annotations

import base64

import pytest

from portal.pagination import encode_cursor
from tests.site.support import host

HOSTILE = [
    encode_cursor((5, "abc")),  # a number where the sort key is text, text where it is a number
    encode_cursor(("a", 2**70)),  # beyond bigint
    encode_cursor(("a", True)),  # a boolean for a number
    encode_cursor(("a", 1.5)),  # a float for an integer id
    encode_cursor(({"t": "not a time"},)),  # wrong width and a bad time
]


@pytest.mark.parametrize("cursor", HOSTILE)
@pytest.mark.parametrize("sort", ["email", "name", "created", "last_sign_in"])
def test_users_list_survives_tampered_cursors(client, tenant, admin, cursor, sort):
    for direction in ("after", "before"):
        response = client.get(f"/users?sort={sort}&{direction}={cursor}", headers=host(tenant))
        assert response.status_code == 200, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize("cursor", HOSTILE)
@pytest.mark.parametrize("path", ["/audit", "/sessions"])
def test_audit_and_sessions_lists_survive_tampered_cursors(client, tenant, admin, cursor, path):
    for direction in ("after", "before"):
        response = client.get(f"{path}?{direction}={cursor}", headers=host(tenant))
        assert response.status_code == 200, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize("cursor", HOSTILE)
@pytest.mark.parametrize("sort", ["slug", "name", "created", "status"])
def test_console_lists_survive_tampered_cursors(client, sign_in_as, tenant, cursor, sort):
    sign_in_as("platform_admin")
    for path in (f"/tenants?sort={sort}&after={cursor}", f"/outbox?after={cursor}"):
        response = client.get(path, headers={"Host": "localhost"})
        assert response.status_code == 200, (path, response.get_data(as_text=True)[:300])


def raw_cursor(text: str) -> str:
    """A cursor holding arbitrary JSON text, as an attacker would encode it."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# Values that reached PostgreSQL before and made it fail (500), each now the first page.
REACHED_THE_DATABASE = [
    encode_cursor(("a\x00b", 1)),  # PostgreSQL text cannot hold NUL
    raw_cursor('["\\ud800", 1]'),  # a lone surrogate cannot be encoded for the database
    raw_cursor('["a", 1e999]'),  # infinity
    raw_cursor('["a", NaN]'),
    raw_cursor("[" * 5000 + "]" * 5000),  # deep enough to overflow a recursive parser
    raw_cursor('["a", ' + "9" * 5000 + "]"),  # more digits than Python converts
    raw_cursor('[{"t": "9999-12-31T23:59:59-23:59"}, 1]'),  # a time past year 9999 in UTC
    "A" * 100_000,  # far longer than any cursor we issue
]
# The last-sign-in sort names its segment in front: "n." (never signed in) or "d." (dated).
LAST_SIGN_IN = [
    "n." + encode_cursor((True,)),  # a boolean where the id belongs
    "d." + encode_cursor(({"t": "2026-01-01T00:00:00+00:00"}, False)),
    "n." + encode_cursor((2**70,)),  # beyond bigint
    "d." + encode_cursor(({"t": "2026-01-01T00:00:00+00:00"}, -(2**70))),
    "n." + encode_cursor(("1",)),  # text where the id belongs
    "d." + encode_cursor(("2026-01-01", 1)),  # text where the time belongs
    "n." + encode_cursor(("\x00",)),
    "d." + raw_cursor('[{"t": "2026-01-01T00:00:00\\u0000"}, 1]'),
    "x." + encode_cursor((1,)),  # an unknown segment
    "n.",
    ".",
]


@pytest.mark.parametrize("cursor", REACHED_THE_DATABASE + LAST_SIGN_IN)
@pytest.mark.parametrize("sort", ["email", "-name", "created", "last_sign_in", "-last_sign_in"])
def test_users_list_refuses_cursors_that_would_reach_the_database_broken(
    client, tenant, admin, cursor, sort
):
    for direction in ("after", "before"):
        response = client.get(f"/users?sort={sort}&{direction}={cursor}", headers=host(tenant))
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert "Ada Admin" in response.get_data(as_text=True)  # the first page


@pytest.mark.parametrize("cursor", REACHED_THE_DATABASE)
@pytest.mark.parametrize("path", ["/audit", "/sessions"])
def test_audit_and_sessions_lists_refuse_cursors_that_would_reach_the_database_broken(
    client, tenant, admin, cursor, path
):
    for direction in ("after", "before"):
        response = client.get(f"{path}?{direction}={cursor}", headers=host(tenant))
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
