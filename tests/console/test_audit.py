"""The console audit page: filters, the CSV export (itself audited, formulas defused) and
verifying the platform trail."""

from portal.db import db
from tests.console.support import HOST, HTMX, entries


def test_audit_page_filters_and_verifies(client, sign_in_as, tenant):
    sign_in_as()
    page = client.get("/audit?action=tenancy:tenant:create", headers=HOST)
    assert page.status_code == 200 and tenant.slug.encode() in page.data
    assert client.get("/audit?from=not-a-date&before=abc", headers=HOST).status_code == 200
    verified = client.post("/audit/verify", headers=HTMX)
    assert verified.status_code == 200 and b"ok: " in verified.data


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
