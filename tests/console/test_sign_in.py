"""Console sign-in and sign-out: the redirect of signed-out requests, CSRF, one answer for
wrong passwords and unknown emails, session rotation and expiry, no off-site redirects."""

import re

import pytest
from sqlalchemy import select

from portal.db import db
from tests.conftest import PASSWORD, sign_in_staff, staff_code
from tests.console.support import HOST, HTMX, entries


@pytest.mark.parametrize("path", ["/", "/tenants", "/tenants/new", "/audit"])
def test_signed_out_pages_redirect_to_sign_in(client, path):
    response = client.get(path, headers=HOST)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=")


def test_signed_out_htmx_request_gets_hx_redirect(client):
    response = client.get("/tenants?q=x", headers=HTMX)
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/sign-in")


def test_sign_in_with_csrf_enabled_works_with_the_pages_token(app, client, make_staff):
    member = make_staff()
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = client.get("/sign-in", headers=HOST)
        token = (
            re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
            .group(1)
            .decode()
        )
        response = client.post(
            "/sign-in",
            data={"email": member.email, "password": PASSWORD, "csrf_token": token},
            headers=HOST,
        )
        assert response.status_code == 303
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


def test_wrong_password_and_unknown_email_look_the_same(client, make_staff):
    member = make_staff()
    wrong = client.post(
        "/sign-in", data={"email": member.email, "password": "not the password"}, headers=HOST
    )
    unknown = client.post(
        "/sign-in",
        data={"email": "nobody@msp.example", "password": "not the password"},
        headers=HOST,
    )
    assert wrong.status_code == unknown.status_code == 422

    def strip(body):
        pattern = (
            rb'value="[^"]*"|request [0-9a-f]{32}|<code>[0-9a-f]{32}</code>|"X-CSRFToken": "[^"]*"'
        )
        return re.sub(pattern, b"", body)

    assert strip(wrong.data).replace(member.email.encode(), b"") == strip(unknown.data).replace(
        b"nobody@msp.example", b""
    )
    assert entries("console:staff:sign_in_failed")[0].personal == {"email": "nobody@msp.example"}


def test_sign_in_rotates_the_session_and_sign_out_kills_it_server_side(app, client, make_staff):
    member = make_staff()
    client.get("/sign-in", headers=HOST)
    before = client.get_cookie("session", domain="localhost")
    sign_in_staff(client, member)
    after = client.get_cookie("session", domain="localhost")
    assert after is not None and (before is None or before.value != after.value)
    assert client.get("/tenants", headers=HOST).status_code == 200
    client.post("/sign-out", headers=HOST)
    replay = app.test_client()
    replay.set_cookie("session", after.value, domain="localhost")
    response = replay.get("/tenants", headers=HOST)
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
def test_sign_in_never_redirects_off_site(client, make_staff, target):
    member = make_staff()
    client.post(
        "/sign-in",
        query_string={"next": target},
        data={"email": member.email, "password": PASSWORD},
        headers=HOST,
    )
    response = client.post("/sign-in/verify", data={"code": staff_code(member)}, headers=HOST)
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_idle_and_old_sessions_expire_and_last_seen_is_refreshed(app, client, make_staff):
    from sqlalchemy import text

    from portal.staff.models import StaffSession

    member = make_staff()
    sign_in_staff(client, member)

    def age(column, minutes):
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    f"UPDATE platform.staff_sessions SET {column} = now() - make_interval(mins => :m) "
                    "WHERE staff_id = :s"
                ),
                {"m": minutes, "s": member.id},
            )

    age("last_seen_at", 5)
    assert client.get("/tenants", headers=HOST).status_code == 200
    with db.platform_scope() as session:
        row = session.scalars(select(StaffSession).where(StaffSession.staff_id == member.id)).one()
        assert row.last_seen_at > row.created_at  # refreshed: it was aged to before sign-in
    age("created_at", 13 * 60)  # past the 12 h absolute timeout
    assert client.get("/tenants", headers=HOST).status_code == 302
    with db.platform_scope() as session:
        assert not session.scalars(
            select(StaffSession).where(StaffSession.staff_id == member.id)
        ).all()
