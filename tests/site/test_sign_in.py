"""Tenant sign-in and sign-out: one answer for every refusal, throttling and lockout, session
rotation, replayed cookies, suspension and the idle timeout (A3–A5)."""

from __future__ import annotations

from datetime import timedelta

from portal.accounts import lifecycle, settings
from portal.auth.throttle import SignInThrottle
from portal.db import db
from portal.queue import queues
from tests.conftest import PASSWORD
from tests.site.support import (
    SYSTEM,
    Site,
    add_user,
    audit_entries,
    backdate_sessions,
    normalised,
    now,
    session_count,
)

ERROR = b"Email or password is not right."


def test_sign_in_page_shows_the_form_and_links(client, tenant):
    page = Site(client, tenant).get("/sign-in")
    assert page.status_code == 200
    assert f"Sign in to {tenant.name}".encode() in page.data
    assert b'href="/forgot-password"' in page.data
    assert b'href="/register"' not in page.data  # self-registration is off by default


def test_right_password_signs_in_and_sets_the_device_cookie(client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    response = site.sign_in(email)
    assert response.status_code == 303 and response.location == "/"
    device = next(c for c in response.headers.getlist("Set-Cookie") if "portal_device=" in c)
    assert "HttpOnly" in device and "SameSite=Lax" in device and "Max-Age=34560000" in device
    assert site.get("/").status_code == 200
    assert audit_entries(tenant, target_id=user_id)[0].action == "auth:user:sign_in"


def test_sign_in_goes_to_a_safe_next_only(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    assert site.sign_in(email, next="/account").location == "/account"
    site.post("/sign-out")
    for hostile in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/%09/x\t"):
        response = site.post(
            "/sign-in",
            {"email": email, "password": PASSWORD},
            query_string={"next": hostile},
        )
        assert response.location == "/", hostile
        site.post("/sign-out")


def test_unknown_wrong_and_suspended_get_identical_answers(client, tenant):
    _, known = add_user(tenant)
    _, suspended = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        lifecycle.suspend_user(session, lifecycle.find_user(session, suspended), actor=SYSTEM)
    site = Site(client, tenant)
    unknown = site.sign_in("nobody-here@example.com", "wrong password here")
    wrong = site.sign_in(known, "wrong password here")
    blocked = site.sign_in(suspended, PASSWORD)  # right password, suspended user
    for response in (unknown, wrong, blocked):
        assert response.status_code == 422 and ERROR in response.data
    assert (
        normalised(unknown.data, "nobody-here@example.com")
        == normalised(wrong.data, known)
        == normalised(blocked.data, suspended)
    )


def test_every_refusal_costs_exactly_one_argon2_verification(client, tenant, monkeypatch):
    """Equal work on every path is what keeps unknown and known accounts equal in timing."""
    from portal import passwords

    _, known = add_user(tenant)
    _, suspended = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        lifecycle.suspend_user(session, lifecycle.find_user(session, suspended), actor=SYSTEM)
    calls = []
    hasher = passwords._hasher

    class CountingHasher:
        def verify(self, *args, **kwargs):
            calls.append(1)
            return hasher.verify(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(hasher, name)

    monkeypatch.setattr(passwords, "_hasher", CountingHasher())
    site = Site(client, tenant)
    for email, password in (
        ("nobody-here@example.com", "wrong password here"),
        (known, "wrong password here"),
        (suspended, PASSWORD),
    ):
        calls.clear()
        assert site.sign_in(email, password).status_code == 422
        assert len(calls) == 1, email
    for _ in range(20):  # lock the account: a locked attempt still verifies once
        site.sign_in(known, "wrong password here")
    calls.clear()
    assert site.sign_in(known, PASSWORD).status_code == 422
    assert len(calls) == 1


def test_failed_sign_in_is_audited_and_kept(client, tenant):
    user_id, email = add_user(tenant)
    Site(client, tenant).sign_in(email, "wrong password here")
    assert audit_entries(tenant, target_id=user_id)[0].action == "auth:user:sign_in_failed"


def test_lockout_refuses_the_right_password_with_the_same_answer(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant, addr="198.51.100.31")
    wrong = site.sign_in(email, "wrong password here")
    throttle = SignInThrottle(queues.redis, f"user:{tenant.slug}")
    for _ in range(19):
        throttle.failed(email, None)
    assert throttle.wait_seconds(email, None) > 800  # locked for 15 minutes
    locked = site.sign_in(email, PASSWORD)
    assert locked.status_code == 422
    assert normalised(locked.data, email) == normalised(wrong.data, email)
    ghost = "ghost-" + email
    for _ in range(20):
        throttle.failed(ghost, None)
    locked_unknown = site.sign_in(ghost, PASSWORD)
    assert normalised(locked_unknown.data, ghost) == normalised(locked.data, email)
    assert [e.action for e in audit_entries(tenant)[:2]] == ["auth:user:sign_in_locked"] * 2


def test_five_failures_make_even_the_right_password_wait(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant, addr="198.51.100.32")
    for _ in range(5):
        assert site.sign_in(email, "wrong password here").status_code == 422
    assert site.sign_in(email, PASSWORD).status_code == 422


def test_success_resets_the_account_count(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant, addr="198.51.100.33")
    for _ in range(2):
        for _ in range(4):
            site.sign_in(email, "wrong password here")
        assert site.sign_in(email).status_code == 303
        site.post("/sign-out")


def test_session_cookie_changes_at_sign_in_and_the_old_one_is_useless(app, client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        site.get("/sign-in")  # the form's CSRF token lives in the session cookie
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    before = site.cookie()
    assert before
    assert site.sign_in(email).status_code == 303
    after = site.cookie()
    assert after and after != before
    site.set_cookie("session", before)
    response = site.get("/")  # the pre-sign-in cookie signs nobody in
    assert response.status_code == 302 and response.location.startswith("/sign-in")


def test_sign_out_ends_the_session_and_the_old_cookie_is_refused(client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    stolen = site.cookie()
    assert site.post("/sign-out").location == "/sign-in"
    assert session_count(tenant, user_id) == 0
    site.set_cookie("session", stolen)
    response = site.get("/")
    assert response.status_code == 302 and response.location.startswith("/sign-in")


def test_suspending_a_user_ends_their_sessions_at_once(client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    assert site.get("/account").status_code == 200
    with db.tenant_scope(tenant) as session:
        lifecycle.suspend_user(session, lifecycle.get_user(session, user_id), actor=SYSTEM)
    response = site.get("/account")
    assert response.status_code == 302 and response.location.startswith("/sign-in")


def test_idle_timeout_from_the_tenant_settings_signs_out(client, tenant):
    user_id, email = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, idle_timeout_minutes=5)
    site = Site(client, tenant)
    site.sign_in(email)
    backdate_sessions(tenant, user_id, last_seen_at=now() - timedelta(minutes=4))
    assert site.get("/account").status_code == 200
    backdate_sessions(tenant, user_id, last_seen_at=now() - timedelta(minutes=6))
    response = site.get("/account")
    assert response.status_code == 302 and response.location.startswith("/sign-in")
    assert session_count(tenant, user_id) == 0


def test_absolute_timeout_signs_out_even_an_active_session(client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    backdate_sessions(tenant, user_id, created_at=now() - timedelta(hours=13))
    assert site.get("/account").status_code == 302


def test_signed_in_user_visiting_sign_in_goes_home(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    assert site.get("/sign-in").location == "/"


def test_sign_in_without_csrf_token_is_refused(app, client, tenant):
    _, email = add_user(tenant)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = Site(client, tenant).post("/sign-in", {"email": email, "password": PASSWORD})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 400 and b"Form expired" in response.data


def test_sign_out_without_csrf_token_keeps_the_session(app, client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert site.post("/sign-out").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert session_count(tenant, user_id) == 1


def test_sign_in_on_another_tenant_with_the_same_email_fails(client, make_tenant):
    mine, other = make_tenant(), make_tenant()
    _, email = add_user(mine)
    response = Site(client, other).sign_in(email)
    assert response.status_code == 422 and ERROR in response.data


def test_suspended_tenant_refuses_sign_in(client, make_tenant):
    from portal.tenancy import routing
    from portal.tenancy.services import suspend_tenant

    tenant = make_tenant()
    _, email = add_user(tenant)
    with db.platform_scope() as session:
        from portal.tenancy.models import Tenant

        row = session.get(Tenant, tenant.id)
        suspend_tenant(session, row, actor=SYSTEM, reason="unpaid")
    routing.invalidate()
    response = Site(client, tenant).sign_in(email)
    assert response.status_code == 403 and b"is suspended" in response.data
