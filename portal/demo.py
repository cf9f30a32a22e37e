"""Demo data for `portal dev`: a platform admin and three tenants, created once."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.accounts.models import UserStatus
from portal.accounts.services import create_user
from portal.compliance.audit import Actor
from portal.config import Settings
from portal.console.models import StaffUser
from portal.console.services import create_staff
from portal.db import db
from portal.tenancy.models import Tenant
from portal.tenancy.services import create_tenant

DEMO_PASSWORD = "demo-password-2026"
DEMO_ADMIN = "admin@msp.example"
DEMO_TENANTS = (
    ("acme", "Acme Corporation", 50),
    ("globex", "Globex", 25),
    ("initech", "Initech", 10),
)
DEMO_PEOPLE = ("Alex Morgan", "Sam Rivera", "Jordan Lee", "Taylor Kim", "Casey Brooks")


def seed_demo(settings: Settings) -> dict:
    """Create the demo staff admin and tenants unless they exist; return what to print."""
    actor = Actor.system("demo-seed")
    with db.platform_scope() as session:
        if not session.scalar(select(func.count()).select_from(StaffUser)):
            create_staff(
                session,
                email=DEMO_ADMIN,
                name="Demo Admin",
                role="platform_admin",
                password=DEMO_PASSWORD,
                actor=actor,
            )
            create_staff(
                session,
                email="support@msp.example",
                name="Demo Support",
                role="support",
                password=DEMO_PASSWORD,
                actor=actor,
            )
        existing = set(session.scalars(select(Tenant.slug)))
    created = []
    for slug, name, max_users in DEMO_TENANTS:
        if slug in existing:
            continue
        with db.platform_scope() as session:
            create_tenant(
                session,
                slug=slug,
                name=name,
                max_users=max_users,
                actor=actor,
                base_domain=settings.base_domain,
            )
        created.append(slug)
    for slug in created:
        with db.platform_scope() as session:
            tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).one()
        with db.tenant_scope(tenant) as session:
            for i, person in enumerate(DEMO_PEOPLE):
                email = f"{person.split()[0].lower()}@{slug}.example"
                create_user(
                    session,
                    email=email,
                    name=person,
                    actor=actor,
                    password=DEMO_PASSWORD if i == 0 else None,
                    status=UserStatus.ACTIVE if i == 0 else UserStatus.INVITED,
                )
    return {"admin": DEMO_ADMIN, "tenants": [slug for slug, _, _ in DEMO_TENANTS]}
