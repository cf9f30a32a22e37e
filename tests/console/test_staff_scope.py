"""Staff limited to assigned tenants: what they see, what answers 404, and who may assign."""

import csv
import io
import uuid

import pytest
from sqlalchemy import select

from portal.accounts.validation import AccountError
from portal.compliance.audit import Actor
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.staff.models import StaffTenant, StaffUser
from portal.staff.scope import set_staff_tenants, visible_tenant_ids

HOST = {"Host": "localhost"}
HTMX = {"Host": "localhost", "HX-Request": "true"}


@pytest.fixture
def pair(make_tenant):
    """Two fresh tenants sharing a unique prefix, so a search finds exactly these two."""
    prefix = f"sc{uuid.uuid4().hex[:8]}"
    return prefix, make_tenant(f"{prefix}-mine"), make_tenant(f"{prefix}-other")


def restrict(member, *tenants, all_tenants=False) -> bool:
    with db.platform_scope() as session:
        return set_staff_tenants(
            session,
            session.get(StaffUser, member.id, with_for_update=True),
            all_tenants=all_tenants,
            tenant_ids=[t.id for t in tenants],
            actor=Actor.system("test"),
        )


def assign_entries(member):
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry)
            .where(
                PlatformAuditEntry.action == "console:staff:assign_tenants",
                PlatformAuditEntry.target_id == str(member.id),
            )
            .order_by(PlatformAuditEntry.seq)
        ).all()


def test_restricted_support_lists_only_assigned_tenants(client, sign_in_as, pair):
    prefix, mine, other = pair
    restrict(sign_in_as("support"), mine)
    page = client.get(f"/tenants?q={prefix}", headers=HOST).data.decode()
    assert mine.slug in page and other.slug not in page
    assert "1 tenant matching" in page


def test_restricted_support_gets_404_for_another_tenant(client, sign_in_as, pair):
    _, mine, other = pair
    restrict(sign_in_as("support"), mine)
    assert client.get(f"/tenants/{mine.slug}", headers=HOST).status_code == 200
    hidden = client.get(f"/tenants/{other.slug}", headers=HOST)
    missing = client.get("/tenants/no-such-tenant", headers=HOST)
    assert hidden.status_code == missing.status_code == 404
    assert other.slug not in hidden.data.decode()


def test_restricted_compliance_cannot_verify_another_tenants_trail(client, sign_in_as, pair):
    _, mine, other = pair
    restrict(sign_in_as("compliance"), mine)
    assert client.post(f"/tenants/{other.slug}/audit/verify", headers=HOST).status_code == 404
    assert client.post(f"/tenants/{mine.slug}/audit/verify", headers=HOST).status_code == 303


def test_overview_of_a_restricted_member_shows_only_their_tenants(client, sign_in_as, pair):
    _, mine, other = pair
    restrict(sign_in_as("support"), mine)
    page = client.get("/", headers=HOST).data.decode()
    assert mine.name in page and other.name not in page
    # Recent activity holds only entries about their tenants, not staff sign-ins.
    assert "tenancy:tenant:create" in page
    assert "console:staff:sign_in" not in page


def test_audit_page_and_export_of_a_restricted_member_hold_only_their_tenants(
    client, sign_in_as, pair
):
    _, mine, other = pair
    restrict(sign_in_as("compliance"), mine)
    page = client.get("/audit", headers=HOST).data.decode()
    assert mine.slug in page and other.slug not in page
    assert "console:staff:sign_in" not in page
    export = client.post("/audit.csv", headers=HOST)
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.data.decode())))
    assert rows and {(r["target_type"], r["target_id"]) for r in rows} == {("tenant", str(mine.id))}


def test_restricted_member_with_no_tenants_sees_none(client, sign_in_as, pair):
    prefix, mine, _ = pair
    member = sign_in_as("support")
    restrict(member, mine)
    with db.platform_scope() as session:  # the tenant was purged, say: no assignment left
        session.execute(StaffTenant.__table__.delete().where(StaffTenant.staff_id == member.id))
    page = client.get("/tenants", headers=HOST).data.decode()
    assert "0 tenants" in page and "A platform admin chooses the tenants you see" in page
    assert prefix not in page
    assert client.get(f"/tenants/{mine.slug}", headers=HOST).status_code == 404


def test_platform_admin_sees_every_tenant_whatever_the_flag(client, sign_in_as, pair):
    prefix, mine, other = pair
    admin = sign_in_as()
    with db.platform_scope() as session:  # the flag alone, as if set by hand in the database
        session.get(StaffUser, admin.id).all_tenants = False
    page = client.get(f"/tenants?q={prefix}", headers=HOST).data.decode()
    assert mine.slug in page and other.slug in page
    assert client.get(f"/tenants/{other.slug}", headers=HOST).status_code == 200
    with db.platform_scope() as session:
        assert visible_tenant_ids(session, session.get(StaffUser, admin.id)) is None


def test_set_staff_tenants_is_audited_with_before_and_after(make_staff, pair):
    _, mine, other = pair
    member = make_staff("support")
    assert restrict(member, mine, other) is True
    assert restrict(member, other, mine) is False  # the same set: nothing changes
    assert restrict(member, mine) is True
    assert restrict(member, all_tenants=True) is True
    details = [e.detail for e in assign_entries(member)]
    assert details == [
        {
            "before": {"all_tenants": True, "tenants": []},
            "after": {"all_tenants": False, "tenants": sorted([mine.slug, other.slug])},
        },
        {
            "before": {"all_tenants": False, "tenants": sorted([mine.slug, other.slug])},
            "after": {"all_tenants": False, "tenants": [mine.slug]},
        },
        {
            "before": {"all_tenants": False, "tenants": [mine.slug]},
            "after": {"all_tenants": True, "tenants": []},
        },
    ]
    with db.platform_scope() as session:
        assert not session.scalars(
            select(StaffTenant).where(StaffTenant.staff_id == member.id)
        ).all()


def test_set_staff_tenants_refuses_admins_unknown_ids_and_an_empty_choice(make_staff, pair):
    _, mine, _ = pair
    admin = make_staff("platform_admin")
    with pytest.raises(AccountError, match="Platform admins always see every tenant"):
        restrict(admin, mine)
    member = make_staff("support")
    for ids in ([mine.id, 2_000_000_000], [2**40]):
        with pytest.raises(AccountError, match="No tenant with id"):
            with db.platform_scope() as session:
                set_staff_tenants(
                    session,
                    session.get(StaffUser, member.id),
                    all_tenants=False,
                    tenant_ids=ids,
                    actor=Actor.system("test"),
                )
    with pytest.raises(AccountError, match="at least one tenant"):
        restrict(member)
    assert assign_entries(admin) == assign_entries(member) == []


def test_admin_assigns_tenants_on_the_staff_page(client, sign_in_as, make_staff, pair):
    _, mine, other = pair
    sign_in_as()
    member = make_staff("support")
    form = client.get(f"/staff/{member.id}/tenants", headers=HOST)
    assert form.status_code == 200
    assert f"Save tenants for {member.email}" in form.data.decode()
    assert mine.slug in form.data.decode()
    saved = client.post(
        f"/staff/{member.id}/tenants",
        data={"scope": "some", "tenant_ids": [str(mine.id)]},
        headers=HOST,
    )
    assert saved.status_code == 303 and saved.headers["Location"] == "/staff"
    page = client.get("/staff", headers=HOST).data.decode()
    assert "now sees 1 tenant" in page  # the toast
    assert "1 tenant\n" in page or "1 tenant " in page
    assert [e.detail["after"]["tenants"] for e in assign_entries(member)] == [[mine.slug]]
    reopened = client.get(f"/staff/{member.id}/tenants", headers=HOST).data.decode()
    assert f'<option selected value="{mine.id}">' in reopened
    assert f'<option value="{other.id}">' in reopened


def test_assignment_form_errors_come_back_inline_with_422(client, sign_in_as, make_staff):
    sign_in_as()
    member = make_staff("support")
    for data, message in [
        ({"scope": "some", "tenant_ids": ["999999999"]}, "No tenant with id 999999999"),
        ({"scope": "some", "tenant_ids": ["not-a-number"]}, "Invalid choice"),
        ({"scope": "some"}, "Choose at least one tenant"),
        ({"tenant_ids": []}, "Choose All tenants or Only these tenants"),
    ]:
        response = client.post(f"/staff/{member.id}/tenants", data=data, headers=HTMX)
        body = response.data.decode()
        assert response.status_code == 422, data
        assert body.lstrip().startswith('<div id="staff-assign"') and message in body, body
    plain = client.post(
        f"/staff/{member.id}/tenants", data={"scope": "some", "tenant_ids": ["0"]}, headers=HOST
    )
    assert (
        plain.status_code == 422 and b"<html" in plain.data and b'aria-invalid="true"' in plain.data
    )
    assert assign_entries(member) == []


def test_assigning_tenants_to_a_platform_admin_is_refused_inline(client, sign_in_as, make_staff):
    sign_in_as()
    admin = make_staff("platform_admin")
    page = client.get(f"/staff/{admin.id}/tenants", headers=HOST).data.decode()
    assert "platform admins always see every tenant" in page
    response = client.post(f"/staff/{admin.id}/tenants", data={"scope": "all"}, headers=HTMX)
    assert response.status_code == 422
    assert "Platform admins always see every tenant" in response.data.decode()


def test_support_cannot_change_assignments(client, sign_in_as, make_staff, pair):
    _, mine, _ = pair
    sign_in_as("support")
    member = make_staff("support")
    assert client.get(f"/staff/{member.id}/tenants", headers=HOST).status_code == 403
    response = client.post(
        f"/staff/{member.id}/tenants",
        data={"scope": "some", "tenant_ids": [str(mine.id)]},
        headers=HOST,
    )
    assert response.status_code == 403
    assert assign_entries(member) == []
    page = client.get("/staff", headers=HOST).data.decode()
    assert "All tenants" in page and f"/staff/{member.id}/tenants" not in page


def test_assignment_pages_need_sign_in_and_an_existing_member(client, sign_in_as):
    assert client.get("/staff/1/tenants", headers=HOST).status_code == 302
    assert client.post("/staff/1/tenants", data={"scope": "all"}, headers=HOST).status_code == 302
    sign_in_as()
    assert client.get("/staff/999999999/tenants", headers=HOST).status_code == 404
