"""What the tenant-site tests share: request headers, a client bound to one tenant's host, users
made through the services and signed in through the real form, a staff visit, TOTP codes, the
audit trail, mail read back from the platform outbox, and page bodies normalised for comparison.
The fixtures in conftest.py are thin wrappers over these functions."""

from __future__ import annotations

import html
import re
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import select, update

from portal.accounts import lifecycle
from portal.accounts.models import User, UserSession
from portal.auth import services as auth
from portal.compliance.audit import Actor
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.mail_models import OutboxMessage
from tests.conftest import PASSWORD

SYSTEM = Actor.system("test")
NEW_PASSWORD = "a brand new passphrase for tests"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def host(tenant) -> dict[str, str]:
    return {"Host": f"{tenant.slug}.localhost"}


def htmx(tenant) -> dict[str, str]:
    return {**host(tenant), "HX-Request": "true"}


def body(response) -> str:
    return response.get_data(as_text=True)


class Site:
    """The test client on `tenant`'s host, from one client address."""

    def __init__(self, client, tenant, addr: str = "198.51.100.20"):
        self.client = client
        self.tenant = tenant
        self.host = f"{tenant.slug}.localhost"
        self.addr = addr

    def _kwargs(self, kwargs):
        kwargs.setdefault("headers", {})
        kwargs["headers"] = {"Host": self.host, **kwargs["headers"]}
        kwargs.setdefault("environ_base", {"REMOTE_ADDR": self.addr})
        return kwargs

    def get(self, path, **kwargs):
        return self.client.get(path, **self._kwargs(kwargs))

    def post(self, path, data=None, **kwargs):
        return self.client.post(path, data=data or {}, **self._kwargs(kwargs))

    def cookie(self, name: str = "session") -> str | None:
        found = self.client.get_cookie(name, domain=self.host)
        return found.value if found else None

    def set_cookie(self, name: str, value: str) -> None:
        self.client.set_cookie(name, value, domain=self.host)

    def clear_cookies(self) -> None:
        for name in ("session", "portal_device"):
            self.client.delete_cookie(name, domain=self.host)

    def sign_in(self, email, password=PASSWORD, *, code=None, next=None):
        """The password step (and the code step when `code` is given); the last response."""
        path = "/sign-in" + (f"?next={next}" if next else "")
        response = self.post(path, {"email": email, "password": password})
        if code is not None and response.status_code == 303:
            response = self.post("/sign-in/verify", {"code": code})
        return response


def browser(client, tenant, *, agent=FIREFOX, addr="198.51.100.30") -> Site:
    """A browser of its own (separate cookies) on `tenant`'s site."""
    site = Site(client.application.test_client(), tenant, addr=addr)
    site.client.environ_base["HTTP_USER_AGENT"] = agent
    return site


def make_user(
    tenant,
    roles=(),
    *,
    email: str | None = None,
    name: str = "",
    password: str | None = PASSWORD,
    status: str = "active",
) -> User:
    """A user of `tenant` made through the service; returns the (detached) row."""
    email = email or f"user-{secrets.token_hex(4)}@example.com"
    with db.tenant_scope(tenant) as session:
        return lifecycle.create_user(
            session,
            email=email,
            name=name,
            password=password,
            status=status,
            role_keys=list(roles),
            actor=SYSTEM,
        )


def add_user(tenant, email: str | None = None, **fields) -> tuple[int, str]:
    """`make_user` for the tests that need only the new user's (id, email)."""
    user = make_user(tenant, email=email, **fields)
    return user.id, user.email


def user_row(tenant, user_id) -> User:
    with db.tenant_scope(tenant) as session:
        return session.get(User, user_id)


def sign_in(tenant, user, password=PASSWORD, *, client):
    """Sign `client` in to `tenant`'s site as `user` through the form (without MFA), from the
    test client's own address; returns `user`."""
    response = Site(client, tenant, addr="127.0.0.1").sign_in(user.email, password)
    assert response.status_code == 303, body(response)[:500]
    return user


def open_tenant(client, tenant) -> None:
    """The signed-in staff member opens `tenant` from the console (the one-time hand-off, as MSP
    staff do it); the client is then on a visit to the tenant's site."""
    response = client.post(f"/tenants/{tenant.slug}/open", headers={"Host": "localhost"})
    assert response.status_code == 200, body(response)[:500]
    link = re.search(r'id="handoff" href="([^"]+)"', body(response)).group(1)
    path = urlsplit(html.unescape(link)).path
    landed = client.get(path, headers=host(tenant))
    assert landed.status_code == 303, body(landed)[:500]


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def wait_for_fresh_step(margin: float = 4.0) -> None:
    """Sleep past a 30-second boundary that is less than `margin` seconds away, so the codes
    a test computes stay in the step it computed them for."""
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.1)


def enable_mfa(tenant, user_id: int) -> tuple[str, list[str]]:
    """Turn MFA on through the services (confirmed with the previous step's code, so the
    current and next steps' codes are still unused); returns (secret, backup codes)."""
    wait_for_fresh_step()
    with db.tenant_scope(tenant) as session:
        user = lifecycle.get_user(session, user_id)
        secret = auth.start_mfa_enrolment(session, user)
        codes = auth.confirm_mfa_enrolment(session, user, code_at(secret, -1), actor=SYSTEM)
    return secret, codes


def forget_last_step(tenant, user_id: int) -> None:
    """Let any code of the current window be accepted again (tests that need many sign-ins)."""
    with db.tenant_scope(tenant) as session:
        session.execute(update(User).where(User.id == user_id).values(mfa_last_step=None))


def session_count(tenant, user_id: int) -> int:
    with db.tenant_scope(tenant) as session:
        return len(session.scalars(select(UserSession).where(UserSession.user_id == user_id)).all())


def backdate_sessions(tenant, user_id: int, **columns: datetime) -> None:
    with db.tenant_scope(tenant) as session:
        session.execute(update(UserSession).where(UserSession.user_id == user_id).values(**columns))


def audit_entries(tenant, action=None, target_id=None) -> list[TenantAuditEntry]:
    """The tenant's audit entries, newest first: of `action` and about user `target_id` when
    they are given."""
    with db.tenant_scope(tenant) as session:
        query = select(TenantAuditEntry).order_by(TenantAuditEntry.seq.desc())
        if action is not None:
            query = query.where(TenantAuditEntry.action == action)
        if target_id is not None:
            query = query.where(
                TenantAuditEntry.target_type == "user", TenantAuditEntry.target_id == str(target_id)
            )
        return list(session.scalars(query))


def last_mail(to_addr: str) -> OutboxMessage | None:
    with db.platform_scope() as session:
        return session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.to_addr == to_addr)
            .order_by(OutboxMessage.id.desc())
        ).first()


def mail_count(to_addr: str) -> int:
    with db.platform_scope() as session:
        return len(
            session.scalars(select(OutboxMessage.id).where(OutboxMessage.to_addr == to_addr)).all()
        )


def link_in_mail(to_addr: str, kind: str) -> str:
    """The path of the newest `/reset-password/…` or `/invitation/…` link mailed to `to_addr`."""
    message = last_mail(to_addr)
    assert message is not None, f"no mail to {to_addr}"
    found = re.search(rf"https?://[^/\s]+(/{kind}/[A-Za-z0-9_-]+)", message.body)
    assert found, message.body
    return found.group(1)


_VOLATILE = [
    (re.compile(r'name="csrf_token"[^>]*value="[^"]*"'), 'name="csrf_token"'),
    (re.compile(r'value="[^"]*"([^>]*name="csrf_token")'), r"\1"),
    (re.compile(r'"X-CSRFToken": "[^"]*"'), '"X-CSRFToken": ""'),
    (re.compile(r"request [0-9a-f]{32}"), "request ID"),
    (re.compile(r"<code>[0-9a-f]{32}</code>"), "<code>ID</code>"),
]


def normalised(body: bytes, *personal: str) -> str:
    """A page with its CSRF tokens, request id and the given strings (emails) blanked."""
    text = body.decode()
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    for value in personal:
        text = text.replace(value, "…")
    return text


def now() -> datetime:
    return datetime.now(UTC)
