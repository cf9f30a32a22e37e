"""MFA for MSP staff (issue 11 §2): enrolment forced at first sign-in, the second step
throttled and limited on the server, codes used once, and the console's My account page."""

from __future__ import annotations

import dataclasses
import re
import time

import pyotp
import pytest
from sqlalchemy import select

from portal.auth import second_factor
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.staff.mfa import regenerate_staff_backup_codes
from portal.staff.models import StaffSession, StaffUser
from tests.conftest import PASSWORD, STAFF_TOTP_SECRET, sign_in_staff, staff_code

HOST = {"Host": "localhost"}


def entries(staff_id: int, action: str) -> list[PlatformAuditEntry]:
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry)
            .where(
                PlatformAuditEntry.action == action,
                PlatformAuditEntry.target_id == str(staff_id),
            )
            .order_by(PlatformAuditEntry.seq)
        ).all()


def password_step(client, member, password: str = PASSWORD):
    return client.post("/sign-in", data={"email": member.email, "password": password}, headers=HOST)


def verify(client, code: str, headers=HOST):
    return client.post("/sign-in/verify", data={"code": code}, headers=headers)


def sessions_of(staff_id: int) -> list[StaffSession]:
    with db.platform_scope() as session:
        return session.scalars(select(StaffSession).where(StaffSession.staff_id == staff_id)).all()


@pytest.fixture
def mfa_optional(app):
    """STAFF_MFA_REQUIRED=false for this test."""
    settings = app.config["PORTAL"]
    app.config["PORTAL"] = dataclasses.replace(settings, staff_mfa_required=False)
    yield
    app.config["PORTAL"] = settings


# ---- enrolment ------------------------------------------------------------------------------


def test_staff_without_mfa_is_forced_to_enrol_before_anything_else(client, make_staff):
    member = make_staff(mfa=False)
    signed_in = password_step(client, member)
    assert signed_in.status_code == 303 and signed_in.location == "/"
    for path in ("/", "/tenants", "/staff", "/audit"):
        response = client.get(path, headers=HOST)
        assert response.status_code == 302 and response.location == "/account", path
    assert (
        client.post("/tenants/new", data={"slug": "x", "name": "x"}, headers=HOST).status_code
        == 302
    )
    page = client.get("/account", headers=HOST)
    assert page.status_code == 200
    assert b"must use two-factor authentication" in page.data
    assert b"Change password" not in page.data  # only enrolment and sign-out until then

    assert client.post("/account/mfa/start", headers=HOST).status_code == 303
    page = client.get("/account", headers=HOST).data.decode()
    assert 'class="mfa-qr"' in page and 'id="mfa-secret"' in page
    with db.platform_scope() as session:
        secret = second_factor.secret_of(session.get(StaffUser, member.id))
    assert re.sub(r"\s", "", re.search(r'id="mfa-secret"[^>]*>([^<]+)<', page).group(1)) == secret

    wrong = client.post("/account/mfa/confirm", data={"code": "000000"}, headers=HOST)
    assert wrong.status_code == 422 and b"That code is not right" in wrong.data
    done = client.post(
        "/account/mfa/confirm", data={"code": pyotp.TOTP(secret).now()}, headers=HOST
    )
    assert done.status_code == 200
    assert len(re.findall(r"<code[^>]*>[a-z0-9]{4}-[a-z0-9]{4}</code>", done.data.decode())) == 10
    assert client.get("/tenants", headers=HOST).status_code == 200
    assert [s.method for s in sessions_of(member.id)] == ["totp"]  # the session proved it
    assert len(entries(member.id, AuditAction.STAFF_MFA_ENROL)) == 1


def test_an_htmx_request_of_a_member_who_must_enrol_is_sent_to_enrolment(client, make_staff):
    password_step(client, make_staff(mfa=False))
    response = client.get("/tenants", headers={**HOST, "HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/account"


def test_staff_with_mfa_are_not_signed_in_by_the_password_alone(client, make_staff):
    member = make_staff()
    first = password_step(client, member)
    assert first.status_code == 303 and first.location == "/sign-in/verify"
    assert client.get("/tenants", headers=HOST).status_code == 302
    assert sessions_of(member.id) == []
    page = client.get("/sign-in/verify", headers=HOST)
    assert page.status_code == 200 and b"Authentication code" in page.data
    done = verify(client, staff_code(member))
    assert done.status_code == 303 and done.location == "/"
    assert client.get("/tenants", headers=HOST).status_code == 200
    assert [s.method for s in sessions_of(member.id)] == ["totp"]
    assert entries(member.id, AuditAction.STAFF_SIGN_IN)[-1].detail["method"] == "totp"


def test_the_second_step_cannot_be_reached_without_the_password_step(client, make_staff):
    member = make_staff()
    response = verify(client, pyotp.TOTP(STAFF_TOTP_SECRET).now())
    assert response.status_code == 303 and response.location == "/sign-in"
    assert sessions_of(member.id) == []


# ---- attacks on the second step -------------------------------------------------------------


def test_wrong_codes_are_limited_on_the_server_even_when_the_cookie_is_replayed(
    app, client, make_staff
):
    member = make_staff()
    password_step(client, member)
    pending_cookie = client.get_cookie("session", domain="localhost").value
    for _ in range(4):
        assert verify(client, "123456").status_code == 422
    fifth = verify(client, "123456")
    assert fifth.status_code == 303 and fifth.location == "/sign-in"

    # Replay the cookie from just after the password step: the count lives on the server, and
    # the pending step is gone, so even the right code does not sign in.
    attacker = app.test_client()
    attacker.set_cookie("session", pending_cookie, domain="localhost")
    for code in ("123456", staff_code(member)):
        response = attacker.post("/sign-in/verify", data={"code": code}, headers=HOST)
        assert response.status_code == 303 and response.location == "/sign-in"
    assert sessions_of(member.id) == []
    failed = entries(member.id, AuditAction.STAFF_MFA_FAILED)
    assert len(failed) == 5 and failed[0].detail == {"reason": "bad_code", "step": "mfa"}


def test_a_replayed_cookie_keeps_counting_wrong_codes_from_where_it_was(app, client, make_staff):
    member = make_staff()
    password_step(client, member)
    pending_cookie = client.get_cookie("session", domain="localhost").value
    for _ in range(3):
        verify(client, "123456")
    attacker = app.test_client()
    attacker.set_cookie("session", pending_cookie, domain="localhost")
    replayed = HOST
    assert (
        attacker.post("/sign-in/verify", data={"code": "654321"}, headers=replayed).status_code
        == 422
    )
    last = attacker.post("/sign-in/verify", data={"code": "654321"}, headers=replayed)
    assert last.status_code == 303 and last.location == "/sign-in"  # the 5th wrong code overall


def test_wrong_codes_count_in_the_sign_in_throttle(client, make_staff):
    member = make_staff()
    password_step(client, member)
    for _ in range(5):
        verify(client, "123456")
    refused = password_step(client, member)  # the right password, within the delay
    assert refused.status_code == 422 and b"Email or password is not right." in refused.data


def test_a_totp_code_is_accepted_once(app, client, make_staff):
    member = make_staff()
    code = staff_code(member)
    password_step(client, member)
    assert verify(client, code).status_code == 303
    other = app.test_client()
    password_step(other, member)
    replay = other.post("/sign-in/verify", data={"code": code}, headers=HOST)
    assert replay.status_code == 422 and b"That code is not right." in replay.data
    assert len(sessions_of(member.id)) == 1


def test_a_backup_code_signs_in_once(app, client, make_staff):
    member = make_staff()
    with db.platform_scope() as session:
        codes = regenerate_staff_backup_codes(
            session, session.get(StaffUser, member.id), actor=Actor.system("test")
        )
    password_step(client, member)
    used = verify(client, codes[0].upper().replace("-", " "))
    assert used.status_code == 303 and used.location == "/"
    assert [s.method for s in sessions_of(member.id)] == ["backup_code"]
    assert entries(member.id, AuditAction.STAFF_MFA_BACKUP_CODE_USED)[-1].detail == {"left": 9}
    other = app.test_client()
    password_step(other, member)
    again = other.post("/sign-in/verify", data={"code": codes[0]}, headers=HOST)
    assert again.status_code == 422
    assert len(sessions_of(member.id)) == 1


def test_a_password_step_done_before_a_password_change_cannot_be_completed(app, client, make_staff):
    member = make_staff()
    password_step(client, member)
    with db.platform_scope() as session:
        from portal.passwords import hash_password

        session.get(StaffUser, member.id).password_hash = hash_password("another long passphrase")
    response = verify(client, staff_code(member))
    assert response.status_code == 303 and response.location == "/sign-in"
    assert sessions_of(member.id) == []


# ---- My account -----------------------------------------------------------------------------


def test_account_page_needs_a_signed_in_member(client):
    response = client.get("/account", headers=HOST)
    assert response.status_code == 302 and "/sign-in" in response.location
    assert client.post("/account/password", headers=HOST).status_code == 302


def test_password_change_enforces_the_common_password_policy(app, client, sign_in_as):
    member = sign_in_as()
    form = {"current_password": PASSWORD, "new_password": "password1234", "confirm": "password1234"}
    common = client.post("/account/password", data=form, headers=HOST)
    assert common.status_code == 422 and b"most common passwords" in common.data
    short = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "short", "confirm": "short"},
        headers=HOST,
    )
    assert short.status_code == 422 and b"Use at least 12 characters." in short.data
    wrong = client.post(
        "/account/password",
        data={**form, "current_password": "not my password"},
        headers=HOST,
    )
    assert wrong.status_code == 422 and b"That is not your current password." in wrong.data

    other = app.test_client()
    assert sign_in_staff(other, member).status_code == 303
    new = "a much better staff passphrase"
    changed = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": new, "confirm": new},
        headers=HOST,
    )
    assert changed.status_code == 303
    assert client.get("/tenants", headers=HOST).status_code == 200
    assert other.get("/tenants", headers=HOST).status_code == 302  # other session ended
    assert entries(member.id, AuditAction.STAFF_PASSWORD_CHANGE)[-1].detail == {"sessions_ended": 1}


def test_creating_staff_with_a_common_password_is_refused(client, sign_in_as):
    sign_in_as()
    response = client.post(
        "/staff",
        data={"email": "new-staff@msp.example", "role": "support", "password": "password1234"},
        headers=HOST,
    )
    assert response.status_code == 422 and b"most common passwords" in response.data


def test_mfa_cannot_be_turned_off_while_the_platform_requires_it(client, sign_in_as):
    member = sign_in_as()
    page = client.get("/account", headers=HOST)
    assert b"can't be turned off" in page.data
    response = client.post(
        "/account/mfa/disable", data={"disable-password": PASSWORD}, headers=HOST
    )
    assert response.status_code == 422 and b"required for every staff member" in response.data
    with db.platform_scope() as session:
        assert session.get(StaffUser, member.id).mfa_enabled


def test_mfa_can_be_turned_off_with_the_password_where_optional(client, sign_in_as, mfa_optional):
    member = sign_in_as()
    wrong = client.post("/account/mfa/disable", data={"disable-password": "nope"}, headers=HOST)
    assert wrong.status_code == 422 and b"That is not your password." in wrong.data
    done = client.post("/account/mfa/disable", data={"disable-password": PASSWORD}, headers=HOST)
    assert done.status_code == 303
    with db.platform_scope() as session:
        assert not session.get(StaffUser, member.id).mfa_enabled
    assert len(entries(member.id, AuditAction.STAFF_MFA_DISABLE)) == 1


def test_new_backup_codes_need_the_password_and_replace_the_old_ones(client, sign_in_as):
    member = sign_in_as()
    refused = client.post(
        "/account/mfa/backup-codes", data={"regenerate-password": "nope"}, headers=HOST
    )
    assert refused.status_code == 422
    done = client.post(
        "/account/mfa/backup-codes", data={"regenerate-password": PASSWORD}, headers=HOST
    )
    assert done.status_code == 200
    assert len(re.findall(r"<code[^>]*>[a-z0-9]{4}-[a-z0-9]{4}</code>", done.data.decode())) == 10
    assert len(entries(member.id, AuditAction.STAFF_MFA_BACKUP_CODES)) == 1


def test_own_sessions_are_listed_and_revoked_but_not_someone_elses(app, client, sign_in_as):
    member = sign_in_as()
    other = app.test_client()
    assert sign_in_staff(other, member).status_code == 303
    page = client.get("/account", headers=HOST)
    assert page.status_code == 200 and b"This browser" in page.data
    assert len(sessions_of(member.id)) == 2
    with db.platform_scope() as session:
        current = session.scalars(
            select(StaffSession.id)
            .where(StaffSession.staff_id == member.id)
            .order_by(StaffSession.id)
        ).all()
    revoke_other = current[-1]
    assert client.post(f"/account/sessions/{revoke_other}/revoke", headers=HOST).status_code == 303
    assert other.get("/tenants", headers=HOST).status_code == 302
    assert entries(member.id, AuditAction.STAFF_SESSION_REVOKE)[-1].detail == {
        "session": revoke_other
    }
    assert client.post("/account/sessions/999999999/revoke", headers=HOST).status_code == 404


def test_revoking_another_members_session_answers_404(app, client, sign_in_as, make_staff):
    sign_in_as()
    victim = make_staff()
    other = app.test_client()
    assert sign_in_staff(other, victim).status_code == 303
    victim_session = sessions_of(victim.id)[0].id
    assert (
        client.post(f"/account/sessions/{victim_session}/revoke", headers=HOST).status_code == 404
    )
    assert other.get("/tenants", headers=HOST).status_code == 200


@pytest.mark.parametrize("session_id", ["99999999999", "0", "2147483648"])
def test_revoking_a_session_id_out_of_range_answers_404_not_500(client, sign_in_as, session_id):
    sign_in_as()
    assert client.post(f"/account/sessions/{session_id}/revoke", headers=HOST).status_code == 404


@pytest.mark.parametrize("code", ["\x00" * 6, "1" * 5000, "ab\x00cd-efgh", "١٢٣٤٥٦"])
def test_hostile_codes_at_the_second_step_are_refused_without_a_500(client, make_staff, code):
    member = make_staff()
    password_step(client, member)
    assert verify(client, code).status_code in (400, 422)  # NUL bytes: refused up front
    assert sessions_of(member.id) == []


def test_revoking_this_browsers_session_signs_out_here(client, sign_in_as):
    member = sign_in_as()
    here = sessions_of(member.id)[0].id
    response = client.post(f"/account/sessions/{here}/revoke", headers=HOST)
    assert response.status_code == 303 and response.location == "/sign-in"
    assert client.get("/tenants", headers=HOST).status_code == 302


def test_the_demo_secret_is_a_valid_totp_secret():
    from portal.demo import DEMO_STAFF_TOTP_SECRET, staff_mfa_lines

    assert len(pyotp.TOTP(DEMO_STAFF_TOTP_SECRET).at(time.time())) == 6
    lines = staff_mfa_lines()
    assert any(
        "otpauth://totp/" in line and "secret=" + DEMO_STAFF_TOTP_SECRET in line for line in lines
    )


def test_staff_mfa_required_is_on_by_default_and_read_from_the_environment(monkeypatch):
    from portal.config import ConfigError, load_settings

    monkeypatch.setenv("PORTAL_DOTENV", "/nonexistent/.env")
    monkeypatch.delenv("STAFF_MFA_REQUIRED", raising=False)
    assert load_settings().staff_mfa_required is True
    monkeypatch.setenv("STAFF_MFA_REQUIRED", "false")
    assert load_settings().staff_mfa_required is False
    monkeypatch.setenv("STAFF_MFA_REQUIRED", "perhaps")
    with pytest.raises(ConfigError, match="STAFF_MFA_REQUIRED must be true or false"):
        load_settings()


def test_the_staff_page_shows_who_has_not_set_up_two_factor(client, sign_in_as, make_staff):
    sign_in_as()
    newcomer = make_staff("support", mfa=False)
    page = client.get("/staff", headers=HOST).data.decode()
    row = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*{re.escape(newcomer.email)}.*?</tr>", page, re.S)
    assert row is not None and "Not set up" in row.group(0)
