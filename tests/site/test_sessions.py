"""My sessions and devices: the list (this browser marked), ending one, signing out everywhere
else, forgetting a device; only ever the user's own (A8)."""

from __future__ import annotations

from sqlalchemy import select

from portal.accounts.models import Device, UserSession
from portal.db import db
from tests.site.support import (
    FIREFOX,
    IPHONE,
    Site,
    add_user,
    audit_entries,
    browser,
    session_count,
)


def sessions_of(tenant, user_id):
    with db.tenant_scope(tenant) as session:
        return list(
            session.scalars(
                select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.id)
            )
        )


def devices_of(tenant, user_id):
    with db.tenant_scope(tenant) as session:
        return list(session.scalars(select(Device).where(Device.user_id == user_id)))


def two_browsers(client, tenant):
    user_id, email = add_user(tenant)
    laptop = browser(client, tenant, agent=FIREFOX, addr="198.51.100.41")
    phone = browser(client, tenant, agent=IPHONE, addr="198.51.100.42")
    laptop.sign_in(email)
    phone.sign_in(email)
    return user_id, laptop, phone


def test_sessions_page_lists_own_sessions_and_marks_this_browser(client, tenant):
    user_id, laptop, _ = two_browsers(client, tenant)
    add_user(tenant)  # someone else's sessions are not shown
    page = laptop.get("/account/sessions")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Firefox on Windows" in html and "Safari on iPhone" in html
    assert html.count("This browser") == 1
    assert "198.51.100.42" in html and "2 sessions" in html and "2 devices" in html


def test_ending_another_session_signs_that_browser_out(client, tenant):
    user_id, laptop, phone = two_browsers(client, tenant)
    phone_session = sessions_of(tenant, user_id)[1]
    response = laptop.post(f"/account/sessions/{phone_session.id}/revoke")
    assert response.status_code == 303 and response.location == "/account/sessions"
    assert phone.get("/account").status_code == 302
    assert laptop.get("/account").status_code == 200
    assert audit_entries(tenant, target_id=user_id)[0].action == "auth:session:revoke"


def test_ending_this_session_signs_out_here(client, tenant):
    user_id, laptop, phone = two_browsers(client, tenant)
    mine = sessions_of(tenant, user_id)[0]
    response = laptop.post(f"/account/sessions/{mine.id}/revoke")
    assert response.status_code == 303 and response.location == "/sign-in"
    assert laptop.get("/account").status_code == 302
    assert phone.get("/account").status_code == 200


def test_sign_out_everywhere_else_keeps_only_this_browser(client, tenant):
    user_id, laptop, phone = two_browsers(client, tenant)
    third = browser(client, tenant, agent=FIREFOX, addr="198.51.100.43")
    third.sign_in(sessions_of(tenant, user_id)[0].user.email)
    response = laptop.post("/account/sessions/revoke-others")
    assert response.status_code == 303
    assert "Signed out of 2 other sessions" in laptop.get("/account/sessions").get_data(
        as_text=True
    )
    assert phone.get("/account").status_code == 302
    assert third.get("/account").status_code == 302
    assert laptop.get("/account").status_code == 200
    assert session_count(tenant, user_id) == 1


def test_someone_elses_session_cannot_be_ended(client, tenant):
    _, laptop, _ = two_browsers(client, tenant)
    other_id, other_email = add_user(tenant)
    Site(client.application.test_client(), tenant).sign_in(other_email)
    theirs = sessions_of(tenant, other_id)[0]
    assert laptop.post(f"/account/sessions/{theirs.id}/revoke").status_code == 404
    assert session_count(tenant, other_id) == 1


def test_forgetting_a_device_ends_its_sessions(client, tenant):
    user_id, laptop, phone = two_browsers(client, tenant)
    phone_device = sessions_of(tenant, user_id)[1].device_id
    response = laptop.post(f"/account/devices/{phone_device}/forget")
    assert response.status_code == 303
    assert phone.get("/account").status_code == 302
    assert laptop.get("/account").status_code == 200
    assert [d.label for d in devices_of(tenant, user_id)] == ["Firefox on Windows"]


def test_forgetting_this_browser_signs_out_here(client, tenant):
    user_id, laptop, _ = two_browsers(client, tenant)
    mine = sessions_of(tenant, user_id)[0].device_id
    response = laptop.post(f"/account/devices/{mine}/forget")
    assert response.location == "/sign-in"
    assert any(
        c.startswith("portal_device=;") or "portal_device=; " in c or 'portal_device=""' in c
        for c in response.headers.getlist("Set-Cookie")
    )
    assert laptop.get("/account").status_code == 302


def test_someone_elses_device_cannot_be_forgotten(client, tenant):
    _, laptop, _ = two_browsers(client, tenant)
    other_id, other_email = add_user(tenant)
    Site(client.application.test_client(), tenant).sign_in(other_email)
    theirs = devices_of(tenant, other_id)[0]
    assert laptop.post(f"/account/devices/{theirs.id}/forget").status_code == 404
    assert len(devices_of(tenant, other_id)) == 1


def test_a_known_device_is_recognised_at_the_next_sign_in(client, tenant):
    user_id, email = add_user(tenant)
    laptop = browser(client, tenant, agent=FIREFOX, addr="198.51.100.44")
    laptop.sign_in(email)
    laptop.post("/sign-out")
    laptop.sign_in(email)
    assert len(devices_of(tenant, user_id)) == 1
    assert len(audit_entries(tenant, "auth:device:new", user_id)) == 1


def test_revoking_over_htmx_answers_with_the_panel(client, tenant):
    user_id, laptop, _ = two_browsers(client, tenant)
    phone_session = sessions_of(tenant, user_id)[1]
    response = laptop.post(
        f"/account/sessions/{phone_session.id}/revoke", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and "Session ended" in response.headers["HX-Trigger"]
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="sessions-panel"') and "1 session<" in body


def test_session_actions_need_a_signed_in_user(client, tenant):
    site = Site(client, tenant)
    for path in (
        "/account/sessions/1/revoke",
        "/account/sessions/revoke-others",
        "/account/devices/1/forget",
    ):
        response = site.post(path)
        assert response.status_code == 302 and response.location.startswith("/sign-in"), path


def test_session_actions_without_csrf_token_are_refused(app, client, tenant):
    user_id, laptop, phone = two_browsers(client, tenant)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert laptop.post("/account/sessions/revoke-others").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert session_count(tenant, user_id) == 2
