"""A user's page: profile, roles, status, sessions, devices, MFA, sign-in history and audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from portal.accounts import invitations, lifecycle, roles
from portal.accounts.models import BackupCode, Device, User, UserSession
from portal.auth import services as auth
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.site.support import SYSTEM, audit_entries, body, host, htmx, user_row


def sessions_of(tenant, user_id) -> list[UserSession]:
    with db.tenant_scope(tenant) as session:
        return list(session.scalars(select(UserSession).where(UserSession.user_id == user_id)))


@pytest.fixture
def target(tenant, site_user):
    return site_user(tenant, name="Wile Coyote", email="wile@rockets.example")


@pytest.fixture
def target_browser(app, tenant, target, sign_in_site):
    """A second browser, signed in as `target`."""
    browser = app.test_client()
    sign_in_site(tenant, target, client=browser)
    return browser


POSTS = [
    ("profile", {"name": "x", "email": "x@example.com"}),
    ("roles", {"roles": "compliance_officer"}),
    ("suspend", {"reason": "x"}),
    ("reactivate", {}),
    ("delete", {}),
    ("restore", {}),
    ("resend-invitation", {}),
    ("sessions/revoke", {}),
    ("sessions/1/revoke", {}),
    ("devices/1/forget", {}),
    ("mfa/reset", {}),
]


# ---- access -------------------------------------------------------------------------------


def test_signed_out_user_page_redirects_to_sign_in(client, tenant, target):
    response = client.get(f"/users/{target.id}", headers=host(tenant))
    assert response.status_code == 302
    assert response.headers["Location"] == f"/sign-in?next=/users/{target.id}"
    response = client.post(f"/users/{target.id}/delete", headers=host(tenant))
    assert response.status_code == 302
    assert user_row(tenant, target.id).status == "active"


def test_signed_out_htmx_request_is_sent_to_sign_in(client, tenant, target):
    response = client.get(f"/users/{target.id}?part=sessions", headers=htmx(tenant))
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/sign-in")


@pytest.mark.parametrize("path, data", POSTS)
def test_member_gets_403_for_every_change(
    client, tenant, site_user, sign_in_site, target, path, data
):
    sign_in_site(tenant, site_user(tenant))
    response = client.post(f"/users/{target.id}/{path}", data=data, headers=host(tenant))
    assert response.status_code == 403


def test_member_cannot_see_a_user_page(client, tenant, site_user, sign_in_site, target):
    sign_in_site(tenant, site_user(tenant))
    assert client.get(f"/users/{target.id}", headers=host(tenant)).status_code == 403


@pytest.mark.parametrize("path, data", POSTS)
def test_another_tenants_user_is_404(client, make_tenant, tenant, site_user, admin, path, data):
    other = make_tenant()
    for _ in range(5):
        stranger = site_user(other)
    assert user_row(tenant, stranger.id) is None
    assert client.get(f"/users/{stranger.id}", headers=host(tenant)).status_code == 404
    response = client.post(f"/users/{stranger.id}/{path}", data=data, headers=host(tenant))
    assert response.status_code == 404
    assert user_row(other, stranger.id).status == "active"


@pytest.mark.parametrize("user_id", ["0", "99999999999999", "-1", "abc"])
def test_impossible_user_ids_are_404(client, tenant, admin, user_id):
    assert client.get(f"/users/{user_id}", headers=host(tenant)).status_code == 404


def test_compliance_officer_reads_the_page_without_change_controls(
    client, tenant, site_user, sign_in_site, target
):
    sign_in_site(tenant, site_user(tenant, ["compliance_officer"]))
    page = body(client.get(f"/users/{target.id}", headers=host(tenant)))
    assert "Wile Coyote" in page and "Sign-in history" in page and "Audit" in page
    assert "Save profile" not in page and "Suspend…" not in page and "Reset two-factor" not in page


# ---- the page -----------------------------------------------------------------------------


def test_page_shows_profile_roles_status_sessions_and_history(
    client, tenant, target, target_browser, admin
):
    response = client.get(f"/users/{target.id}", headers=host(tenant))
    assert response.status_code == 200
    page = body(response)
    for heading in (
        "Profile",
        "Roles",
        "Status",
        "Sessions",
        "Devices",
        "Sign-in history",
        "Audit",
    ):
        assert f">{heading}</h2>" in page, heading
    assert "Two-factor authentication</h2>" in page
    assert "wile@rockets.example" in page and "Signed in" in page and "127.0.0.1" in page
    assert "accounts:user:create" in page  # the audit section


@pytest.mark.parametrize(
    "part", ["header", "profile", "sessions", "devices", "mfa", "history", "audit"]
)
def test_each_part_renders_alone_for_htmx(client, tenant, target, admin, part):
    response = client.get(f"/users/{target.id}?part={part}", headers=htmx(tenant))
    assert response.status_code == 200
    assert "<html" not in body(response)


def test_sign_in_history_lists_failures_and_other_entries_stay_in_audit(
    client, app, tenant, target, admin
):
    stranger = app.test_client()
    stranger.post(
        "/sign-in", data={"email": target.email, "password": "wrong password"}, headers=host(tenant)
    )
    history = body(client.get(f"/users/{target.id}?part=history", headers=htmx(tenant)))
    assert "Sign-in failed" in history and "127.0.0.1" in history
    audit = body(client.get(f"/users/{target.id}?part=audit", headers=htmx(tenant)))
    assert "accounts:user:create" in audit and "sign_in_failed" not in audit


# ---- profile and roles --------------------------------------------------------------------


def test_admin_edits_name_and_email(client, tenant, target, admin):
    response = client.post(
        f"/users/{target.id}/profile",
        data={"name": "Wile E. Coyote", "email": "coyote@rockets.example"},
        headers=host(tenant),
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/users/{target.id}"
    user = user_row(tenant, target.id)
    assert (user.name, user.email) == ("Wile E. Coyote", "coyote@rockets.example")
    [entry] = audit_entries(tenant, AuditAction.USER_UPDATE, target.id)
    assert entry.detail == {"fields": ["email", "name"]} and entry.actor_id == str(admin.id)


def test_profile_over_htmx_returns_the_block_with_a_toast(client, tenant, target, admin):
    response = client.post(
        f"/users/{target.id}/profile",
        data={"name": "Wile E.", "email": target.email},
        headers=htmx(tenant),
    )
    assert response.status_code == 200
    assert 'id="profile"' in body(response) and "<html" not in body(response)
    triggers = json.loads(response.headers["HX-Trigger"])
    assert triggers["toast"] == f"Profile of {target.email} saved"
    assert triggers["user-changed"] is True


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "email": "nope"}, "Enter a valid email address."),
        ({"name": "x", "email": ""}, "Enter an email address."),
        ({"name": "n" * 300, "email": "a@b.example"}, "200"),
    ],
)
def test_bad_profile_input_is_422_next_to_the_field(client, tenant, target, admin, data, message):
    response = client.post(f"/users/{target.id}/profile", data=data, headers=htmx(tenant))
    assert response.status_code == 422
    assert message in body(response) and 'aria-invalid="true"' in body(response)
    assert user_row(tenant, target.id).email == target.email


def test_profile_email_taken_by_someone_else_is_refused(client, tenant, target, admin):
    response = client.post(
        f"/users/{target.id}/profile",
        data={"name": "x", "email": admin.email.upper()},
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "A user with this email already exists." in body(response)


def test_admin_changes_roles_and_it_is_audited(client, tenant, target, admin):
    response = client.post(
        f"/users/{target.id}/roles", data={"roles": ["compliance_officer"]}, headers=host(tenant)
    )
    assert response.status_code == 303
    with db.tenant_scope(tenant) as session:
        assert roles.user_role_keys(session, target.id) == ["compliance_officer"]
    [entry] = audit_entries(tenant, AuditAction.USER_ROLES_CHANGE, target.id)
    assert entry.detail == {"before": [], "after": ["compliance_officer"]}


def test_the_last_admin_cannot_remove_their_own_admin_role(client, tenant, admin):
    response = client.post(f"/users/{admin.id}/roles", data={}, headers=host(tenant))
    assert response.status_code == 422
    assert "without an administrator" in body(response)
    with db.tenant_scope(tenant) as session:
        assert roles.user_role_keys(session, admin.id) == ["tenant_admin"]


def test_unknown_role_is_422(client, tenant, target, admin):
    response = client.post(f"/users/{target.id}/roles", data={"roles": "god"}, headers=host(tenant))
    assert response.status_code == 422


# ---- status -------------------------------------------------------------------------------


def test_suspend_needs_a_reason(client, tenant, target, admin):
    response = client.post(
        f"/users/{target.id}/suspend", data={"reason": " "}, headers=htmx(tenant)
    )
    assert response.status_code == 422
    assert "Say why" in body(response)
    assert user_row(tenant, target.id).status == "active"


def test_suspend_ends_sessions_and_is_audited(client, tenant, target, target_browser, admin):
    response = client.post(
        f"/users/{target.id}/suspend", data={"reason": "Left the company"}, headers=host(tenant)
    )
    assert response.status_code == 303
    user = user_row(tenant, target.id)
    assert (user.status, user.status_reason) == ("suspended", "Left the company")
    assert not sessions_of(tenant, target.id)
    assert target_browser.get("/", headers=host(tenant)).status_code == 302
    [entry] = audit_entries(tenant, AuditAction.USER_SUSPEND, target.id)
    assert entry.detail["reason"] == "Left the company" and entry.detail["sessions_ended"] == 1
    page = body(client.get(f"/users/{target.id}", headers=host(tenant)))
    assert "wile@rockets.example suspended and signed out" in page
    assert "Reason: Left the company" in page and "Reactivate" in page


def test_suspend_over_htmx_refreshes_status_and_tells_the_page(client, tenant, target, admin):
    response = client.post(
        f"/users/{target.id}/suspend", data={"reason": "Holiday"}, headers=htmx(tenant)
    )
    assert response.status_code == 200
    assert 'id="status"' in body(response) and "Suspended" in body(response)
    triggers = json.loads(response.headers["HX-Trigger"])
    assert {"toast", "user-changed", "sessions-changed"} <= set(triggers)


def test_admin_cannot_suspend_or_delete_themselves(client, tenant, admin):
    response = client.post(f"/users/{admin.id}/suspend", data={"reason": "x"}, headers=host(tenant))
    assert response.status_code == 422
    assert "You cannot suspend yourself." in body(response)
    response = client.post(f"/users/{admin.id}/delete", headers=host(tenant))
    assert response.status_code == 422
    assert "You cannot delete yourself." in body(response)
    assert user_row(tenant, admin.id).status == "active"


def test_reactivate_a_suspended_user(client, tenant, target, admin):
    with db.tenant_scope(tenant) as session:
        lifecycle.suspend_user(session, lifecycle.get_user(session, target.id), actor=SYSTEM)
    response = client.post(f"/users/{target.id}/reactivate", headers=host(tenant))
    assert response.status_code == 303
    assert user_row(tenant, target.id).status == "active"
    assert audit_entries(tenant, AuditAction.USER_REACTIVATE, target.id)


def test_delete_then_restore_within_grace(client, tenant, target, admin):
    assert client.post(f"/users/{target.id}/delete", headers=host(tenant)).status_code == 303
    assert user_row(tenant, target.id).status == "deleted"
    assert audit_entries(tenant, AuditAction.USER_DELETE, target.id)
    page = body(client.get(f"/users/{target.id}", headers=host(tenant)))
    assert "Restorable until" in page and "Restore wile@rockets.example" in page
    assert client.post(f"/users/{target.id}/restore", headers=host(tenant)).status_code == 303
    assert user_row(tenant, target.id).status == "active"
    assert audit_entries(tenant, AuditAction.USER_RESTORE, target.id)


def test_restore_after_the_grace_period_is_refused(client, tenant, target, admin):
    with db.tenant_scope(tenant) as session:
        lifecycle.delete_user(session, lifecycle.get_user(session, target.id), actor=SYSTEM)
        session.execute(
            update(User)
            .where(User.id == target.id)
            .values(deleted_at=datetime.now(UTC) - timedelta(days=31))
        )
    page = body(client.get(f"/users/{target.id}", headers=host(tenant)))
    assert "can no longer be restored" in page
    response = client.post(f"/users/{target.id}/restore", headers=htmx(tenant))
    assert response.status_code == 422
    assert "more than 30 days ago" in body(response)
    assert user_row(tenant, target.id).status == "deleted"


def test_resend_invitation_to_an_invited_user(client, tenant, admin):
    with db.tenant_scope(tenant) as session:
        invited = invitations.invite_user(
            session, email="inv@example.com", actor=SYSTEM, base_url="http://x.localhost"
        )
    response = client.post(f"/users/{invited.id}/resend-invitation", headers=host(tenant))
    assert response.status_code == 303
    entries = audit_entries(tenant, AuditAction.USER_INVITE, invited.id)
    assert [e.detail.get("resent") for e in entries] == [True, None]


def test_resend_invitation_to_an_active_user_is_422(client, tenant, target, admin):
    response = client.post(f"/users/{target.id}/resend-invitation", headers=host(tenant))
    assert response.status_code == 422
    assert "already accepted the invitation" in body(response)


# ---- sessions, devices, MFA ---------------------------------------------------------------


def test_revoke_one_session_signs_that_browser_out(client, tenant, target, target_browser, admin):
    [row] = sessions_of(tenant, target.id)
    page = body(client.get(f"/users/{target.id}?part=sessions", headers=htmx(tenant)))
    assert "127.0.0.1" in page and "Password" in page
    response = client.post(f"/users/{target.id}/sessions/{row.id}/revoke", headers=host(tenant))
    assert response.status_code == 303
    assert target_browser.get("/", headers=host(tenant)).status_code == 302
    [entry] = audit_entries(tenant, AuditAction.SESSION_REVOKE, target.id)
    assert entry.detail == {"session": row.id}


def test_revoking_someone_elses_session_through_this_user_is_404(
    client, tenant, target, target_browser, admin
):
    [row] = sessions_of(tenant, target.id)
    response = client.post(f"/users/{admin.id}/sessions/{row.id}/revoke", headers=host(tenant))
    assert response.status_code == 404
    assert sessions_of(tenant, target.id)


def test_revoke_all_sessions(client, tenant, target, target_browser, admin):
    response = client.post(f"/users/{target.id}/sessions/revoke", headers=htmx(tenant))
    assert response.status_code == 200
    assert json.loads(response.headers["HX-Trigger"])["toast"] == (
        "wile@rockets.example signed out of 1 session"
    )
    assert not sessions_of(tenant, target.id)
    assert audit_entries(tenant, AuditAction.SESSION_REVOKE, target.id)[0].detail["all"] is True


def test_revoking_all_of_your_own_sessions_keeps_this_browser(
    app, client, tenant, admin, sign_in_site
):
    sign_in_site(tenant, admin, client=app.test_client())
    response = client.post(f"/users/{admin.id}/sessions/revoke", headers=host(tenant))
    assert response.status_code == 303
    assert len(sessions_of(tenant, admin.id)) == 1
    assert client.get(f"/users/{admin.id}", headers=host(tenant)).status_code == 200


def test_revoking_sessions_needs_the_revoke_permission(
    client, tenant, site_user, sign_in_site, target, target_browser
):
    sign_in_site(tenant, site_user(tenant, ["compliance_officer"]))
    response = client.post(f"/users/{target.id}/sessions/revoke", headers=host(tenant))
    assert response.status_code == 403
    assert sessions_of(tenant, target.id)


def test_forget_device_ends_its_sessions(client, tenant, target, target_browser, admin):
    with db.tenant_scope(tenant) as session:
        device = session.scalars(select(Device).where(Device.user_id == target.id)).one()
    page = body(client.get(f"/users/{target.id}?part=devices", headers=htmx(tenant)))
    assert device.label in page
    response = client.post(f"/users/{target.id}/devices/{device.id}/forget", headers=host(tenant))
    assert response.status_code == 303
    assert not sessions_of(tenant, target.id)
    [entry] = audit_entries(tenant, AuditAction.SESSION_REVOKE, target.id)
    assert entry.detail["forgotten"] is True
    again = client.post(f"/users/{target.id}/devices/{device.id}/forget", headers=host(tenant))
    assert again.status_code == 404


def give_mfa(tenant, user_id):
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        auth.start_mfa_enrolment(session, user)
        user.mfa_enabled_at = datetime.now(UTC)
        session.add_all(BackupCode(user_id=user_id, code_hash=f"{i:064d}") for i in range(10))


def test_mfa_section_shows_state_and_codes_left(client, tenant, target, admin):
    give_mfa(tenant, target.id)
    page = body(client.get(f"/users/{target.id}?part=mfa", headers=htmx(tenant)))
    assert "<strong>On</strong>" in page and "10 of 10 backup codes left" in page


def test_reset_mfa_turns_it_off_and_is_audited(client, tenant, target, admin):
    give_mfa(tenant, target.id)
    response = client.post(f"/users/{target.id}/mfa/reset", headers=htmx(tenant))
    assert response.status_code == 200
    assert "<strong>Off</strong>" in body(response)
    user = user_row(tenant, target.id)
    assert user.mfa_enabled_at is None and user.mfa_secret is None
    assert audit_entries(tenant, AuditAction.MFA_RESET, target.id)


def test_reset_mfa_needs_the_permission(client, tenant, site_user, sign_in_site, target):
    give_mfa(tenant, target.id)
    sign_in_site(tenant, site_user(tenant, ["compliance_officer"]))
    assert client.post(f"/users/{target.id}/mfa/reset", headers=host(tenant)).status_code == 403
    assert user_row(tenant, target.id).mfa_enabled_at is not None


def test_user_page_post_without_csrf_token_is_refused(app, client, tenant, target, admin):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = client.post(f"/users/{target.id}/delete", headers=host(tenant))
        assert response.status_code == 400
        response = client.post(
            f"/users/{target.id}/suspend", data={"reason": "x"}, headers=host(tenant)
        )
        assert response.status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert user_row(tenant, target.id).status == "active"
