"""Security settings: MFA policy with grace days, session timeouts, self-registration and the
minimum password length."""

from __future__ import annotations

import json
import re

import pytest

from portal.accounts import settings
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.site.support import audit_entries, body, host, htmx

DEFAULTS = {
    "mfa_policy": "off",
    "mfa_grace_days": "7",
    "idle_timeout_minutes": "30",
    "absolute_timeout_minutes": "720",
    "password_min_length": "12",
}


def settings_of(tenant):
    with db.tenant_scope(tenant) as session:
        return settings.security_settings(session)


def test_signed_out_settings_redirect_to_sign_in(client, tenant):
    response = client.get("/settings/security", headers=host(tenant))
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
    response = client.post("/settings/security", data=DEFAULTS, headers=host(tenant))
    assert response.status_code == 302


@pytest.mark.parametrize("roles", [[], ["compliance_officer"]])
def test_without_security_permission_is_403(client, tenant, site_user, sign_in_site, roles):
    sign_in_site(tenant, site_user(tenant, roles))
    assert client.get("/settings/security", headers=host(tenant)).status_code == 403
    data = {**DEFAULTS, "password_min_length": "20"}
    assert client.post("/settings/security", data=data, headers=host(tenant)).status_code == 403
    assert settings_of(tenant).password_min_length == 12


def test_page_shows_the_defaults(client, tenant, admin):
    page = body(client.get("/settings/security", headers=host(tenant)))
    assert re.search(r'<input checked[^>]*value="off"', page)
    assert re.search(r'<input[^>]*name="idle_timeout_minutes"[^>]*value="30"', page)
    assert re.search(r'<input[^>]*name="absolute_timeout_minutes"[^>]*value="720"', page)
    assert re.search(r'<input[^>]*name="password_min_length"[^>]*value="12"', page)
    assert "Policy in force since" not in page


def test_saving_changes_is_audited_and_shows_the_policy_deadline(client, tenant, admin):
    data = {
        **DEFAULTS,
        "mfa_policy": "admins",
        "mfa_grace_days": "10",
        "idle_timeout_minutes": "15",
        "self_registration": "y",
        "password_min_length": "14",
    }
    response = client.post("/settings/security", data=data, headers=host(tenant))
    assert response.status_code == 303
    saved = settings_of(tenant)
    assert (saved.mfa_policy, saved.mfa_grace_days, saved.idle_timeout_minutes) == (
        "admins",
        10,
        15,
    )
    assert saved.self_registration is True and saved.password_min_length == 14
    assert saved.mfa_policy_since is not None
    [entry] = audit_entries(tenant, AuditAction.SECURITY_SETTINGS_UPDATE)
    assert entry.actor_id == str(admin.id)
    assert entry.detail["before"]["password_min_length"] == 12
    assert entry.detail["after"]["mfa_policy"] == "admins"
    page = body(client.get("/settings/security", headers=host(tenant)))
    assert "Security settings saved" in page
    assert "Policy in force since" in page and "must enrol by" in page


def test_saving_over_htmx_returns_the_form_with_a_toast(client, tenant, admin):
    data = {**DEFAULTS, "absolute_timeout_minutes": "600"}
    response = client.post("/settings/security", data=data, headers=htmx(tenant))
    assert response.status_code == 200
    assert json.loads(response.headers["HX-Trigger"]) == {"toast": "Security settings saved"}
    assert 'id="security-settings"' in body(response) and "<html" not in body(response)


def test_saving_nothing_new_says_so_and_writes_no_entry(client, tenant, admin):
    response = client.post("/settings/security", data=DEFAULTS, headers=htmx(tenant))
    assert json.loads(response.headers["HX-Trigger"])["toast"] == "Security settings unchanged"
    assert not audit_entries(tenant, AuditAction.SECURITY_SETTINGS_UPDATE)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"password_min_length": "7"}, "Enter a whole number from 8 to 64."),
        ({"password_min_length": "65"}, "Enter a whole number from 8 to 64."),
        ({"password_min_length": "twelve"}, "Enter a whole number from 8 to 64."),
        ({"idle_timeout_minutes": "4"}, "from 5 to 1440"),
        ({"mfa_grace_days": "91"}, "from 0 to 90"),
        ({"mfa_policy": "sometimes"}, "Not a valid choice"),
        (
            {"idle_timeout_minutes": "60", "absolute_timeout_minutes": "30"},
            "cannot be shorter than the idle timeout",
        ),
    ],
)
def test_bad_settings_are_422_with_the_message_inline(client, tenant, admin, change, message):
    response = client.post("/settings/security", data={**DEFAULTS, **change}, headers=host(tenant))
    assert response.status_code == 422
    assert message in body(response) and 'aria-invalid="true"' in body(response)
    assert settings_of(tenant).password_min_length == 12
    assert not audit_entries(tenant, AuditAction.SECURITY_SETTINGS_UPDATE)


def test_one_tenants_settings_do_not_touch_anothers(client, make_tenant, tenant, admin):
    other = make_tenant()
    data = {**DEFAULTS, "password_min_length": "30"}
    assert client.post("/settings/security", data=data, headers=host(tenant)).status_code == 303
    assert settings_of(other).password_min_length == 12


def test_settings_post_without_csrf_token_is_refused(app, client, tenant, admin):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        data = {**DEFAULTS, "password_min_length": "40"}
        response = client.post("/settings/security", data=data, headers=host(tenant))
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 400
    assert settings_of(tenant).password_min_length == 12
