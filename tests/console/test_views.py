"""Console pages: permissions, 404s, CSRF, sessions, forms and headers (S)."""

import re

import pytest
from sqlalchemy import select

from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.tenancy.models import Tenant
from tests.conftest import PASSWORD, purge, sign_in_staff, staff_code, unique_slug

HOST = {"Host": "localhost"}
HTMX = {"Host": "localhost", "HX-Request": "true"}


def entries(action):
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry)
            .where(PlatformAuditEntry.action == action)
            .order_by(PlatformAuditEntry.seq.desc())
        ).all()


@pytest.mark.parametrize("path", ["/", "/tenants", "/tenants/new", "/audit"])
def test_signed_out_pages_redirect_to_sign_in(client, path):
    response = client.get(path, headers=HOST)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=")


def test_signed_out_htmx_request_gets_hx_redirect(client):
    response = client.get("/tenants?q=x", headers=HTMX)
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/sign-in")


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


def test_audit_page_filters_and_verifies(client, sign_in_as, tenant):
    sign_in_as()
    page = client.get("/audit?action=tenancy:tenant:create", headers=HOST)
    assert page.status_code == 200 and tenant.slug.encode() in page.data
    assert client.get("/audit?from=not-a-date&before=abc", headers=HOST).status_code == 200
    verified = client.post("/audit/verify", headers=HTMX)
    assert verified.status_code == 200 and b"ok: " in verified.data


def test_every_response_carries_security_headers(client):
    response = client.get("/sign-in", headers=HOST)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"]
    assert "Strict-Transport-Security" not in response.headers
    secure = client.get("/sign-in", headers=HOST, base_url="https://localhost")
    assert "max-age" in secure.headers["Strict-Transport-Security"]
    cookie = client.get_cookie("session", domain="localhost")
    assert cookie is None or cookie.http_only


def test_templates_have_no_inline_scripts_or_styles(client):
    body = client.get("/sign-in", headers=HOST).data.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)
    assert " style=" not in body


def test_metrics_expose_latency_and_tenants_by_status(client, tenant):
    client.get("/sign-in", headers=HOST)
    body = client.get("/metrics", headers=HOST).data.decode()
    assert 'portal_request_duration_seconds_bucket{endpoint="console.sign_in"' in body
    assert 'portal_tenants{status="active"}' in body


def test_request_id_is_echoed_and_invented_when_missing(client):
    mine = client.get("/healthz", headers={"X-Request-ID": "abc-1234-xyz"})
    assert mine.headers["X-Request-ID"] == "abc-1234-xyz"
    invented = client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", invented.headers["X-Request-ID"])


def test_overview_lists_tenants_near_their_user_limit(client, sign_in_as, make_tenant):
    from portal.accounts.lifecycle import create_user
    from portal.compliance.audit import Actor

    sign_in_as()
    full = make_tenant(name="Nearly Full Org", max_users=2)
    roomy = make_tenant(name="Roomy Org", max_users=100)
    for tenant, n in ((full, 2), (roomy, 1)):
        with db.tenant_scope(tenant) as session:
            for i in range(n):
                create_user(session, email=f"u{i}@x.example", actor=Actor.system("test"))
    overview = client.get("/", headers=HOST).data.decode()
    assert "Nearly Full Org" in overview and "2 of 2 users" in overview
    assert "Roomy Org" not in overview.split("Near their user limit")[1].split("</section>")[0]
    page = client.get(f"/tenants/{full.slug}", headers=HOST).data.decode()
    assert "2 of 2" in page and "limit reached" in page


def test_a_tenant_without_a_users_table_does_not_break_the_overview(
    client, sign_in_as, make_tenant
):
    sign_in_as()
    broken = make_tenant(max_users=5)
    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{broken.schema}".users RENAME TO users_gone')
    try:
        assert client.get("/", headers=HOST).status_code == 200
        page = client.get(f"/tenants/{broken.slug}", headers=HOST)
        assert page.status_code == 200 and b"unknown" in page.data
    finally:
        with db.owner_engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER TABLE "{broken.schema}".users_gone RENAME TO users')


def test_audit_export_streams_filtered_csv_and_is_itself_audited(client, sign_in_as, tenant):
    import csv
    import io

    sign_in_as("compliance")
    response = client.post("/audit.csv", data={"action": "tenancy:tenant:create"}, headers=HOST)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.data.decode())))
    assert rows and {r["action"] for r in rows} == {"tenancy:tenant:create"}
    assert any(r["target_id"] == str(tenant.id) for r in rows)
    assert all(len(r["hash"]) == 64 for r in rows)
    assert entries("compliance:audit:export")[0].detail == {"action": "tenancy:tenant:create"}


def test_audit_export_defuses_spreadsheet_formulas_typed_by_visitors(client, sign_in_as):
    """An email address may start with "=" (a self-registered user's, say) and becomes the actor
    label of that person's actions; a spreadsheet must not run it."""
    import csv
    import io

    from portal.compliance.audit import Actor, AuditAction, record

    hostile = "=1+1@evil.example"
    with db.platform_scope() as session:
        record(session, AuditAction.JOB_RETRY, actor=Actor("staff", "0", hostile))
    sign_in_as()
    response = client.post("/audit.csv", data={"action": "ops:job:retry"}, headers=HOST)
    labels = [r["actor_label"] for r in csv.DictReader(io.StringIO(response.data.decode()))]
    assert "'" + hostile in labels and hostile not in labels


def test_audit_filters_treat_like_wildcards_literally(client, sign_in_as):
    sign_in_as()
    body = client.get("/audit?action=%25&actor=%25", headers=HOST).data.decode()
    assert "No entries match" in body


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


@pytest.mark.parametrize(
    "path",
    [
        "/tenants?q=%00",
        "/tenants?q=" + "a" * 5000,
        "/tenants?sort=" + "x" * 300,
        "/audit?actor=%00",
        "/audit?from=2026-13-45&to=0000-00-00",
        "/audit?before=99999999999999999999999",
        "/tenants/%00",
        "/tenants/" + "a" * 300,
    ],
)
def test_hostile_query_strings_never_produce_a_500(client, sign_in_as, path):
    sign_in_as()
    assert client.get(path, headers=HOST).status_code < 500


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

    from portal.console.models import StaffSession

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
