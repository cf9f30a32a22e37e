"""The tenant's audit page: list with filters and keyset pages, CSV export, chain verification."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import pytest
from sqlalchemy import select

from portal.accounts import roles
from portal.compliance import audit_csv
from portal.compliance.audit import Actor, AuditAction, record
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.permissions import Permission
from portal.site import audit_views
from tests.site.support import audit_entries, body, host, htmx

STAFF = Actor(type="staff", id="7", label="tech@msp.example", client_addr="192.0.2.7")


def write(tenant, action, *, actor=None, target=None, detail=None, n=1):
    """Append `n` entries to `tenant`'s trail."""
    actor = actor or Actor(
        type="user", id="1", label="someone@example.com", client_addr="198.51.100.1"
    )
    with db.tenant_scope(tenant) as session:
        for _ in range(n):
            record(session, action, actor=actor, target=target, detail=detail)


def table(html: str) -> str:
    """The rows of the page's table ("" when it shows none)."""
    parts = html.split("<tbody>")
    return parts[1].split("</tbody>")[0] if len(parts) > 1 else ""


def seqs(html: str) -> list[int]:
    """The entry numbers in the page's table, top to bottom."""
    return [int(s) for s in re.findall(r'<td class="text-secondary">(\d+)</td>', html)]


def tamper(sql):
    """Change the trail as the database owner, with the append-only trigger bypassed."""
    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(sql)


@pytest.fixture
def officer(tenant, site_user, sign_in_site):
    """A compliance officer of `tenant`, signed in."""
    return sign_in_site(tenant, site_user(tenant, ["compliance_officer"], email="cora@example.com"))


@pytest.fixture
def auditor_role(tenant):
    """A custom role that reads the trail but cannot see users or verify the chain."""
    with db.tenant_scope(tenant) as session:
        role = roles.create_role(
            session,
            name="Auditor",
            permissions=[Permission.AUDIT_VIEW],
            actor=Actor.system("test"),
        )
        return role.key


# ---- the list ---------------------------------------------------------------------------------


def test_compliance_officer_sees_the_tenants_entries_newest_first(
    client, tenant, site_user, officer
):
    alice = site_user(tenant, email="alice@example.com")
    write(
        tenant,
        AuditAction.USER_SUSPEND,
        actor=STAFF,
        target=("user", alice.id),
        detail={"reason": "left"},
    )
    response = client.get("/audit", headers=host(tenant))
    assert response.status_code == 200
    html = body(response)
    assert "Audit trail" in html
    numbers = seqs(html)
    assert numbers == sorted(numbers, reverse=True) and len(numbers) >= 3
    assert "accounts:user:suspend" in html and "reason: left" in html
    assert f'href="/users/{alice.id}">alice@example.com</a>' in html  # target, linked
    assert "192.0.2.7" in html  # client address
    assert f"{len(numbers)} entries" in html


def test_staff_actions_stand_out_with_an_msp_staff_badge(client, tenant, officer):
    write(tenant, AuditAction.STAFF_TENANT_ACCESS, actor=STAFF, target=("tenant", tenant.slug))
    html = body(client.get("/audit?by=staff", headers=host(tenant)))
    assert "tech@msp.example" in html and "MSP staff</span>" in html
    assert seqs(html) and "cora@example.com" not in table(html)


def test_filters_narrow_by_action_actor_target_and_date(client, tenant, site_user, officer):
    alice = site_user(tenant, email="alice@example.com")
    bob = site_user(tenant, email="bob@example.com")
    write(tenant, AuditAction.USER_SUSPEND, actor=STAFF, target=("user", alice.id))
    write(tenant, AuditAction.MFA_RESET, actor=STAFF, target=("user", bob.id))

    def rows(query):
        response = client.get(f"/audit?{query}", headers=host(tenant))
        assert response.status_code == 200
        return table(body(response))

    assert "auth:mfa:reset" in rows("action=auth:mfa:reset")
    assert "accounts:user" not in rows("action=auth:mfa:reset")
    only_auth = rows("action=auth:")
    assert "auth:mfa:reset" in only_auth and "accounts:" not in only_auth
    assert "accounts:user:suspend" in rows("actor=TECH@msp")
    assert "accounts:user:create" not in rows("actor=tech@msp")
    about_alice = rows("target=Alice@Example.com")
    assert "accounts:user:suspend" in about_alice and "auth:mfa:reset" not in about_alice
    assert "bob@example.com" not in about_alice
    about_bob = rows(f"user={bob.id}")
    assert "auth:mfa:reset" in about_bob and "accounts:user:suspend" not in about_bob
    assert rows("from=2000-01-01&to=2999-12-31").count("<tr>") == rows("").count("<tr>")
    assert rows("from=2999-01-01") == ""
    assert rows("to=2000-01-01") == ""
    assert rows("target=nobody@example.com") == ""
    assert "No user has the email address nobody@example.com" in body(
        client.get("/audit?target=nobody@example.com", headers=host(tenant))
    )


def test_filtering_with_htmx_returns_the_results_and_the_clean_url(client, tenant, officer):
    response = client.get(
        "/audit?action=accounts:&actor=&by=&target=&from=&to=", headers=htmx(tenant)
    )
    assert response.status_code == 200
    html = body(response)
    assert html.lstrip().startswith('<div id="results">') and "<html" not in html
    assert response.headers["HX-Push-Url"] == "/audit?action=accounts:"
    assert "HX-Request" in response.headers["Vary"]


def test_pages_walk_newest_first_with_next_and_previous(client, tenant, officer, monkeypatch):
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 5)
    write(tenant, AuditAction.USER_UPDATE, n=9)
    with db.tenant_scope(tenant) as session:
        total = len(session.scalars(select(TenantAuditEntry.id)).all())
    first = body(client.get("/audit", headers=host(tenant)))
    assert f"{total} entries" in first
    page_one = seqs(first)
    assert page_one == list(range(total, total - 5, -1))
    assert "Previous</a>" not in first
    next_url = re.search(r'href="(/audit\?after=[^"]+)"', first).group(1)
    second = body(client.get(next_url.replace("&amp;", "&"), headers=host(tenant)))
    page_two = seqs(second)
    assert page_two == list(range(total - 5, max(total - 10, 0), -1))
    prev_url = re.search(r'href="(/audit\?before=[^"]+)"', second).group(1)
    assert seqs(body(client.get(prev_url.replace("&amp;", "&"), headers=host(tenant)))) == page_one
    past_the_end = body(client.get(f"/audit?after={cursor([1])}", headers=host(tenant)))
    assert seqs(past_the_end) == [] and f"{total} entries" in past_the_end


def test_target_links_need_users_view(client, tenant, site_user, sign_in_site, auditor_role):
    alice = site_user(tenant, email="alice@example.com")
    sign_in_site(tenant, site_user(tenant, [auditor_role]))
    html = body(client.get("/audit", headers=host(tenant)))
    assert "alice@example.com" in html
    assert f'href="/users/{alice.id}"' not in html
    assert "Verify chain" not in html  # no AUDIT_VERIFY either


def test_empty_filter_result_says_what_to_do(client, tenant, officer):
    html = body(client.get("/audit?action=nothing:", headers=host(tenant)))
    assert "No entries match" in html and "clear them" in html


# ---- who may see it ---------------------------------------------------------------------------


def test_member_gets_403_on_every_audit_page(client, tenant, site_user, sign_in_site):
    sign_in_site(tenant, site_user(tenant))
    assert client.get("/audit", headers=host(tenant)).status_code == 403
    assert client.post("/audit.csv", headers=host(tenant)).status_code == 403
    assert client.post("/audit/verify", headers=host(tenant)).status_code == 403
    assert audit_entries(tenant, AuditAction.AUDIT_EXPORT) == []


def test_signed_out_visitors_are_sent_to_sign_in(client, tenant):
    for response in (
        client.get("/audit", headers=host(tenant)),
        client.post("/audit.csv", headers=host(tenant)),
        client.post("/audit/verify", headers=host(tenant)),
    ):
        assert response.status_code in (302, 303)
        assert "/sign-in" in response.headers["Location"]


def test_verify_needs_the_verify_permission(client, tenant, site_user, sign_in_site, auditor_role):
    sign_in_site(tenant, site_user(tenant, [auditor_role]))
    assert client.post("/audit/verify", headers=host(tenant)).status_code == 403


def test_entries_of_another_tenant_never_appear(client, tenant, make_tenant, site_user, officer):
    other = make_tenant()
    stranger = site_user(other, email="stranger@elsewhere.example")
    write(
        other,
        AuditAction.ROLE_DELETE,
        actor=Actor(type="user", id="9", label="boss@elsewhere.example"),
    )
    html = body(client.get("/audit", headers=host(tenant)))
    assert "elsewhere.example" not in html and "accounts:role:delete" not in html
    filtered = body(client.get("/audit?action=accounts:role:delete", headers=host(tenant)))
    assert table(filtered) == "" and "No entries match" in filtered
    about = body(client.get(f"/audit?user={stranger.id}", headers=host(tenant)))
    assert "elsewhere.example" not in about
    export = body(client.post("/audit.csv", headers=host(tenant)))
    assert "elsewhere.example" not in export and "accounts:role:delete" not in export
    # The other tenant's trail has no trace of this tenant's export either.
    assert audit_entries(other, AuditAction.AUDIT_EXPORT) == []


# ---- export -----------------------------------------------------------------------------------


def test_csv_export_has_a_header_and_the_filtered_rows_and_is_audited(
    client, tenant, site_user, officer
):
    write(tenant, AuditAction.MFA_RESET, actor=STAFF, detail={"note": "=HYPERLINK(1)"})
    write(
        tenant,
        AuditAction.ROLE_CREATE,
        actor=Actor(type="user", id="3", label="=cmd|' /C calc'!A0"),
    )
    response = client.post("/audit.csv", data={"action": "auth:"}, headers=host(tenant))
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(
        rf'attachment; filename="audit-{tenant.slug}-\d{{4}}-\d{{2}}-\d{{2}}\.csv"', disposition
    )
    rows = list(csv.reader(io.StringIO(body(response))))
    assert rows[0] == list(audit_csv.COLUMNS)
    entries = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert entries and all(e["action"].startswith("auth:") for e in entries)
    reset = next(e for e in entries if e["action"] == "auth:mfa:reset")
    assert reset["actor_type"] == "staff" and reset["actor_label"] == "tech@msp.example"
    assert json.loads(reset["detail"]) == {"note": "=HYPERLINK(1)"}
    assert len(reset["hash"]) == 64 and len(reset["prev_hash"]) == 64
    # Unfiltered: every entry, oldest first; text a spreadsheet would run is defused.
    everything = list(
        csv.reader(io.StringIO(body(client.post("/audit.csv", headers=host(tenant)))))
    )
    numbers = [int(r[0]) for r in everything[1:]]
    assert numbers == sorted(numbers) and numbers[0] == 1
    role_row = next(r for r in everything[1:] if r[2] == "accounts:role:create")
    assert role_row[5] == "'=cmd|' /C calc'!A0"
    exports = audit_entries(tenant, AuditAction.AUDIT_EXPORT)
    assert len(exports) == 2
    assert exports[1].detail == {"action": "auth:"} and exports[0].detail == {}
    assert exports[1].actor_label == "cora@example.com" and exports[1].actor_type == "user"


def test_the_export_records_itself_before_its_rows(client, tenant, officer):
    rows = list(csv.reader(io.StringIO(body(client.post("/audit.csv", headers=host(tenant))))))
    assert rows[-1][2] == AuditAction.AUDIT_EXPORT


def test_the_page_offers_the_export_as_a_form_carrying_the_filters(client, tenant, officer):
    html = body(client.get("/audit?action=auth:&by=staff", headers=host(tenant)))
    form = re.search(r'<form[^>]*action="/audit.csv".*?</form>', html, re.S)
    assert form and 'method="post"' in form.group(0)
    assert 'name="csrf_token"' in form.group(0) and "Export CSV" in form.group(0)
    assert 'name="action" value="auth:"' in form.group(0)
    assert 'name="by" value="staff"' in form.group(0)


def test_export_by_get_answers_405_and_records_nothing(client, tenant, officer):
    # A link (or an <img>) on another site can only make the browser GET.
    response = client.get("/audit.csv?action=auth:", headers=host(tenant))
    assert response.status_code == 405
    assert audit_entries(tenant, AuditAction.AUDIT_EXPORT) == []


def test_export_without_a_csrf_token_is_refused_and_records_nothing(app, client, tenant, officer):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        # What a cross-site form would send: the filters, but no token.
        response = client.post("/audit.csv", data={"action": "auth:"}, headers=host(tenant))
        assert response.status_code == 400 and response.mimetype == "text/html"
        assert audit_entries(tenant, AuditAction.AUDIT_EXPORT) == []
        # The page's own form, token included, gets the download.
        page = body(client.get("/audit", headers=host(tenant)))
        form = re.search(r'<form[^>]*action="/audit.csv".*?</form>', page, re.S).group(0)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form)
        token = token or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', form)
        response = client.post(
            "/audit.csv", data={"csrf_token": token.group(1)}, headers=host(tenant)
        )
        assert response.status_code == 200 and response.mimetype == "text/csv"
        body(response)
        assert len(audit_entries(tenant, AuditAction.AUDIT_EXPORT)) == 1
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


# ---- verify -----------------------------------------------------------------------------------


def test_verify_says_the_chain_is_intact(client, tenant, officer):
    with db.tenant_scope(tenant) as session:
        count = len(session.scalars(select(TenantAuditEntry.id)).all())
    fragment = client.post("/audit/verify", headers=htmx(tenant))
    assert fragment.status_code == 200
    html = body(fragment)
    assert html.lstrip().startswith('<div id="verify"') and "<html" not in html
    assert f"Chain intact: {count} entries" in html
    page = client.post("/audit/verify", headers=host(tenant))  # without JavaScript
    assert page.status_code == 200
    assert f"Chain intact: {count} entries" in body(page) and "<tbody>" in body(page)


def test_verify_reports_the_first_broken_entry_of_a_tampered_chain(client, tenant, officer):
    write(tenant, AuditAction.USER_UPDATE, n=4)
    tamper(f"""UPDATE "{tenant.schema}".audit_entries SET detail = '{{"n": 99}}' WHERE seq = 3""")
    html = body(client.post("/audit/verify", headers=htmx(tenant)))
    assert "Chain broken at entry #3" in html and "altered" in html
    assert "2 entries before it verified" in html


def test_verify_without_a_csrf_token_is_refused(app, client, tenant, officer):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = client.post("/audit/verify", headers=htmx(tenant))
        assert response.status_code == 400
        assert "Chain intact" not in body(response)
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


# ---- hostile input ------------------------------------------------------------------------------


def cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2024-13-45", "to": "yesterday"},
        {"from": "0001-01-01", "to": "9999-12-31"},
        {"from": "9999-12-31", "to": "0001-01-01"},
        {"from": "x" * 100_000},
        {"action": "%_\\" * 1000, "actor": "%", "target": "a" * 100_000},
        {"by": "root", "user": "9" * 5000},
        {"user": "-1"},
        {"user": "0"},
        {"user": "١٢"},
        {"after": "not-a-cursor", "before": "%%%"},
        {"after": cursor(["abc"])},
        {"after": cursor([True])},
        {"after": cursor([1.5])},
        {"before": cursor([2**70])},
        {"after": cursor([{"t": "2024-01-01T00:00:00"}])},
        {"after": cursor([1, 2])},
        {"after": "A" * 100_000},
    ],
)
def test_hostile_filter_input_never_breaks_the_page(client, tenant, officer, query):
    for response in (
        client.get("/audit", query_string=query, headers=host(tenant)),
        client.post("/audit.csv", data=query, headers=host(tenant)),
    ):
        assert response.status_code in (200, 422), (response.request.path, response.status_code)
        body(response)  # a streamed export fails while streaming, not before


def test_nul_bytes_in_filters_are_refused_not_crashed_on(client, tenant, officer):
    for name in ("action", "actor", "target", "from", "user", "after"):
        response = client.get("/audit", query_string={name: "a\x00b"}, headers=host(tenant))
        assert response.status_code == 400  # the site refuses NUL in any request
