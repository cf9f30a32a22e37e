"""Input that answered 500 on a running portal (issue 11 §7), each tried again: dates at the end
of the calendar, bulk requests past PostgreSQL's bind-parameter limit, email addresses whose
lower case Python and PostgreSQL disagree on, and (found by tests/test_property_inputs.py) ids
and numbers past what their columns hold. Each now gets a clear 4xx (or works) and changes
nothing it should not. Tampered cursors: tests/site/test_tampered_cursors.py and
tests/console/test_tenant_list.py."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import delete, func, select

from portal.accounts import lifecycle, validation
from portal.accounts.models import User, UserSession
from portal.compliance.audit import Actor
from portal.compliance.models import PlatformAuditEntry, TenantAuditEntry
from portal.db import db
from portal.staff.members import create_staff
from portal.staff.models import StaffUser
from portal.validation import MAX_BULK_IDS
from tests.conftest import PASSWORD
from tests.site import conftest as site_fixtures
from tests.site.support import host

# The tenant site's fixtures, used here too.
admin, site_user, sign_in_site = (
    site_fixtures.admin,
    site_fixtures.site_user,
    site_fixtures.sign_in_site,
)

CONSOLE = {"Host": "localhost"}
SYSTEM = Actor.system("test")
TOO_MANY = 70_000  # PostgreSQL binds at most 65,535 parameters in one statement


def body(response) -> str:
    return response.get_data(as_text=True)


def last_seq(tenant) -> int:
    with db.tenant_scope(tenant) as session:
        return session.scalar(select(func.max(TenantAuditEntry.seq))) or 0


# ---- dates at the end of the calendar ------------------------------------------------------

EDGE_DATES = ["9999-12-31", "0001-01-01", "9999-12-30", "2026-02-29", "10000-01-01"]


@pytest.mark.parametrize("day", EDGE_DATES)
def test_console_audit_takes_any_date_without_overflowing(client, sign_in_as, day):
    sign_in_as()
    for query in (f"to={day}", f"from={day}", f"from={day}&to={day}"):
        response = client.get(f"/audit?{query}", headers=CONSOLE)
        assert response.status_code == 200, (query, body(response)[:300])


def test_console_audit_to_the_last_day_of_the_calendar_shows_everything(client, sign_in_as):
    sign_in_as()
    everything = client.get("/audit", headers=CONSOLE)
    to_the_end = client.get("/audit?to=9999-12-31", headers=CONSOLE)
    assert to_the_end.status_code == 200
    assert to_the_end.data.count(b"<tr") == everything.data.count(b"<tr")


@pytest.mark.parametrize("day", EDGE_DATES)
def test_tenant_audit_and_users_list_take_any_date_without_overflowing(client, tenant, admin, day):
    for path in (
        f"/audit?to={day}",
        f"/audit?from={day}&to={day}",
        f"/users?signed_in_after={day}",
        f"/users?signed_in_before={day}",
        f"/users?signed_in_after={day}&signed_in_before={day}&sort=-last_sign_in",
    ):
        response = client.get(path, headers=host(tenant))
        assert response.status_code == 200, (path, body(response)[:300])


# ---- bulk requests past PostgreSQL's parameter limit ---------------------------------------


def test_bulk_user_action_with_more_ids_than_allowed_is_refused_with_a_message(
    client, tenant, site_user, admin
):
    target = site_user(tenant)
    before = last_seq(tenant)
    for action, extra in (("suspend", {}), ("reactivate", {}), ("delete", {"confirmed": "yes"})):
        ids = [str(target.id)] + [str(i) for i in range(10, 10 + TOO_MANY)]
        response = client.post(
            "/users/bulk", data={"ids": ids, "action": action, **extra}, headers=host(tenant)
        )
        assert response.status_code == 422, body(response)[:300]
        assert f"Select at most {MAX_BULK_IDS:,} users at a time" in body(response)
    with db.tenant_scope(tenant) as session:
        assert session.get(User, target.id).status == "active"
    assert last_seq(tenant) == before  # nothing happened, nothing recorded


def test_bulk_user_action_at_the_cap_still_works(client, tenant, site_user, admin):
    target = site_user(tenant)
    ids = [str(target.id)] + [str(2_000_000 + i) for i in range(MAX_BULK_IDS - 1)]
    response = client.post(
        "/users/bulk",
        data={"ids": ids, "action": "suspend", "confirmed": "yes"},
        headers=host(tenant),
    )
    assert response.status_code == 303, body(response)[:300]
    with db.tenant_scope(tenant) as session:
        assert session.get(User, target.id).status == "suspended"


def test_bulk_session_revoke_with_more_ids_than_allowed_is_refused_with_a_message(
    client, tenant, admin
):
    with db.tenant_scope(tenant) as session:
        live = session.scalar(select(func.count()).select_from(UserSession))
    before = last_seq(tenant)
    ids = [str(i) for i in range(1, 1 + TOO_MANY)]
    for extra in ({}, {"confirmed": "yes"}):
        response = client.post("/sessions/revoke", data={"ids": ids, **extra}, headers=host(tenant))
        assert response.status_code == 422, body(response)[:300]
        assert f"Select at most {MAX_BULK_IDS:,} sessions at a time" in body(response)
    with db.tenant_scope(tenant) as session:
        assert session.scalar(select(func.count()).select_from(UserSession)) == live
    assert last_seq(tenant) == before
    assert client.get("/sessions", headers=host(tenant)).status_code == 200  # still signed in


def test_staff_tenant_assignment_with_more_ids_than_postgresql_binds_is_refused(
    client, sign_in_as, make_staff
):
    sign_in_as()
    member = make_staff("support")
    ids = [str(i) for i in range(1, 1 + TOO_MANY)]
    response = client.post(
        f"/staff/{member.id}/tenants", data={"scope": "some", "tenant_ids": ids}, headers=CONSOLE
    )
    assert response.status_code == 422, body(response)[:300]
    with db.platform_scope() as session:
        assert session.get(StaffUser, member.id).all_tenants is True


# ---- emails whose lower case Python and PostgreSQL disagree on -----------------------------
# Python lowers "İ" (U+0130) to "i̇" (two code points), PostgreSQL to "i"; a final "Σ" to "ς"
# in Python and "σ" in PostgreSQL. Lookups compare Python's lower case with the database's
# lower(email) index, so such an address could never be found again, and a second account
# differing only there passed the duplicate check and hit the unique index: 500.

AMBIGUOUS = ["İnci@example.com", "inci@exİmple.com", "ΟΔΥΣ@example.gr", "İ" * 60 + "@example.com"]


@pytest.mark.parametrize("email", AMBIGUOUS)
def test_validate_email_refuses_letters_without_a_single_lower_case(email):
    with pytest.raises(validation.AccountError) as refused:
        validation.validate_email(email)
    assert "lower case" in str(refused.value) and refused.value.field == "email"


@pytest.mark.parametrize(
    "email", ["inci@example.com", "i̇nci@example.com", "Müller@example.de", "ΟΔΥΣΣΕΑΣ.x@example.gr"]
)
def test_validate_email_accepts_letters_whose_lower_case_is_one_letter(email):
    assert validation.validate_email(email) == email


def test_inviting_a_dotted_capital_i_twin_of_an_existing_user_is_refused_not_a_500(
    client, tenant, site_user, admin
):
    site_user(tenant, email="inci@example.com")
    response = client.post(
        "/users/invite", data={"email": "İnci@example.com", "name": "Twin"}, headers=host(tenant)
    )
    assert response.status_code == 422, body(response)[:300]
    assert "lower case" in body(response)
    with db.tenant_scope(tenant) as session:
        assert (
            session.scalar(select(func.count()).select_from(User).where(User.name == "Twin")) == 0
        )


def test_changing_an_email_to_a_dotted_capital_i_twin_is_refused_not_a_500(
    client, tenant, site_user, admin
):
    site_user(tenant, email="inci@example.com")
    other = site_user(tenant, email="other@example.com")
    response = client.post(
        f"/users/{other.id}/profile",
        data={"email": "İnci@example.com", "name": "Other"},
        headers=host(tenant),
    )
    assert response.status_code == 422, body(response)[:300]
    with db.tenant_scope(tenant) as session:
        assert session.get(User, other.id).email == "other@example.com"


def test_creating_a_user_with_a_final_sigma_twin_is_refused_not_a_500(tenant):
    with db.tenant_scope(tenant) as session:
        lifecycle.create_user(session, email="οδυσ@example.gr", actor=SYSTEM, status="active")
    with pytest.raises(validation.AccountError), db.tenant_scope(tenant) as session:
        lifecycle.create_user(session, email="ΟΔΥΣ@example.gr", actor=SYSTEM, status="active")


def test_staff_with_a_dotted_capital_i_twin_is_refused_not_a_500(app):
    email = f"inci-{secrets.token_hex(4)}@msp.example"
    with db.platform_scope() as session:
        create_staff(session, email=email, role="support", password=PASSWORD + "!", actor=SYSTEM)
    try:
        with pytest.raises(validation.AccountError) as refused, db.platform_scope() as session:
            create_staff(
                session,
                email="İ" + email[1:],
                role="support",
                password=PASSWORD + "!",
                actor=SYSTEM,
            )
        assert refused.value.field == "email"
    finally:
        with db.platform_scope() as session:
            session.execute(delete(StaffUser).where(StaffUser.email == email))


def test_staff_email_longer_than_the_column_is_refused_not_a_500(app):
    email = "a@" + "b" * 400 + ".example"
    with pytest.raises(validation.AccountError), db.platform_scope() as session:
        create_staff(session, email=email, role="support", password=PASSWORD + "!", actor=SYSTEM)


def test_staff_form_refuses_a_dotted_capital_i_with_a_message(client, sign_in_as):
    sign_in_as()
    with db.platform_scope() as session:
        before = session.scalar(select(func.max(PlatformAuditEntry.seq)))
    response = client.post(
        "/staff",
        data={"email": "İnci@msp.example", "role": "support", "password": PASSWORD + "!"},
        headers=CONSOLE,
    )
    assert response.status_code == 422, body(response)[:300]
    assert "lower case" in body(response)
    with db.platform_scope() as session:
        assert session.scalar(select(func.max(PlatformAuditEntry.seq))) == before


@pytest.mark.parametrize("email", AMBIGUOUS + ["ı@example.com", "ſ@example.com"])
def test_signing_in_with_ambiguous_letters_is_a_plain_refusal(client, tenant, site_user, email):
    site_user(tenant, email="inci@example.com")
    response = client.post(
        "/sign-in", data={"email": email, "password": PASSWORD}, headers=host(tenant)
    )
    assert response.status_code in (401, 422), body(response)[:300]
    response = client.post("/sign-in", data={"email": email, "password": PASSWORD}, headers=CONSOLE)
    assert response.status_code in (401, 422), body(response)[:300]


def test_a_page_never_selects_more_than_one_bulk_request_takes():
    from portal.accounts import listing
    from portal.site import sessions_views

    assert listing.PAGE_SIZE <= MAX_BULK_IDS
    assert sessions_views.PAGE_SIZE <= MAX_BULK_IDS


# ---- numbers no column can hold -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/users/2147483648",
        "/users/99999999999999999999999/profile",
        "/sessions/9223372036854775808/revoke",
        "/account/devices/2147483648/forget",
        "/account/sessions/2147483648/revoke",
    ],
)
def test_ids_in_the_path_beyond_any_row_are_a_404_on_the_tenant_site(client, tenant, admin, path):
    method = client.get if path.count("/") == 2 else client.post
    assert method(path, headers=host(tenant)).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/staff/2147483648/tenants",
        "/outbox/9223372036854775808",
        "/account/sessions/2147483648/revoke",
    ],
)
def test_ids_in_the_path_beyond_any_row_are_a_404_in_the_console(client, sign_in_as, path):
    sign_in_as()
    method = client.get if "revoke" not in path else client.post
    assert method(path, headers=CONSOLE).status_code == 404


def test_limits_past_their_columns_are_a_form_error(client, sign_in_as, tenant):
    sign_in_as()
    huge = "9" * 400
    response = client.post(
        f"/tenants/{tenant.slug}/limits",
        data={"max_users": huge, "max_storage_bytes": str(2**63), "api_requests_per_minute": ""},
        headers=CONSOLE,
    )
    assert response.status_code == 422, body(response)[:300]
    assert "Enter 0 or more, or leave empty." in body(response)
    response = client.post(
        "/tenants/new",
        data={"slug": "never-made", "name": "Never made", "max_users": str(2**31)},
        headers=CONSOLE,
    )
    assert response.status_code == 422, body(response)[:300]
    response = client.post(
        f"/tenants/{tenant.slug}/limits",
        data={"max_storage_bytes": str(2**40)},  # bigint: more than 2**31 is fine
        headers=CONSOLE,
    )
    assert response.status_code == 303, body(response)[:300]


def test_security_settings_past_any_float_are_a_form_error(client, tenant, admin):
    response = client.post(
        "/settings/security",
        data={
            "mfa_policy": "off",
            "mfa_grace_days": "9" * 400,
            "idle_timeout_minutes": "30",
            "absolute_timeout_minutes": "600",
            "password_min_length": "12",
        },
        headers=host(tenant),
    )
    assert response.status_code == 422, body(response)[:300]
    assert "Enter a whole number from 0 to 90." in body(response)
