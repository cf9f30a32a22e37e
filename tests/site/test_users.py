"""The tenant's users list: search, filters, sorts, keyset pages, bulk actions and invitations."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from portal.accounts import lifecycle, listing, roles
from portal.accounts.models import User, UserRole, UserSession
from portal.compliance.audit import AuditAction
from portal.db import db
from portal.mail_models import OutboxMessage
from portal.tenancy.urls import tenant_base_url
from tests.site.support import SYSTEM, audit_entries, body, host, htmx


def set_columns(tenant, user_id, **values):
    with db.tenant_scope(tenant) as session:
        session.execute(update(User).where(User.id == user_id).values(**values))


def listed(client, tenant, query="") -> str:
    """The list's results (the HTMX fragment: no navigation around it)."""
    response = client.get(f"/users{query}", headers=htmx(tenant))
    assert response.status_code == 200
    return body(response)


def status_of(tenant, user_id) -> str:
    with db.tenant_scope(tenant) as session:
        return session.get(User, user_id).status


# ---- access -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/users", "/users/invite", "/users?q=a&status=active"])
def test_signed_out_users_pages_redirect_to_sign_in(client, tenant, path):
    response = client.get(path, headers=host(tenant))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=")


def test_signed_out_bulk_post_redirects_to_sign_in(client, tenant):
    response = client.post(
        "/users/bulk", data={"ids": "1", "action": "suspend"}, headers=host(tenant)
    )
    assert response.status_code == 302


def test_member_without_permission_gets_403(client, tenant, site_user, sign_in_site):
    other = site_user(tenant)
    sign_in_site(tenant, site_user(tenant))
    assert client.get("/users", headers=host(tenant)).status_code == 403
    assert client.get("/users/invite", headers=host(tenant)).status_code == 403
    response = client.post(
        "/users/bulk",
        data={"ids": str(other.id), "action": "suspend", "confirmed": "yes"},
        headers=host(tenant),
    )
    assert response.status_code == 403
    assert status_of(tenant, other.id) == "active"


def test_compliance_officer_sees_the_list_but_cannot_change_it(
    client, tenant, site_user, sign_in_site
):
    target = site_user(tenant)
    sign_in_site(tenant, site_user(tenant, ["compliance_officer"]))
    page = client.get("/users", headers=host(tenant))
    assert page.status_code == 200
    assert target.email in body(page)
    assert 'name="ids"' not in body(page) and "Invite users" not in body(page)
    data = {"ids": str(target.id), "action": "delete", "confirmed": "yes"}
    assert client.post("/users/bulk", data=data, headers=host(tenant)).status_code == 403


def test_list_shows_only_this_tenants_users(client, make_tenant, site_user, admin, tenant):
    other = make_tenant()
    hidden = site_user(other, email="hidden@other.example")
    mine = site_user(tenant, email="mine@acme.example")
    page = body(client.get("/users", headers=host(tenant)))
    assert mine.email in page and hidden.email not in page


# ---- search, filters, sorts ---------------------------------------------------------------


def test_search_matches_email_or_name_case_insensitively(client, tenant, site_user, admin):
    site_user(tenant, email="wile@rockets.example", name="Wile Coyote")
    site_user(tenant, email="road@runner.example", name="Road Runner")
    by_name = listed(client, tenant, "?q=COYOTE")
    assert "wile@rockets.example" in by_name and "road@runner.example" not in by_name
    by_email = listed(client, tenant, "?q=runner.EX")
    assert "road@runner.example" in by_email and "wile@rockets.example" not in by_email
    assert "1 user matching" in by_email


def test_search_treats_like_wildcards_as_text(client, tenant, site_user, admin):
    site_user(tenant, email="plain@example.com")
    page = listed(client, tenant, "?q=%25")
    assert "No users match" in page and "plain@example.com" not in page


def test_search_finds_word_prefixes_and_an_email_prefix_with_its_at_sign(
    client, tenant, site_user, admin
):
    site_user(tenant, email="alex@acme.example", name="Alex Stone")
    site_user(tenant, email="alexandra.schmidt@acme.example", name="Alexandra Schmidt")
    by_prefix = listed(client, tenant, "?q=alex%40")
    assert "alex@acme.example" in by_prefix and "alexandra.schmidt@" not in by_prefix
    by_words = listed(client, tenant, "?q=Alexa+schm")
    assert "alexandra.schmidt@" in by_words and "alex@acme.example" not in by_words
    # Deliberately no longer a contains-search: the middle of a word is not indexable.
    assert "No users match" in listed(client, tenant, "?q=chmidt")


def test_status_filter_defaults_to_everyone_but_the_deleted(client, tenant, site_user, admin):
    gone = site_user(tenant, email="gone@example.com")
    paused = site_user(tenant, email="paused@example.com")
    with db.tenant_scope(tenant) as session:
        lifecycle.delete_user(session, lifecycle.get_user(session, gone.id), actor=SYSTEM)
        lifecycle.suspend_user(session, lifecycle.get_user(session, paused.id), actor=SYSTEM)
    default = body(client.get("/users", headers=host(tenant)))
    assert "paused@example.com" in default and "gone@example.com" not in default
    suspended = listed(client, tenant, "?status=suspended")
    assert "paused@example.com" in suspended and admin.email not in suspended


def test_recycle_bin_lists_deleted_users_with_their_restore_deadline(
    client, tenant, site_user, admin
):
    gone = site_user(tenant, email="gone@example.com")
    with db.tenant_scope(tenant) as session:
        lifecycle.delete_user(session, lifecycle.get_user(session, gone.id), actor=SYSTEM)
    page = listed(client, tenant, "?status=deleted")
    assert "gone@example.com" in page and admin.email not in page
    assert "Restorable until" in page and "in 29 days" in page


def test_role_filter_and_member_filter(client, tenant, site_user, admin):
    officer = site_user(tenant, ["compliance_officer"], email="officer@example.com")
    member = site_user(tenant, email="member@example.com")
    officers = listed(client, tenant, "?role=compliance_officer")
    assert officer.email in officers and member.email not in officers
    members = listed(client, tenant, "?role=member")
    assert member.email in members
    assert officer.email not in members and admin.email not in members


def test_mfa_and_last_sign_in_filters(client, tenant, site_user, admin):
    secure = site_user(tenant, email="secure@example.com")
    old = site_user(tenant, email="old@example.com")
    set_columns(tenant, secure.id, mfa_enabled_at=datetime.now(UTC))
    set_columns(tenant, old.id, last_sign_in_at=datetime(2020, 5, 1, 12, tzinfo=UTC))
    on = listed(client, tenant, "?mfa=on")
    assert secure.email in on and old.email not in on
    off = listed(client, tenant, "?mfa=off")
    assert old.email in off and secure.email not in off
    before = listed(client, tenant, "?signed_in_before=2021-01-01")
    assert old.email in before and admin.email not in before and secure.email not in before
    after = listed(client, tenant, f"?signed_in_after={date.today()}")
    assert admin.email in after and old.email not in after


def test_nonsense_filters_and_cursors_give_the_first_page_not_an_error(client, tenant, admin):
    for query in (
        "status=bogus&mfa=maybe&sort=password",
        "signed_in_after=yesterday&signed_in_before=2024-13-45",
        "after=!!!&before=xyz",
        "sort=last_sign_in&after=d.bm9wZQ",
        "role=" + "x" * 500,
    ):
        response = client.get(f"/users?{query}", headers=host(tenant))
        assert response.status_code == 200, query


def test_sorting_by_name_descending_puts_rows_in_that_order(client, tenant, site_user, admin):
    site_user(tenant, name="aaron", email="z1@example.com")
    site_user(tenant, name="Zelda", email="a1@example.com")
    page = listed(client, tenant, "?sort=-name")
    assert page.index("Zelda") < page.index("Ada Admin") < page.index("aaron")
    assert 'aria-sort="descending"' in page


def test_htmx_search_returns_the_results_fragment_and_a_clean_url(client, tenant, admin):
    response = client.get("/users?q=ada&status=&role=&mfa=&signed_in_after=", headers=htmx(tenant))
    assert response.status_code == 200
    assert "<html" not in body(response) and 'id="results"' in body(response)
    assert response.headers["HX-Push-Url"] == "/users?q=ada"
    assert "HX-Request" in response.headers["Vary"]


# ---- keyset pages -------------------------------------------------------------------------


def walk(session, sort, size=2, **filters):
    """Every row, by following Next from the first page; then back again with Previous."""
    pages, after = [], None
    while True:
        page = listing.list_users(session, {"sort": sort, "after": after, **filters}, size=size)
        total = page.total
        pages.append([row.id for row in page.rows])
        if not page.next_cursor:
            break
        after = page.next_cursor
    back, before = [pages[-1]], page.prev_cursor
    while before:
        page = listing.list_users(session, {"sort": sort, "before": before, **filters}, size=size)
        back.append([row.id for row in page.rows])
        before = page.prev_cursor
    return pages, back[::-1], total


@pytest.mark.parametrize(
    "sort",
    ["email", "-email", "name", "-name", "created", "-created", "last_sign_in", "-last_sign_in"],
)
def test_keyset_pages_visit_every_user_once_in_order_both_ways(tenant, site_user, sort):
    now = datetime.now(UTC)
    made = []
    for i, name in enumerate(["Cleo", "anna", "Bert", "bert", "Dora", "", "Emil"]):
        user = site_user(tenant, name=name, email=f"p{(i * 3) % 7}@example.com")
        made.append(user.id)
        if i % 3:  # some never signed in; two share a sign-in time
            set_columns(tenant, user.id, last_sign_in_at=now - timedelta(days=min(i, 4)))
    with db.tenant_scope(tenant) as session:
        rows = session.execute(
            select(User.id, User.email, User.name, User.created_at, User.last_sign_in_at)
        ).all()
        pages, back, total = walk(session, sort)
    key = sort.lstrip("-")
    never = datetime.min.replace(tzinfo=UTC)  # "never" is the oldest sign-in
    value = {
        "email": lambda r: (r.email.lower(), r.id),
        "name": lambda r: (r.name.lower(), r.id),
        "created": lambda r: (r.created_at, r.id),
        "last_sign_in": lambda r: (r.last_sign_in_at or never, r.id),
    }[key]
    expected = [r.id for r in sorted(rows, key=value, reverse=sort.startswith("-"))]
    assert [i for page in pages for i in page] == expected
    assert back == pages
    assert total == len(made) == len(expected)
    assert all(len(page) == 2 for page in pages[:-1])


def test_a_filtered_walk_crosses_from_never_signed_in_to_dated_users(tenant, site_user):
    dated = site_user(tenant, name="Dated")
    set_columns(tenant, dated.id, last_sign_in_at=datetime.now(UTC))
    never = [site_user(tenant, name=f"Never {i}").id for i in range(3)]
    with db.tenant_scope(tenant) as session:
        pages, back, total = walk(session, "last_sign_in", size=2, mfa="off")
    assert pages == [never[:2], [never[2], dated.id]] and back == pages and total == 4


def test_next_link_reaches_the_second_page(client, tenant, site_user, admin):
    for i in range(3):
        site_user(tenant, email=f"bulk{i}@example.com")
    with db.tenant_scope(tenant) as session:
        page = listing.list_users(session, {}, size=2)
    assert page.total == 4 and page.next_cursor
    response = client.get(f"/users?after={page.next_cursor}", headers=host(tenant))
    assert response.status_code == 200
    assert "bulk2@example.com" in body(response) and "bulk1@example.com" not in body(response)
    assert "Previous" in body(response)


def test_roles_of_a_page_come_from_one_query(tenant, site_user):
    a = site_user(tenant, ["compliance_officer", "tenant_admin"])
    b = site_user(tenant)
    with db.tenant_scope(tenant) as session:
        keys = listing.role_keys_by_user(session, [a.id, b.id])
    assert keys == {a.id: ["compliance_officer", "tenant_admin"]}


# ---- bulk actions -------------------------------------------------------------------------


def bulk(client, tenant, ids, action, **extra):
    data = {"ids": [str(i) for i in ids], "action": action, "next": "/users?status=active", **extra}
    return client.post("/users/bulk", data=data, headers=host(tenant))


def test_dangerous_bulk_action_asks_first_naming_the_consequence(client, tenant, site_user, admin):
    targets = [site_user(tenant) for _ in range(2)]
    response = bulk(client, tenant, [t.id for t in targets], "suspend")
    assert response.status_code == 200
    page = body(response)
    assert "Suspend 2 users?" in page
    assert "cannot sign in until reactivated" in page
    assert 'name="confirmed" value="yes"' in page
    assert all(status_of(tenant, t.id) == "active" for t in targets)
    assert not audit_entries(tenant, AuditAction.USER_SUSPEND)


def test_confirmed_bulk_suspend_changes_each_user_and_reports_the_refusal(
    client, tenant, site_user, admin
):
    targets = [site_user(tenant) for _ in range(2)]
    ids = [admin.id, *(t.id for t in targets)]
    response = bulk(client, tenant, ids, "suspend", confirmed="yes")
    assert response.status_code == 303
    assert response.headers["Location"] == "/users?status=active"
    assert all(status_of(tenant, t.id) == "suspended" for t in targets)
    assert status_of(tenant, admin.id) == "active"
    entries = audit_entries(tenant, AuditAction.USER_SUSPEND)
    assert {e.target_id for e in entries} == {str(t.id) for t in targets}
    assert all(e.actor_id == str(admin.id) for e in entries)
    page = body(client.get("/users?status=active", headers=host(tenant)))
    assert "2 users suspended, 1 refused" in page  # the toast
    assert "1 user not changed" in page and "You cannot suspend yourself." in page
    # Shown once.
    assert "not changed" not in body(client.get("/users", headers=host(tenant)))


def test_bulk_over_htmx_returns_the_list_with_a_toast(client, tenant, site_user, admin):
    target = site_user(tenant)
    response = client.post(
        "/users/bulk",
        data={"ids": [str(target.id)], "action": "revoke_sessions", "confirmed": "yes"},
        headers=htmx(tenant),
    )
    assert response.status_code == 200
    assert (
        json.loads(response.headers["HX-Trigger"])["toast"]
        == "0 users signed out everywhere, 1 already so"
    )
    assert 'id="results"' in body(response) and "<html" not in body(response)


def test_bulk_assign_role_and_reactivate(client, tenant, site_user, admin):
    a, b = site_user(tenant), site_user(tenant, ["compliance_officer"])
    response = bulk(client, tenant, [a.id, b.id], "assign_role", role="compliance_officer")
    assert response.status_code == 303
    with db.tenant_scope(tenant) as session:
        assert roles.user_role_keys(session, a.id) == ["compliance_officer"]
    assert len(audit_entries(tenant, AuditAction.USER_ROLES_CHANGE, a.id)) == 1
    assert not audit_entries(tenant, AuditAction.USER_ROLES_CHANGE, b.id)
    page = body(client.get("/users", headers=host(tenant)))
    assert "1 user given the role Compliance officer, 1 already so" in page


def test_bulk_delete_signs_out_and_moves_to_recycle_bin(
    app, client, tenant, site_user, sign_in_site, admin
):
    target = site_user(tenant)
    other_browser = app.test_client()
    sign_in_site(tenant, target, client=other_browser)
    assert bulk(client, tenant, [target.id], "delete", confirmed="yes").status_code == 303
    assert status_of(tenant, target.id) == "deleted"
    assert other_browser.get("/", headers=host(tenant)).status_code == 302
    assert audit_entries(tenant, AuditAction.USER_DELETE, target.id)


def test_bulk_revoke_sessions_needs_the_revoke_permission(client, tenant, site_user, sign_in_site):
    with db.tenant_scope(tenant) as session:
        roles.create_role(
            session,
            name="User clerk",
            permissions=["accounts:user:view", "accounts:user:manage"],
            actor=SYSTEM,
        )
    target = site_user(tenant)
    sign_in_site(tenant, site_user(tenant, ["user_clerk"]))
    assert bulk(client, tenant, [target.id], "revoke_sessions", confirmed="yes").status_code == 403
    assert bulk(client, tenant, [target.id], "reactivate").status_code == 303


@pytest.mark.parametrize(
    "data",
    [
        {"action": "suspend", "confirmed": "yes"},
        {"ids": "1", "action": ""},
        {"ids": "1", "action": "launch"},
        {"ids": "one", "action": "suspend"},
        {"ids": "1", "action": "assign_role", "role": "pope"},
    ],
)
def test_bad_bulk_input_is_422_not_500(client, tenant, admin, data):
    response = client.post("/users/bulk", data=data, headers=host(tenant))
    assert response.status_code == 422
    assert 'id="bulk-error"' in body(response)


def test_bulk_never_touches_another_tenants_users(client, make_tenant, tenant, site_user, admin):
    other = make_tenant()
    for _ in range(4):
        victim = site_user(other)
    with db.tenant_scope(tenant) as session:
        assert session.get(User, victim.id) is None
    response = bulk(client, tenant, [victim.id], "suspend", confirmed="yes")
    assert response.status_code == 303
    assert status_of(other, victim.id) == "active"


def test_bulk_next_cannot_redirect_elsewhere(client, tenant, site_user, admin):
    target = site_user(tenant)
    response = bulk(client, tenant, [target.id], "reactivate", next="https://evil.example/users")
    assert response.headers["Location"] == "/users"


def test_bulk_post_without_csrf_token_is_refused(app, client, tenant, site_user, admin):
    target = site_user(tenant)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = bulk(client, tenant, [target.id], "delete", confirmed="yes")
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 400
    assert status_of(tenant, target.id) == "active"


# ---- invitations --------------------------------------------------------------------------


def test_invite_creates_an_invited_user_and_mails_a_link(client, tenant, admin):
    assert client.get("/users/invite", headers=host(tenant)).status_code == 200
    response = client.post(
        "/users/invite",
        data={"email": "new@example.com", "name": "New Person", "roles": ["compliance_officer"]},
        headers=host(tenant),
    )
    assert response.status_code == 303
    with db.tenant_scope(tenant) as session:
        user = lifecycle.find_user(session, "new@example.com")
        assert user.status == "invited" and user.name == "New Person"
        assert roles.user_role_keys(session, user.id) == ["compliance_officer"]
    assert response.headers["Location"] == f"/users/{user.id}"
    [entry] = audit_entries(tenant, AuditAction.USER_INVITE, user.id)
    assert entry.actor_id == str(admin.id)
    with db.platform_scope() as session:
        mail = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.to_addr == "new@example.com", OutboxMessage.tenant_slug == tenant.slug
            )
        ).one()
    base = tenant_base_url(tenant, client.application.config["PORTAL"])
    assert re.search(rf"{re.escape(base)}/invitation/\S+", mail.body)
    page = body(client.get(response.headers["Location"], headers=host(tenant)))
    assert "Invitation sent to new@example.com" in page


@pytest.mark.parametrize(
    "data, message",
    [
        ({"email": "not-an-email"}, "Enter a valid email address."),
        ({"email": ""}, "Enter an email address."),
        ({"email": "x@example.com", "roles": ["emperor"]}, "is not a valid choice"),
        ({"email": "x@example.com", "name": "n" * 201}, "200"),
    ],
)
def test_invite_with_bad_input_is_422_with_inline_error(client, tenant, admin, data, message):
    response = client.post("/users/invite", data=data, headers=host(tenant))
    assert response.status_code == 422
    assert message in body(response)
    assert 'aria-invalid="true"' in body(response)


def test_invite_of_an_existing_email_is_refused_inline(client, tenant, admin):
    response = client.post(
        "/users/invite", data={"email": admin.email.upper()}, headers=host(tenant)
    )
    assert response.status_code == 422
    assert "A user with this email already exists." in body(response)


def test_invite_beyond_the_tenants_limit_is_refused(client, make_tenant, site_user, sign_in_site):
    small = make_tenant(max_users=1)
    sign_in_site(small, site_user(small, ["tenant_admin"]))
    response = client.post("/users/invite", data={"email": "one@more.example"}, headers=host(small))
    assert response.status_code == 422
    assert "limit of 1 users" in body(response)
    with db.tenant_scope(small) as session:
        assert lifecycle.count_users(session) == 1


def test_invite_over_htmx_redirects_with_hx_location(client, tenant, admin):
    response = client.post(
        "/users/invite", data={"email": "htmx@example.com"}, headers=htmx(tenant)
    )
    assert response.status_code == 204
    assert response.headers["HX-Location"].startswith("/users/")


def test_sessions_of_a_suspended_user_are_gone(client, tenant, site_user, admin):
    target = site_user(tenant)
    with db.tenant_scope(tenant) as session:
        session.add(UserSession(user_id=target.id, token_hash="f" * 64))
    assert bulk(client, tenant, [target.id], "suspend", confirmed="yes").status_code == 303
    with db.tenant_scope(tenant) as session:
        assert not session.scalars(
            select(UserSession).where(UserSession.user_id == target.id)
        ).all()
        assert not session.scalars(select(UserRole).where(UserRole.user_id == target.id)).all()


# ---- overview -----------------------------------------------------------------------------


def test_overview_for_admins_counts_users_mfa_adoption_and_recent_activity(
    client, tenant, site_user, admin
):
    secure = site_user(tenant, email="secure@example.com")
    set_columns(tenant, secure.id, mfa_enabled_at=datetime.now(UTC))
    gone = site_user(tenant)
    with db.tenant_scope(tenant) as session:
        lifecycle.delete_user(session, lifecycle.get_user(session, gone.id), actor=SYSTEM)
    page = body(client.get("/", headers=host(tenant)))
    assert "Two-factor adoption" in page and "1 of 2 active users" in page and "50 %" in page
    assert "Recent sign-ins" in page and admin.email in page
    assert "Recent changes" in page and "accounts:user:delete" in page
    assert 'href="/users?status=deleted"' in page


def test_overview_for_members_is_a_welcome_without_other_peoples_data(
    client, tenant, site_user, sign_in_site
):
    other = site_user(tenant, email="colleague@example.com")
    me = sign_in_site(tenant, site_user(tenant, name="Mo Member"))
    page = body(client.get("/", headers=host(tenant)))
    assert "Welcome, Mo Member" in page and 'href="/account"' in page
    assert other.email not in page and "Two-factor adoption" not in page
    assert me.email in page  # the sidebar's signed-in person


def test_overview_signed_out_redirects_to_sign_in(client, tenant):
    response = client.get("/", headers=host(tenant))
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
