"""Realistic data for the every-page checks: what a busy MSP's portal holds, built through the
services (and the demo's seeding) under slugs of this run, and removed afterwards.

Three tenants: one full of people (every user status, roles, a tenant-defined role, MFA,
sessions, devices, sign-in history, pending invitation and reset links, self-registration on,
an MFA policy in its grace period, consent purposes of every kind with answers), one smaller, suspended after seeding, and one deleted in its
grace period. Staff of every role, support limited to two tenants, a deactivated member; mail
in the outbox; a failed job; platform audit entries of many kinds.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from portal.accounts import invitations, lifecycle, links, settings
from portal.accounts.models import Role, TokenPurpose, User, UserStatus
from portal.auth import services as auth
from portal.compliance import consent
from portal.compliance.audit import Actor
from portal.db import db
from portal.demo import seed_tenant_people
from portal.mail_models import OutboxMessage
from portal.staff.members import change_staff_role, create_staff, deactivate_staff
from portal.staff.models import StaffUser
from portal.staff.scope import set_staff_tenants
from portal.tenancy import services as tenancy
from portal.tenancy.models import Tenant
from tests.conftest import PASSWORD, purge, unique_slug

ACTOR = Actor.system("realistic-data")


@dataclass
class Realistic:
    """Ids, slugs and one-time tokens the page checks need to build their URLs."""

    main: Tenant | None = None  # full of people; its admin is signed in for the site pages
    small: Tenant | None = None  # suspended
    gone: Tenant | None = None  # deleted, in its grace period
    slugs: list[str] = field(default_factory=list)
    admin_email: str = ""
    user_pages: dict[str, int] = field(default_factory=dict)  # what the page shows -> user id
    custom_role: str = ""
    invitation_token: str = ""
    reset_token: str = ""
    mfa_email: str = ""  # an active user with MFA, for the second sign-in step
    support_id: int = 0  # support staff limited to two tenants
    staff_email: str = ""  # a staff member with MFA (tests.conftest.PASSWORD)
    admin_staff_id: int = 0
    outbox_id: int = 0
    failed_job_id: str = ""
    staff_ids: list[int] = field(default_factory=list)
    consent_purposes: list[str] = field(default_factory=list)  # reworded, archived, required
    consent_user: int = 0  # a user with consent history, behind on one purpose


def build(make_staff) -> Realistic:
    data = Realistic()
    try:
        _tenants(data)
        _people(data)
        _staff(data, make_staff)
        _failed_job(data)
    except BaseException:
        remove(data)
        raise
    return data


def _tenants(data: Realistic) -> None:
    specs = (
        ("main", "Northwind Traders", 80, ["northwind-portal.example.com"]),
        ("small", "Contoso Health", 25, []),
        ("gone", "Fabrikam Retail", None, []),
    )
    for attr, name, max_users, domains in specs:
        slug = unique_slug("pages")
        data.slugs.append(slug)
        with db.platform_scope() as session:
            tenant = tenancy.create_tenant(
                session,
                slug=slug,
                name=name,
                actor=ACTOR,
                base_domain="localhost",
                domains=domains,
                max_users=max_users,
            )
        setattr(data, attr, tenant)
    with db.platform_scope() as session:  # audit entries of many kinds, tenants in their targets
        main = session.get(Tenant, data.main.id)
        tenancy.rename_tenant(session, main, name="Northwind Traders Ltd", actor=ACTOR)
        tenancy.update_limits(session, main, actor=ACTOR, api_requests_per_minute=600)
        tenancy.add_domain(
            session, main, "northwind.example.org", actor=ACTOR, base_domain="localhost"
        )
        gone = session.get(Tenant, data.gone.id)
        tenancy.delete_tenant(session, gone, actor=ACTOR, grace_days=30)
    data.main = _reload(data.main.id)
    data.gone = _reload(data.gone.id)


def _reload(tenant_id: int) -> Tenant:
    with db.platform_scope() as session:
        return session.get(Tenant, tenant_id)


def _people(data: Realistic) -> None:
    base_url = f"http://{data.main.slug}.localhost"
    with db.tenant_scope(data.main) as session:
        seed_tenant_people(session, data.main, members=40, actor=ACTOR)
        settings.update_security_settings(
            session, actor=ACTOR, mfa_policy="admins", mfa_grace_days=14, self_registration=True
        )
        invited = invitations.invite_user(
            session,
            email=f"new.starter@{data.main.slug}.example",
            name="New Starter",
            role_keys=["compliance_officer"],
            actor=ACTOR,
            base_url=base_url,
        )
        data.invitation_token = links.issue_token(session, invited, TokenPurpose.INVITATION, 72)
        alex = lifecycle.find_user(session, f"alex@{data.main.slug}.example")
        data.reset_token = links.issue_token(session, alex, TokenPurpose.PASSWORD_RESET, 1)
        auth.request_password_reset(
            session, f"compliance@{data.main.slug}.example", actor=ACTOR, base_url=base_url
        )
        data.custom_role = session.scalar(select(Role.key).order_by(Role.id).limit(1)) or ""

        def first(*conditions) -> int:
            return session.scalar(select(User.id).where(*conditions).order_by(User.id).limit(1))

        with_mfa = User.mfa_enabled_at.is_not(None)
        data.user_pages = {
            "active, with sessions": first(User.email == f"compliance@{data.main.slug}.example"),
            "active, with MFA": first(User.status == UserStatus.ACTIVE, with_mfa),
            "invited": invited.id,
            "suspended, with MFA": first(User.status == UserStatus.SUSPENDED, with_mfa),
            "suspended": first(User.status == UserStatus.SUSPENDED),
            "deleted": first(User.status == UserStatus.DELETED),
        }
        # The seed draws MFA at random; a status it did not combine with MFA is left out.
        data.user_pages = {what: i for what, i in data.user_pages.items() if i is not None}
        _consents(session, data)
        data.mfa_email = session.scalar(
            select(User.email)
            .where(User.status == UserStatus.ACTIVE, User.mfa_enabled_at.is_not(None))
            .order_by(User.id)
            .limit(1)
        )
    data.admin_email = f"admin@{data.main.slug}.example"
    with db.tenant_scope(data.small) as session:
        seed_tenant_people(session, data.small, members=12, actor=ACTOR)
    with db.platform_scope() as session:
        small = session.get(Tenant, data.small.id)
        tenancy.suspend_tenant(session, small, actor=ACTOR, reason="Invoice overdue since March")
    data.small = _reload(data.small.id)
    with db.platform_scope() as session:
        data.outbox_id = session.scalar(
            select(OutboxMessage.id)
            .where(OutboxMessage.tenant_slug == data.main.slug)
            .order_by(OutboxMessage.id)
            .limit(1)
        )


def _consents(session, data: Realistic) -> None:
    """Beside the demo's purposes and answers: a reworded purpose (version 2, which the
    suspended people answered only in version 1) and an archived one."""
    news = consent.get_purpose(session, "product_news", lock=True)
    consent.update_purpose(
        session,
        news,
        title=news.title,
        description=news.description + "\n\nNow also announcements of training sessions.",
        required=False,
        lawful_basis=news.lawful_basis,
        actor=ACTOR,
    )
    people = session.execute(
        select(User.id).where(User.status == UserStatus.ACTIVE).order_by(User.id)
    ).all()
    consent.import_answers(
        session,
        "product_news",
        granted=[row.id for i, row in enumerate(people) if i % 3 == 0],
        withdrawn=[row.id for i, row in enumerate(people) if i % 3],
        actor=ACTOR,
    )
    consent.define_purpose(
        session,
        key="partner_offers",
        title="Offers from partners",
        description="Partners' offers, sent by us.",
        actor=ACTOR,
    )
    consent.archive_purpose(session, consent.get_purpose(session, "partner_offers"), actor=ACTOR)
    data.consent_purposes = ["product_news", "partner_offers", "terms"]
    data.consent_user = session.scalar(  # answered product_news in version 1 only
        select(User.id).where(User.status == UserStatus.SUSPENDED).order_by(User.id).limit(1)
    )


def _staff(data: Realistic, make_staff) -> None:
    support = make_staff("support")
    compliance = make_staff("compliance")
    leaver = make_staff("support")
    admin = make_staff("platform_admin")
    data.support_id, data.admin_staff_id = support.id, admin.id
    data.staff_email = support.email
    with db.platform_scope() as session:
        member = session.get(StaffUser, support.id, with_for_update=True)
        set_staff_tenants(
            session,
            member,
            all_tenants=False,
            tenant_ids=[data.main.id, data.small.id],
            actor=ACTOR,
        )
        other = session.get(StaffUser, compliance.id, with_for_update=True)
        set_staff_tenants(session, other, all_tenants=False, tenant_ids=[data.main.id], actor=ACTOR)
        change_staff_role(session, session.get(StaffUser, leaver.id), "compliance", actor=ACTOR)
        deactivate_staff(session, session.get(StaffUser, leaver.id), actor=ACTOR)
    # A staff member with a name, as the demo makes them.
    with db.platform_scope() as session:
        named = create_staff(
            session,
            email=f"dana-{secrets.token_hex(4)}@msp.example",
            name="Dana Whitfield",
            role="support",
            password=PASSWORD,
            actor=ACTOR,
        )
        data.staff_ids.append(named.id)


def _failed_job(data: Realistic) -> None:
    """A job that failed on the default queue, as the Jobs page lists them (a real RQ worker)."""
    from rq import SimpleWorker

    from portal.queue import queues

    queue = queues.get("default")
    job = queue.enqueue("math.sqrt", -1, description="realistic-data failing job")
    data.failed_job_id = job.id
    SimpleWorker([queue], connection=queues.redis).work(burst=True)


def remove(data: Realistic) -> None:
    if data.failed_job_id:
        from rq.job import Job
        from rq.registry import FailedJobRegistry

        from portal.queue import queues

        FailedJobRegistry(queue=queues.get("default")).remove(data.failed_job_id)
        if Job.exists(data.failed_job_id, queues.redis):
            Job.fetch(data.failed_job_id, connection=queues.redis).delete()
    with db.platform_scope() as session:
        if data.slugs:
            session.execute(delete(OutboxMessage).where(OutboxMessage.tenant_slug.in_(data.slugs)))
        for staff_id in data.staff_ids:
            member = session.get(StaffUser, staff_id)
            if member is not None:
                session.delete(member)
    for slug in data.slugs:
        purge(slug)
