"""Max users is enforced atomically under concurrency (T5)."""

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from portal.accounts.lifecycle import create_user
from portal.accounts.models import User
from portal.accounts.validation import QuotaExceeded
from portal.compliance.audit import Actor
from portal.db import db
from portal.tenancy.routing import TenantRef


def ref(tenant):
    return TenantRef(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        status=tenant.status,
        suspended_reason=None,
        max_users=tenant.max_users,
    )


def test_twenty_concurrent_creations_against_max_users_ten_create_exactly_ten(make_tenant):
    tenant = make_tenant(max_users=10)
    scope = ref(tenant)

    def attempt(i):
        try:
            with db.tenant_scope(scope) as session:
                create_user(session, email=f"user{i}@quota.example", actor=Actor.system("test"))
            return "created"
        except QuotaExceeded:
            return "refused"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("created") == 10
    assert outcomes.count("refused") == 10
    with db.tenant_scope(scope) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 10


def test_quota_refusal_leaves_no_user_and_no_audit_entry(make_tenant):
    from portal.compliance.models import TenantAuditEntry

    tenant = make_tenant(max_users=0)
    try:
        with db.tenant_scope(ref(tenant)) as session:
            create_user(session, email="late@quota.example", actor=Actor.system("test"))
    except QuotaExceeded as exc:
        assert "limit of 0 users" in str(exc)
    with db.tenant_scope(ref(tenant)) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
        assert session.scalar(select(func.count()).select_from(TenantAuditEntry)) == 0
