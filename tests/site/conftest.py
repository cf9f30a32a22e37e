"""Tenant-site fixtures: users made through the services, signed in through the real form."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from portal.accounts import lifecycle
from portal.compliance.audit import Actor
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from tests.conftest import PASSWORD


def host(tenant) -> dict[str, str]:
    return {"Host": f"{tenant.slug}.localhost"}


def htmx(tenant) -> dict[str, str]:
    return {**host(tenant), "HX-Request": "true"}


def audit_entries(tenant, action, target_id=None) -> list[TenantAuditEntry]:
    """The tenant's audit entries of `action` (about user `target_id`), newest first."""
    with db.tenant_scope(tenant) as session:
        query = select(TenantAuditEntry).where(TenantAuditEntry.action == action)
        if target_id is not None:
            query = query.where(TenantAuditEntry.target_id == str(target_id))
        return list(session.scalars(query.order_by(TenantAuditEntry.seq.desc())))


@pytest.fixture
def site_user():
    """Create a user in `tenant` with a password and `roles`; returns the (detached) row."""

    def make(tenant, roles=(), *, email=None, name="", password=PASSWORD, status="active"):
        email = email or f"user-{secrets.token_hex(4)}@example.com"
        with db.tenant_scope(tenant) as session:
            return lifecycle.create_user(
                session,
                email=email,
                name=name,
                password=password,
                status=status,
                role_keys=list(roles),
                actor=Actor.system("test"),
            )

    return make


@pytest.fixture
def sign_in_site(client):
    """Sign the test client in to `tenant`'s site as `user` (without MFA)."""

    def sign_in(tenant, user, password=PASSWORD, *, client=client):
        response = client.post(
            "/sign-in", data={"email": user.email, "password": password}, headers=host(tenant)
        )
        assert response.status_code == 303, response.get_data(as_text=True)[:500]
        return user

    return sign_in


@pytest.fixture
def admin(tenant, site_user, sign_in_site):
    """A tenant admin of `tenant`, signed in."""
    return sign_in_site(tenant, site_user(tenant, ["tenant_admin"], name="Ada Admin"))
