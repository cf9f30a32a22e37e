"""Isolation is enforced by the database and by host routing (T3, T4)."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from portal.accounts.lifecycle import create_user
from portal.compliance.audit import Actor
from portal.db import db
from tests.conftest import PASSWORD


def add_user(tenant, email, password=None):
    with db.tenant_scope(tenant) as session:
        return create_user(
            session,
            email=email,
            name=email.split("@")[0],
            password=password,
            actor=Actor.system("test"),
        )


def test_raw_cross_schema_select_under_tenant_role_is_denied(make_tenant):
    a, b = make_tenant(), make_tenant()
    add_user(b, "secret@b.example")
    with pytest.raises(ProgrammingError, match="permission denied for schema"):
        with db.tenant_scope(a) as session:
            session.execute(text(f'SELECT email FROM "{b.schema}".users')).all()


def test_tenant_role_cannot_read_the_platform_schema(tenant):
    with pytest.raises(ProgrammingError, match="permission denied for schema platform"):
        with db.tenant_scope(tenant) as session:
            session.execute(text("SELECT slug FROM platform.tenants")).all()


def test_tenant_scope_keeps_its_role_after_a_commit(make_tenant):
    a, b = make_tenant(), make_tenant()
    session = db.open_tenant_session(a)
    try:
        session.commit()
        assert session.execute(text("SELECT current_user")).scalar() == a.schema
        with pytest.raises(ProgrammingError, match="permission denied"):
            session.execute(text(f'SELECT 1 FROM "{b.schema}".users')).all()
    finally:
        session.rollback()
        session.close()


def test_host_routes_slug_subdomain_and_custom_domain(client, make_tenant):
    tenant = make_tenant(name="Routed Org", domains=["portal.routed-org.example"])
    for host in (
        f"{tenant.slug}.localhost",
        "portal.routed-org.example",
        f"{tenant.slug}.localhost:5000",
    ):
        response = client.get("/sign-in", headers={"Host": host})
        assert response.status_code == 200
        assert b"Sign in to Routed Org" in response.data


def test_unknown_host_gets_a_404_page(client):
    response = client.get("/sign-in", headers={"Host": "nobody-here.localhost"})
    assert response.status_code == 404
    assert b"Unknown organisation" in response.data
    assert b"nobody-here.localhost" in response.data


def test_console_is_not_served_on_a_tenant_host(client, tenant):
    response = client.get("/tenants", headers={"Host": f"{tenant.slug}.localhost"})
    assert response.status_code == 404


def sign_in_user(client, tenant, email):
    return client.post(
        "/sign-in",
        data={"email": email, "password": PASSWORD},
        headers={"Host": f"{tenant.slug}.localhost"},
    )


def test_a_tenant_page_never_shows_another_tenants_data(client, make_tenant):
    a, b = make_tenant(), make_tenant()
    add_user(a, "alice@a.example", PASSWORD)
    add_user(b, "bob@b.example", PASSWORD)
    assert sign_in_user(client, a, "alice@a.example").status_code == 303
    page = client.get("/", headers={"Host": f"{a.slug}.localhost"})
    assert page.status_code == 200
    assert b"alice@a.example" in page.data
    assert b"bob@b.example" not in page.data


def test_a_session_cookie_of_one_tenant_is_worthless_on_another(client, make_tenant):
    a, b = make_tenant(), make_tenant()
    add_user(a, "alice@a.example", PASSWORD)
    add_user(b, "alice@a.example", PASSWORD)  # same email in another tenant
    sign_in_user(client, a, "alice@a.example")
    cookie = client.get_cookie("session", domain=f"{a.slug}.localhost")
    assert cookie is not None
    response = client.get(
        "/", headers={"Host": f"{b.slug}.localhost", "Cookie": f"session={cookie.value}"}
    )
    assert response.status_code == 302
    assert "/sign-in" in response.headers["Location"]


def test_user_with_same_email_in_other_tenant_cannot_sign_in_with_wrong_tenants_password(
    client, make_tenant
):
    a, b = make_tenant(), make_tenant()
    add_user(a, "carol@x.example", PASSWORD)
    add_user(b, "carol@x.example", "a different password entirely")
    assert sign_in_user(client, b, "carol@x.example").status_code == 422


def test_suspended_tenant_refuses_sign_in_with_a_clear_page(client, make_tenant):
    from portal.tenancy.models import Tenant
    from portal.tenancy.services import suspend_tenant

    tenant = make_tenant(name="Paused Org")
    add_user(tenant, "dana@p.example", PASSWORD)
    with db.platform_scope() as session:
        suspend_tenant(
            session,
            session.get(Tenant, tenant.id),
            actor=Actor.system("test"),
            reason="invoice overdue",
        )
    host = {"Host": f"{tenant.slug}.localhost"}
    page = client.get("/sign-in", headers=host)
    assert page.status_code == 403
    assert b"Paused Org is suspended" in page.data
    attempt = client.post(
        "/sign-in", data={"email": "dana@p.example", "password": PASSWORD}, headers=host
    )
    assert attempt.status_code == 403
    assert (
        client.get_cookie("session", domain=f"{tenant.slug}.localhost") is None
        or client.get("/", headers=host).status_code == 403
    )
