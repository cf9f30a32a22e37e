"""Operational endpoints: /healthz on every host; /readyz and /metrics on the base domain only,
/metrics behind a bearer token or an address allow-list (issue 11 §6)."""

import dataclasses

import pytest

from portal.config import ConfigError, load_settings

BASE = {"Host": "localhost"}
OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def settings(app):
    """Change the app's settings for one test: settings(metrics_token="...")."""
    original = app.config["PORTAL"]

    def change(**fields):
        app.config["PORTAL"] = dataclasses.replace(original, **fields)

    yield change
    app.config["PORTAL"] = original


def test_healthz_answers_on_tenant_hosts_too(client, make_tenant):
    tenant = make_tenant(domains=["ops-probe.example.com"])
    for host in (f"{tenant.slug}.localhost", "ops-probe.example.com", "localhost"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200


def test_readyz_and_metrics_answer_404_on_a_tenant_host_and_its_custom_domain(client, make_tenant):
    tenant = make_tenant(domains=["ops-custom.example.com"])
    for host in (f"{tenant.slug}.localhost", "ops-custom.example.com"):
        for path in ("/readyz", "/metrics"):
            response = client.get(path, headers={"Host": host})
            assert response.status_code == 404, (host, path)
            body = response.data.decode()
            assert "Page not found" in body and "portal_request_duration" not in body


def test_readyz_and_metrics_answer_404_on_an_unknown_host(client):
    for path in ("/readyz", "/metrics"):
        assert client.get(path, headers={"Host": "nobody.example.net"}).status_code == 404


def test_metrics_from_loopback_without_a_token_are_served_on_the_base_domain(client):
    response = client.get("/metrics", headers=BASE)
    assert response.status_code == 200 and b"portal_request_duration_seconds" in response.data


def test_metrics_from_another_address_are_refused_unless_allowed(client, settings):
    refused = client.get("/metrics", headers=BASE, environ_base=OUTSIDE)
    assert refused.status_code == 403 and b"portal_" not in refused.data
    settings(metrics_allow=("203.0.113.0/24",))
    allowed = client.get("/metrics", headers=BASE, environ_base=OUTSIDE)
    assert allowed.status_code == 200 and b"portal_tenants" in allowed.data


def test_with_a_token_metrics_need_it_whatever_the_address(client, settings):
    settings(metrics_token="scrape-secret-0123456789")
    for headers in (
        BASE,
        {**BASE, "Authorization": "Bearer wrong"},
        {**BASE, "Authorization": "scrape-secret-0123456789"},
    ):
        response = client.get("/metrics", headers=headers)  # from loopback, even
        assert response.status_code == 401 and b"portal_" not in response.data
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    good = {**BASE, "Authorization": "Bearer scrape-secret-0123456789"}
    response = client.get("/metrics", headers=good, environ_base=OUTSIDE)
    assert response.status_code == 200 and b"portal_request_duration_seconds" in response.data


def test_a_malformed_metrics_allow_list_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("METRICS_ALLOW", "10.0.0.0/8, not-an-address")
    with pytest.raises(ConfigError, match="METRICS_ALLOW: 'not-an-address'"):
        load_settings()
    monkeypatch.setenv("METRICS_ALLOW", "10.0.0.0/8, 2001:db8::/32")
    assert load_settings().metrics_allow == ("10.0.0.0/8", "2001:db8::/32")


def test_production_refuses_to_serve_as_the_owner_of_the_tables(monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("STORAGE_MASTER_KEY", "k" * 43 + "=")
    monkeypatch.setenv("DATABASE_URL", "postgresql://portal@db.internal/portal")
    monkeypatch.delenv("DATABASE_OWNER_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_OWNER_URL"):
        load_settings()
    monkeypatch.setenv("DATABASE_OWNER_URL", "postgresql://portal@db.internal/portal")
    with pytest.raises(ConfigError, match="DATABASE_OWNER_URL"):
        load_settings()
    monkeypatch.setenv("DATABASE_OWNER_URL", "postgresql://portal_owner@db.internal/portal")
    settings = load_settings()
    assert settings.database_owner_url.startswith("postgresql://portal_owner@")
