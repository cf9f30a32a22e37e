"""Consent pages: the compliance officer's purposes, a purpose's versions, a user's history;
My account → Consents with one-click grant and withdraw; the gate after sign-in."""

from __future__ import annotations

import json
import re

import pytest

from portal.accounts.models import User
from portal.compliance import consent
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.site.support import SYSTEM, audit_entries, body, host, htmx, make_user, open_tenant


def define(tenant, key="analytics", *, required=False, title="Product analytics"):
    with db.tenant_scope(tenant) as session:
        consent.define_purpose(
            session,
            key=key,
            title=title,
            description="We count which pages you use.",
            required=required,
            lawful_basis="contract" if required else "consent",
            actor=SYSTEM,
        )


def grant(tenant, user, key="analytics"):
    with db.tenant_scope(tenant) as session:
        consent.grant_consent(
            session, session.get(User, user.id), key, actor=SYSTEM, source="admin"
        )


def history(tenant, user):
    with db.tenant_scope(tenant) as session:
        return [(h.record.purpose_key, h.record.action) for h in consent.history(session, user.id)]


@pytest.fixture
def officer(tenant, client, sign_in_site):
    return sign_in_site(tenant, make_user(tenant, ["compliance_officer"], name="Cora Officer"))


# ---- who may see what ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/consent",
        "/consent/new",
        "/consent/purposes/analytics",
        "/users/1/consents",
        "/account/consents",
    ],
)
def test_signed_out_consent_pages_redirect_to_sign_in(client, tenant, path):
    response = client.get(path, headers=host(tenant))
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


def test_a_member_gets_403_on_the_officers_pages(client, tenant, sign_in_site):
    define(tenant)
    member = sign_in_site(tenant, make_user(tenant))
    grant(tenant, member)
    for path in ("/consent", "/consent/new", "/consent/purposes/analytics"):
        assert client.get(path, headers=host(tenant)).status_code == 403, path
    assert client.get(f"/users/{member.id}/consents", headers=host(tenant)).status_code == 403
    for path in (
        "/consent/new",
        "/consent/purposes/analytics",
        "/consent/purposes/analytics/archive",
    ):
        assert client.post(path, data={"title": "X"}, headers=host(tenant)).status_code == 403, path


def test_a_compliance_officer_reads_but_does_not_manage(client, tenant, officer):
    define(tenant)
    grant(tenant, officer)
    page = client.get("/consent", headers=host(tenant))
    assert page.status_code == 200 and "Product analytics" in body(page)
    assert 'href="/consent"' in body(page)  # the nav link
    assert "Define purpose" not in body(page)
    assert client.get("/consent/purposes/analytics", headers=host(tenant)).status_code == 200
    assert client.get("/consent/new", headers=host(tenant)).status_code == 403
    response = client.post(
        "/consent/purposes/analytics",
        data={"title": "X", "description": "y", "lawful_basis": "consent"},
        headers=host(tenant),
    )
    assert response.status_code == 403
    assert (
        client.post("/consent/purposes/analytics/archive", headers=host(tenant)).status_code == 403
    )


def test_another_tenants_user_and_unknown_purposes_are_404(client, make_tenant, tenant, admin):
    other = make_tenant()
    for _ in range(5):
        stranger = make_user(other)
    with db.tenant_scope(tenant) as session:
        assert session.get(User, stranger.id) is None
    assert client.get(f"/users/{stranger.id}/consents", headers=host(tenant)).status_code == 404
    assert client.get("/users/99999999999/consents", headers=host(tenant)).status_code == 404
    define(other, "only_there", title="Only there")
    for path in ("/consent/purposes/only_there", "/consent/purposes/Bad%20Key"):
        assert client.get(path, headers=host(tenant)).status_code == 404, path
    response = client.post("/consent/purposes/only_there/archive", headers=host(tenant))
    assert response.status_code == 404


# ---- the officer's pages ------------------------------------------------------------------


def test_purposes_list_shows_counts_and_rates(client, tenant, admin):
    define(tenant)
    grant(tenant, admin)
    make_user(tenant)  # a second person, not answered
    html = body(client.get("/consent", headers=host(tenant)))
    row = re.search(r"<tr>\s*<td>\s*<a[^>]*>Product analytics</a>.*?</tr>", html, re.S).group(0)
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]
    assert cells[2:] == ["1", "1", "50%", "0", "0", "1"]


def test_empty_purposes_list_says_what_to_do(client, tenant, admin):
    html = body(client.get("/consent", headers=host(tenant)))
    assert "No purposes yet" in html and 'href="/consent/new"' in html


def test_admin_defines_a_purpose(client, tenant, admin):
    response = client.post(
        "/consent/new",
        data={
            "key": "newsletter",
            "title": "Monthly newsletter",
            "description": "One email a month about new features.",
            "lawful_basis": "consent",
        },
        headers=host(tenant),
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/consent/purposes/newsletter")
    (entry,) = audit_entries(tenant, AuditAction.CONSENT_PURPOSE_CREATE)
    assert entry.actor_id == str(admin.id) and entry.target_id == "newsletter"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key": "Not A Key", "title": "Newsletter", "description": "d"}, "lower-case letters"),
        ({"key": "newsletter", "title": "", "description": "d"}, "Give the purpose a title"),
        ({"key": "newsletter", "title": "Newsletter", "description": ""}, "Describe what"),
        ({"key": "analytics", "title": "Newsletter", "description": "d"}, "already exists"),
    ],
)
def test_bad_purpose_input_gets_422_with_a_message(client, tenant, admin, data, message):
    define(tenant)
    grant(tenant, admin)  # answered, so the gate lets the admin through
    response = client.post(
        "/consent/new", data={"lawful_basis": "consent", **data}, headers=host(tenant)
    )
    assert response.status_code == 422 and message in body(response)


def test_rewording_a_purpose_makes_version_two_and_shows_both(client, tenant, admin):
    define(tenant)
    grant(tenant, admin)  # answered, so the gate lets the admin through
    response = client.post(
        "/consent/purposes/analytics",
        data={
            "title": "Product analytics",
            "description": "We count pages and buttons.",
            "lawful_basis": "consent",
        },
        headers=htmx(tenant),
    )
    assert response.status_code == 204 and "HX-Location" in response.headers
    grant(tenant, admin)  # the admin too is asked about the new words
    html = body(client.get("/consent/purposes/analytics", headers=host(tenant)))
    assert "version 2" in html and "Version 1: Product analytics" in html
    assert "We count which pages you use." in html  # the old words are kept


def test_archiving_a_purpose(client, tenant, admin):
    define(tenant)
    grant(tenant, admin)  # answered, so the gate lets the admin through
    response = client.post("/consent/purposes/analytics/archive", headers=host(tenant))
    assert response.status_code == 303
    assert "archived" in body(client.get("/consent", headers=host(tenant)))
    (entry,) = audit_entries(tenant, AuditAction.CONSENT_PURPOSE_ARCHIVE)
    assert entry.target_id == "analytics"


def test_user_page_links_to_the_users_consent_history(client, tenant, officer):
    define(tenant)
    grant(tenant, officer)
    person = make_user(tenant, name="Pat Person")
    grant(tenant, person)
    user_page = body(client.get(f"/users/{person.id}", headers=host(tenant)))
    assert f'href="/users/{person.id}/consents"' in user_page
    html = body(client.get(f"/users/{person.id}/consents", headers=host(tenant)))
    assert "Consents of Pat Person" in html and "Product analytics" in html and "admin" in html


def test_purpose_forms_refuse_a_missing_csrf_token(app, client, tenant, admin):
    define(tenant)
    grant(tenant, admin)  # answered, so the gate lets the admin through
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = client.post(
            "/consent/new",
            data={"key": "x_y", "title": "Title", "description": "d", "lawful_basis": "consent"},
            headers=host(tenant),
        )
        assert response.status_code == 400
        assert (
            client.post("/consent/purposes/analytics/archive", headers=host(tenant)).status_code
            == 400
        )
        response = client.post(
            "/account/consents/analytics/grant", data={"version": "1"}, headers=host(tenant)
        )
        assert response.status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    with db.tenant_scope(tenant) as session:
        assert [p.key for p in consent.purposes(session)] == ["analytics"]
        assert len(consent.history(session, admin.id)) == 1  # only the grant made above


# ---- My account → Consents ----------------------------------------------------------------


def test_my_consents_grant_and_withdraw_with_one_click_each(client, tenant, sign_in_site):
    user = sign_in_site(tenant, make_user(tenant))
    define(tenant)
    grant(tenant, user)  # answered already, so the gate lets the page through
    page = body(client.get("/account/consents", headers=host(tenant)))
    assert "You agreed" in page and "Withdraw" in page
    response = client.post(
        "/account/consents/analytics/withdraw", data={"version": "1"}, headers=htmx(tenant)
    )
    assert response.status_code == 200
    assert response.get_data(as_text=True).lstrip().startswith('<div id="consents-panel"')
    assert json.loads(response.headers["HX-Trigger"])["toast"] == "You withdrew Product analytics"
    response = client.post(
        "/account/consents/analytics/grant", data={"version": "1"}, headers=host(tenant)
    )
    assert response.status_code == 303
    assert history(tenant, user) == [
        ("analytics", "granted"),
        ("analytics", "withdrawn"),
        ("analytics", "granted"),
    ]
    (entry,) = audit_entries(tenant, AuditAction.CONSENT_WITHDRAW)
    assert entry.actor_id == str(user.id) and entry.detail["source"] == "web"


def test_answering_words_that_changed_meanwhile_gets_422(client, tenant, sign_in_site):
    user = sign_in_site(tenant, make_user(tenant))
    define(tenant)
    grant(tenant, user)
    with db.tenant_scope(tenant) as session:
        purpose = consent.get_purpose(session, "analytics", lock=True)
        consent.update_purpose(
            session,
            purpose,
            title="Product analytics and surveys",
            description=purpose.description,
            required=False,
            lawful_basis="consent",
            actor=SYSTEM,
        )
    response = client.post(
        "/account/consents/analytics/withdraw", data={"version": "1"}, headers=host(tenant)
    )
    assert response.status_code == 422 and "has changed since you read it" in body(response)
    response = client.post(
        "/account/consents/analytics/withdraw", data={"version": "x"}, headers=host(tenant)
    )
    assert response.status_code == 422 and "incomplete" in body(response)
    assert history(tenant, user) == [("analytics", "granted")]


def test_unknown_purposes_are_404_on_my_consents(client, tenant, sign_in_site):
    sign_in_site(tenant, make_user(tenant))
    for key in ("nope", "Bad%20Key"):
        response = client.post(
            f"/account/consents/{key}/grant", data={"version": "1"}, headers=host(tenant)
        )
        assert response.status_code == 404, key


def test_staff_visits_have_no_consents_of_their_own(client, tenant, sign_in_as):
    define(tenant, "terms", required=True, title="Terms of service")
    sign_in_as("platform_admin")
    open_tenant(client, tenant)
    assert client.get("/users", headers=host(tenant)).status_code == 200  # not gated
    assert client.get("/consent", headers=host(tenant)).status_code == 200
    response = client.get("/account/consents", headers=host(tenant))
    assert response.status_code == 302 and response.headers["Location"].endswith("/users")


# ---- the gate after sign-in ---------------------------------------------------------------


def test_pending_purposes_come_before_anything_else_after_sign_in(client, tenant, sign_in_site):
    define(tenant, "terms", required=True, title="Terms of service")
    define(tenant)
    user = sign_in_site(tenant, make_user(tenant, ["tenant_admin"]))
    response = client.get("/users?q=x", headers=host(tenant))
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/consents?next=/users?q%3Dx"
    fragment = client.get("/users", headers=htmx(tenant))
    assert fragment.status_code == 204 and fragment.headers["HX-Redirect"].startswith(
        "/account/consents"
    )
    page = body(client.get("/account/consents?next=/users", headers=host(tenant)))
    assert "Answer needed" in page and "Decline" in page
    # Declining the optional purpose answers it; the required one still holds the gate.
    response = client.post(
        "/account/consents/analytics/withdraw?next=/users",
        data={"version": "1"},
        headers=host(tenant),
    )
    assert response.status_code == 303 and response.headers["Location"].startswith(
        "/account/consents"
    )
    assert client.get("/users", headers=host(tenant)).status_code == 302
    response = client.post(
        "/account/consents/terms/grant?next=/users", data={"version": "1"}, headers=host(tenant)
    )
    assert response.status_code == 303 and response.headers["Location"] == "/users"
    assert client.get("/users", headers=host(tenant)).status_code == 200
    assert history(tenant, user) == [("terms", "granted"), ("analytics", "withdrawn")]


def test_a_new_version_asks_again_at_the_next_request(client, tenant, sign_in_site):
    define(tenant)
    user = sign_in_site(tenant, make_user(tenant))
    grant(tenant, user)
    assert client.get("/account", headers=host(tenant)).status_code == 200
    with db.tenant_scope(tenant) as session:
        purpose = consent.get_purpose(session, "analytics", lock=True)
        consent.update_purpose(
            session,
            purpose,
            title=purpose.title,
            description="New words.",
            required=False,
            lawful_basis="consent",
            actor=SYSTEM,
        )
    response = client.get("/account", headers=host(tenant))
    assert response.status_code == 302 and "/account/consents" in response.headers["Location"]
    assert "Changed since you answered" in body(
        client.get("/account/consents", headers=host(tenant))
    )


def test_the_gate_never_leads_off_site(client, tenant, sign_in_site):
    define(tenant, "terms", required=True, title="Terms of service")
    sign_in_site(tenant, make_user(tenant))
    response = client.post(
        "/account/consents/terms/grant?next=//evil.example/x",
        data={"version": "1"},
        headers=host(tenant),
    )
    assert response.status_code == 303 and "evil" not in response.headers["Location"]
