"""Console tenant pages: creating a tenant, the tenant page and its actions (rename, domains,
limits, suspend, delete, trail verification) with their permissions, 404s, CSRF and form
errors."""

import pytest

from portal.db import db
from portal.tenancy.models import Tenant
from tests.conftest import purge, unique_slug
from tests.console.support import HOST, HTMX, entries


def test_support_staff_may_look_but_not_change(client, sign_in_as, tenant):
    sign_in_as("support")
    assert client.get(f"/tenants/{tenant.slug}", headers=HOST).status_code == 200
    assert client.get("/tenants/new", headers=HOST).status_code == 403
    assert (
        client.post(
            f"/tenants/{tenant.slug}/suspend", data={"reason": "x"}, headers=HOST
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/tenants/{tenant.slug}/limits", data={"max_users": "1"}, headers=HOST
        ).status_code
        == 403
    )
    with db.platform_scope() as session:
        assert session.get(Tenant, tenant.id).status == "active"


def test_unknown_tenant_is_404(client, sign_in_as):
    sign_in_as()
    assert client.get("/tenants/no-such-tenant", headers=HOST).status_code == 404
    assert (
        client.post(
            "/tenants/no-such-tenant/suspend", data={"reason": "x"}, headers=HOST
        ).status_code
        == 404
    )


def test_form_post_without_csrf_token_is_refused(app, client, sign_in_as, tenant):
    sign_in_as()
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = client.post(
            f"/tenants/{tenant.slug}/suspend", data={"reason": "x"}, headers=HOST
        )
        assert response.status_code == 400
        assert b"security token" in response.data
        response = client.post(
            f"/tenants/{tenant.slug}/suspend",
            data={"reason": "x"},
            headers={**HTMX, "X-CSRFToken": "forged"},
        )
        assert response.status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    with db.platform_scope() as session:
        assert session.get(Tenant, tenant.id).status == "active"


def test_create_tenant_with_bad_input_shows_inline_errors_and_creates_nothing(client, sign_in_as):
    sign_in_as()
    response = client.post("/tenants/new", data={"slug": "Bad Slug!", "name": ""}, headers=HTMX)
    assert response.status_code == 422
    body = response.data.decode()
    assert 'aria-invalid="true"' in body and "Give the organisation a name." in body
    assert "<html" not in body  # only the form block
    response = client.post("/tenants/new", data={"slug": "www", "name": "Reserved"}, headers=HTMX)
    assert response.status_code == 422 and "reserved" in response.data.decode()


def test_create_tenant_through_the_console(client, sign_in_as):
    member = sign_in_as()
    slug = unique_slug("ui")
    try:
        response = client.post(
            "/tenants/new",
            data={
                "slug": slug,
                "name": "UI Org",
                "domains": f"{slug}.example.org",
                "max_users": "12",
            },
            headers=HTMX,
        )
        assert response.status_code == 204 and response.headers["HX-Location"] == f"/tenants/{slug}"
        page = client.get(f"/tenants/{slug}", headers=HOST)
        assert b"UI Org" in page.data and b"Tenant UI Org created" in page.data
        entry = entries("tenancy:tenant:create")[0]
        assert entry.actor_id == str(member.id) and entry.detail["slug"] == slug
        assert entry.request_id and entry.client_addr
    finally:
        purge(slug)


def test_suspend_resume_delete_restore_through_the_console(client, sign_in_as, tenant):
    sign_in_as()
    url = f"/tenants/{tenant.slug}"
    assert client.post(f"{url}/suspend", data={"reason": ""}, headers=HTMX).status_code == 422
    assert (
        client.post(f"{url}/suspend", data={"reason": "card declined"}, headers=HOST).status_code
        == 303
    )
    assert entries("tenancy:tenant:suspend")[0].detail["reason"] == "card declined"
    assert client.post(f"{url}/resume", headers=HOST).status_code == 303
    wrong = client.post(f"{url}/delete", data={"confirm_slug": "nope"}, headers=HTMX)
    assert wrong.status_code == 422 and f"Type “{tenant.slug}”" in wrong.data.decode()
    assert (
        client.post(f"{url}/delete", data={"confirm_slug": tenant.slug}, headers=HOST).status_code
        == 303
    )
    with db.platform_scope() as session:
        assert session.get(Tenant, tenant.id).status == "deleted"
    assert client.post(f"{url}/restore", headers=HOST).status_code == 303
    with db.platform_scope() as session:
        assert session.get(Tenant, tenant.id).status == "active"


def test_domains_and_limits_update_in_place(client, sign_in_as, make_tenant):
    sign_in_as()
    t = make_tenant()
    other = make_tenant(domains=["taken.example.net"])
    url = f"/tenants/{t.slug}"
    added = client.post(f"{url}/domains", data={"domain": "Fresh.Example.NET"}, headers=HTMX)
    assert added.status_code == 200 and "fresh.example.net" in added.data.decode()
    assert "Domain fresh.example.net added" in added.headers["HX-Trigger"]
    taken = client.post(f"{url}/domains", data={"domain": "taken.example.net"}, headers=HTMX)
    assert taken.status_code == 422 and "already used" in taken.data.decode()
    assert other.slug != t.slug
    bad = client.post(f"{url}/limits", data={"max_users": "-3"}, headers=HTMX)
    assert bad.status_code == 422
    good = client.post(
        f"{url}/limits",
        data={"max_users": "40", "max_storage_bytes": "", "api_requests_per_minute": "600"},
        headers=HTMX,
    )
    assert good.status_code == 200
    with db.platform_scope() as session:
        row = session.get(Tenant, t.id)
        assert (row.max_users, row.max_storage_bytes, row.api_requests_per_minute) == (
            40,
            None,
            600,
        )


def test_rename_tenant_from_the_console(client, sign_in_as, tenant):
    sign_in_as()
    url = f"/tenants/{tenant.slug}/name"
    empty = client.post(url, data={"name": "  "}, headers=HTMX)
    assert empty.status_code == 422 and "Give the organisation a name." in empty.data.decode()
    assert client.post(url, data={"name": "Renamed Org"}, headers=HOST).status_code == 303
    with db.platform_scope() as session:
        assert session.get(Tenant, tenant.id).name == "Renamed Org"
    entry = entries("tenancy:tenant:update")[0]
    assert entry.detail["after"] == {"name": "Renamed Org"}
    site = client.get("/sign-in", headers={"Host": f"{tenant.slug}.localhost"})
    assert b"Sign in to Renamed Org" in site.data  # the host cache was refreshed


def test_tenant_trail_can_be_verified_from_the_console(client, sign_in_as, tenant):
    from portal.accounts.lifecycle import create_user
    from portal.compliance.audit import Actor

    with db.tenant_scope(tenant) as session:
        create_user(session, email="one@x.example", actor=Actor.system("test"))
    sign_in_as("compliance")
    response = client.post(f"/tenants/{tenant.slug}/audit/verify", headers=HTMX)
    assert response.status_code == 200 and "ok: 1 entries" in response.data.decode()
    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(f"""UPDATE "{tenant.schema}".audit_entries SET action = 'forged'""")
    broken = client.post(f"/tenants/{tenant.slug}/audit/verify", headers=HTMX).data.decode()
    assert "broken" in broken and "(seq 1)" in broken


def test_support_cannot_verify_a_tenant_trail(client, sign_in_as, tenant):
    sign_in_as("support")
    assert client.post(f"/tenants/{tenant.slug}/audit/verify", headers=HTMX).status_code == 403


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_users", "3000000000"),
        ("api_requests_per_minute", "99999999999"),
        ("max_storage_bytes", "99999999999999999999999"),
        ("max_users", "1e3"),
        ("max_users", "ten"),
        ("max_users", "-0.5"),
    ],
)
def test_out_of_range_limits_are_form_errors_not_500s(client, sign_in_as, tenant, field, value):
    sign_in_as()
    response = client.post(f"/tenants/{tenant.slug}/limits", data={field: value}, headers=HTMX)
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.data.decode()


@pytest.mark.parametrize(
    "data",
    [
        {"slug": "x" * 5000, "name": "Long"},
        {"slug": "ok-slug", "name": "n" * 5000},
        {"slug": "ok-slug", "name": "Ok", "domains": "a" * 300 + ".com"},
        {"slug": "ok-slug", "name": "Ok", "max_users": "9" * 30},
        {"slug": "ünïcode", "name": "Ok"},
    ],
)
def test_hostile_create_input_is_a_form_error(client, sign_in_as, data):
    sign_in_as()
    response = client.post("/tenants/new", data=data, headers=HTMX)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "data", [{"slug": "ok-slug\x00", "name": "Ok"}, {"slug": "ok", "name": "O\x00"}]
)
def test_nul_bytes_in_a_form_are_a_bad_request(client, sign_in_as, data):
    sign_in_as()
    response = client.post("/tenants/new", data=data, headers=HOST)
    assert response.status_code == 400 and b"Bad request" in response.data
