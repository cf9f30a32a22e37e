"""Fixtures: real PostgreSQL and Redis (embedded by default, or TEST_DATABASE_URL/TEST_REDIS_URL),
the app and its test client, fresh tenants per test, and signed-in staff."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import embedded
from portal.compliance.audit import Actor
from portal.db import db

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = Path(os.environ.get("PORTAL_INSTANCE_PATH") or ROOT / "instance")
PASSWORD = "correct horse battery staple"
# The TOTP secret `make_staff` enrols every staff member with (STAFF_MFA_REQUIRED is on).
STAFF_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
SECRET = "test-secret-key-" + "x" * 32


@pytest.fixture(scope="session")
def urls():
    """Database and Redis URLs for the whole run, starting the embedded servers if needed.

    TEST_DATABASE_URL (or the embedded server) is the owner role; the app serves requests and
    jobs as the runtime role derived from the database's name, as in production, so every
    test proves the runtime role's privileges suffice."""
    from portal.db import ensure_runtime_role

    owner = os.environ.get("TEST_DATABASE_URL") or embedded.postgres_url(INSTANCE, "portal_test")
    database = ensure_runtime_role(owner)
    # A Redis of the tests' own (not the one `portal dev` may be running), stopped at the end.
    redis = os.environ.get("TEST_REDIS_URL") or embedded.redis_url(
        INSTANCE, filename="redis-test.db"
    )
    yield {"database_url": database, "database_owner_url": owner, "redis_url": redis}
    from portal.queue import queues

    db.dispose()
    queues.close()
    embedded.stop_redis(force=True)


@pytest.fixture(scope="session")
def app(urls):
    from portal import create_app
    from portal.tenancy.migrations import migrate_tenants, upgrade_platform

    application = create_app({**urls, "secret_key": SECRET})
    upgrade_platform()
    migrate_tenants(jobs=2)
    application.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    return application


@pytest.fixture(autouse=True)
def _clear_sign_in_throttle(request):
    """Every test starts with no sign-in failures or flood refusals counted (all test clients
    share 127.0.0.1)."""
    if "app" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("app")
    from portal.auth.flood import forget_refused
    from portal.queue import queues

    keys = list(queues.redis.scan_iter("throttle:*"))
    if keys:
        queues.redis.delete(*keys)
    forget_refused()  # this process's memory of addresses the sign-in flood limit refused
    yield


@pytest.fixture
def client(app):
    app.config["WTF_CSRF_ENABLED"] = False
    return app.test_client()


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def purge(slug: str) -> None:
    from portal.tenancy import routing
    from portal.tenancy.models import Tenant
    from portal.tenancy.services import drop_schema

    with db.platform_scope() as session:
        drop_schema(session, slug)
        tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
        if tenant is not None:
            session.delete(tenant)
    routing.invalidate()


@pytest.fixture
def make_tenant(app):
    """Create tenants for this test; they are dropped (schema, role, row) afterwards."""
    from portal.tenancy.services import create_tenant

    created: list[str] = []

    def make(slug: str | None = None, name: str | None = None, **kwargs):
        slug = slug or unique_slug()
        created.append(slug)
        with db.platform_scope() as session:
            tenant = create_tenant(
                session,
                slug=slug,
                name=name or f"Tenant {slug}",
                actor=Actor.system("test"),
                base_domain="localhost",
                **kwargs,
            )
        return tenant

    yield make
    for slug in created:
        purge(slug)


@pytest.fixture
def tenant(make_tenant):
    return make_tenant()


def staff_code(member) -> str:
    """A TOTP code the staff member (enrolled with STAFF_TOTP_SECRET) has not used yet: the
    earliest step of the accepted window (±1 step) after the last one accepted. Up to three
    sign-ins of one member per 30 seconds."""
    import time

    import pyotp

    from portal.auth import mfa
    from portal.staff.models import StaffUser

    with db.platform_scope() as session:
        last = session.get(StaffUser, member.id).mfa_last_step
    current = int(time.time() // mfa.STEP_SECONDS)
    step = current - mfa.WINDOW if last is None else max(current - mfa.WINDOW, last + 1)
    if step > current + mfa.WINDOW:
        time.sleep((step - mfa.WINDOW) * mfa.STEP_SECONDS - time.time() + 0.1)
    return pyotp.TOTP(STAFF_TOTP_SECRET).generate_otp(step)


def sign_in_staff(client, member, *, password: str = PASSWORD, host: str = "localhost"):
    """Both steps of a staff sign-in with the test client; returns the last response."""
    first = client.post(
        "/sign-in", data={"email": member.email, "password": password}, headers={"Host": host}
    )
    if first.status_code != 303 or not first.location.endswith("/sign-in/verify"):
        return first
    return client.post("/sign-in/verify", data={"code": staff_code(member)}, headers={"Host": host})


@pytest.fixture
def make_staff(app):
    """Create staff members for this test, enrolled in MFA with STAFF_TOTP_SECRET unless
    `mfa=False`; they are deleted afterwards."""
    from portal.staff.members import create_staff
    from portal.staff.mfa import enrol_staff_mfa
    from portal.staff.models import StaffUser

    created: list[int] = []

    def make(role: str = "platform_admin", *, mfa: bool = True):
        email = f"staff-{secrets.token_hex(5)}@msp.example"
        with db.platform_scope() as session:
            member = create_staff(
                session, email=email, role=role, password=PASSWORD, actor=Actor.system("test")
            )
            if mfa:
                enrol_staff_mfa(session, member, STAFF_TOTP_SECRET, actor=Actor.system("test"))
            created.append(member.id)
        return member

    yield make
    with db.platform_scope() as session:
        for staff_id in created:
            member = session.get(StaffUser, staff_id)
            if member is not None:
                session.delete(member)


@pytest.fixture
def sign_in_as(client, make_staff):
    """Sign the test client in as a new staff member with `role` (both steps: password, then
    the TOTP code); returns the member."""

    def sign_in(role: str = "platform_admin"):
        member = make_staff(role)
        response = sign_in_staff(client, member)
        assert response.status_code == 303, response.data
        return member

    return sign_in


@pytest.fixture
def run_cli(urls):
    """Invoke `portal ...` in-process against the test database; returns click's Result."""
    from click.testing import CliRunner

    from portal.cli import cli

    runner = CliRunner()

    def run(*args, input=None):
        env = {
            "DATABASE_URL": urls["database_url"],
            "DATABASE_OWNER_URL": urls["database_owner_url"],
            "REDIS_URL": urls["redis_url"],
        }
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return run


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1 (aiosmtpd) for this test. Yields an object with `.host`,
    `.port`, `.messages` (each an `email.message.EmailMessage`), `.envelopes` (aiosmtpd's, with
    `mail_from` and `rcpt_tos`) and `.stop()` to take the server down mid-test."""
    import email
    import email.policy
    import socket

    from aiosmtpd.controller import Controller

    class Server:
        def __init__(self):
            self.host = "127.0.0.1"
            self.messages: list = []
            self.envelopes: list = []
            with socket.socket() as probe:  # a free port (aiosmtpd 1.4 cannot bind port 0)
                probe.bind((self.host, 0))
                self.port = probe.getsockname()[1]
            self.controller = Controller(self, hostname=self.host, port=self.port)

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            self.messages.append(
                email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            )
            return "250 Message accepted for delivery"

        def stop(self):
            if self.controller is not None:
                self.controller.stop()
                self.controller = None

    server = Server()
    server.controller.start()
    yield server
    server.stop()
