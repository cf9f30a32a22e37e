"""portal.accounts.settings: security settings changes audited, limits refused, a tightened MFA
policy starting its grace period."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.accounts import settings
from portal.accounts.validation import AccountError
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.accounts.support import (
    SYSTEM,
    entries,
)

# ---- security settings --------------------------------------------------------------------


def test_security_settings_changes_are_audited_and_tightening_starts_the_clock(tenant):
    with db.tenant_scope(tenant) as session:
        assert settings.update_security_settings(
            session, actor=SYSTEM, mfa_policy="everyone", mfa_grace_days=3
        )
        assert not settings.update_security_settings(session, actor=SYSTEM, mfa_grace_days=3)
        current = settings.security_settings(session)
        assert current.mfa_policy_since is not None
        assert settings.mfa_deadline(current) == current.mfa_policy_since + timedelta(days=3)
        [entry] = entries(session, AuditAction.SECURITY_SETTINGS_UPDATE)
    assert entry.detail["before"] == {"mfa_policy": "off", "mfa_grace_days": 7}
    assert entry.detail["after"]["mfa_policy"] == "everyone"


@pytest.mark.parametrize(
    "changes",
    [
        {"password_min_length": 7},
        {"password_min_length": 65},
        {"idle_timeout_minutes": 600, "absolute_timeout_minutes": 60},
        {"mfa_policy": "sometimes"},
        {"colour": "blue"},
    ],
)
def test_security_settings_refuse_values_out_of_range(tenant, changes):
    with db.tenant_scope(tenant) as session:
        with pytest.raises(AccountError):
            settings.update_security_settings(session, actor=SYSTEM, **changes)
        assert not entries(session, AuditAction.SECURITY_SETTINGS_UPDATE)
