"""The platform trail's CSV export is a CSRF-checked POST: it writes an audit entry, so a link or
a form on another site must not make a signed-in browser run it (issue 11 §6). The tenant
site's export is tried the same way in tests/site/test_audit.py."""

import re

from sqlalchemy import select

from portal.compliance.audit import AuditAction
from portal.compliance.models import PlatformAuditEntry
from portal.db import db

HOST = {"Host": "localhost"}


def export_entries(member) -> list[PlatformAuditEntry]:
    with db.platform_scope() as session:
        return list(
            session.scalars(
                select(PlatformAuditEntry).where(
                    PlatformAuditEntry.action == AuditAction.AUDIT_EXPORT,
                    PlatformAuditEntry.actor_id == str(member.id),
                )
            )
        )


def export_form(html: str) -> str:
    found = re.search(r'<form[^>]*action="/audit.csv".*?</form>', html, re.S)
    assert found, "the audit page has no export form"
    return found.group(0)


def test_the_audit_page_offers_the_export_as_a_post_form_with_the_filters(client, sign_in_as):
    sign_in_as("compliance")
    html = client.get("/audit?action=tenancy:&from=2026-01-01", headers=HOST).data.decode()
    form = export_form(html)
    assert 'method="post"' in form and 'name="csrf_token"' in form and "Export CSV" in form
    assert 'name="action" value="tenancy:"' in form
    assert 'name="from" value="2026-01-01"' in form


def test_export_by_get_answers_405_and_records_nothing(client, sign_in_as):
    member = sign_in_as("compliance")
    response = client.get("/audit.csv?action=tenancy:", headers=HOST)
    assert response.status_code == 405
    assert export_entries(member) == []


def test_export_without_a_csrf_token_is_refused_and_records_nothing(app, client, sign_in_as):
    member = sign_in_as("compliance")
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        # What a cross-site form would post: the filters, but no token.
        refused = client.post("/audit.csv", data={"action": "tenancy:"}, headers=HOST)
        assert refused.status_code == 400 and refused.mimetype == "text/html"
        assert export_entries(member) == []
        # The page's own form, with its token, gets the download.
        form = export_form(client.get("/audit", headers=HOST).data.decode())
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form)
        token = token or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', form)
        response = client.post(
            "/audit.csv", data={"csrf_token": token.group(1), "action": "tenancy:"}, headers=HOST
        )
        assert response.status_code == 200 and response.mimetype == "text/csv"
        response.get_data()
        assert [e.detail for e in export_entries(member)] == [{"action": "tenancy:"}]
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
