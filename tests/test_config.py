"""Settings from the environment; production refuses unsafe ones (O3)."""

import pytest

from portal.config import DEFAULT_SECRET_KEY, ConfigError, load_settings


def test_production_refuses_the_default_secret(monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="32"):
        load_settings()


def test_production_starts_with_a_real_secret(monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("STORAGE_MASTER_KEY", "k" * 43 + "=")
    settings = load_settings()
    assert settings.production and settings.secret_key != DEFAULT_SECRET_KEY


def test_unknown_environment_and_bad_numbers_are_clear_errors(monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "staging")
    with pytest.raises(ConfigError, match="PORTAL_ENV"):
        load_settings()
    monkeypatch.setenv("PORTAL_ENV", "development")
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT must be an integer"):
        load_settings()


def test_dotenv_file_is_read_without_overriding_the_environment(monkeypatch, tmp_path):
    env = tmp_path / ".env"
    env.write_text("PORTAL_BASE_DOMAIN=portal.msp.example\nPORT=6001\n")
    monkeypatch.setenv("PORTAL_DOTENV", str(env))
    monkeypatch.setenv("PORT", "7000")
    monkeypatch.delenv("PORTAL_BASE_DOMAIN", raising=False)
    settings = load_settings()
    assert settings.base_domain == "portal.msp.example" and settings.port == 7000


def test_cli_reports_a_bad_configuration_in_one_line(run_cli, monkeypatch):
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    result = run_cli("tenants", "list")
    assert result.exit_code == 2
    assert "SECRET_KEY" in result.output and "Traceback" not in result.output
