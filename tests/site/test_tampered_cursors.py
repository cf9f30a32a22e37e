"""Keyset cursors are opaque but not trusted: a cursor edited to hold values of the wrong type
or out of range gives the first page, never a database error (500)."""

from __future__ import annotations

import pytest

from portal.pagination import _encode
from tests.site.conftest import host

HOSTILE = [
    _encode((5, "abc")),  # a number where the sort key is text, text where it is a number
    _encode(("a", 2**70)),  # beyond bigint
    _encode(("a", True)),  # a boolean for a number
    _encode(("a", 1.5)),  # a float for an integer id
    _encode(({"t": "not a time"},)),  # wrong width and a bad time
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
