"""The tenant's Sessions page: every live session in the organisation for admins, with search,
filters and keyset pages; revoking one or a selection signs those people out (A6)."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal.accounts import lifecycle, settings
from portal.accounts.models import User, UserSession
from portal.auth import services as auth
from portal.db import db
from portal.site import sessions_views
from tests.site.support import (
    FIREFOX,
    IPHONE,
    SYSTEM,
    add_user,
    audit_entries,
    backdate_sessions,
    browser,
    now,
    session_count,
)


def signed_in(client, tenant, roles=(), *, name="", agent=FIREFOX, addr="198.51.100.30"):
    """A new user of `tenant` signed in on a browser of their own: (user id, email, browser)."""
    user_id, email = add_user(tenant, name=name, roles=roles)
    site = browser(client, tenant, agent=agent, addr=addr)
    assert site.sign_in(email).status_code == 303
    return user_id, email, site


def sessions_of(tenant, user_id) -> list[int]:
    with db.tenant_scope(tenant) as session:
        return list(
            session.scalars(
                select(UserSession.id)
                .where(UserSession.user_id == user_id)
                .order_by(UserSession.id)
            )
        )


def listed(html: str) -> list[int]:
    """Ids of the users whose sessions the page lists, in order (the sidebar shows the viewer's
    own email, so emails alone do not tell)."""
    return [int(i) for i in re.findall(r'href="/users/(\d+)"', html)]


def stranger_session(client, tenant, make_tenant):
    """A user of another tenant signed in, and the id of their session: one this tenant has no
    session with (ids are numbered per tenant, so the other tenant signs in a few times first).
    Returns (their id, their browser, the session id)."""
    other = make_tenant()
    own = set(all_sessions(tenant))
    while True:
        stranger_id, _, stranger_site = signed_in(client, other)
        foreign = sessions_of(other, stranger_id)[-1]
        if foreign not in own:
            return stranger_id, stranger_site, foreign


def all_sessions(tenant) -> list[int]:
    with db.tenant_scope(tenant) as session:
        return list(session.scalars(select(UserSession.id)))


def cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.fixture
def office(client, tenant):
    """A signed-in tenant admin, and two more users signed in elsewhere."""
    admin = signed_in(client, tenant, ["tenant_admin"], name="Ada Admin")
    ben = signed_in(client, tenant, name="Ben Phone", agent=IPHONE, addr="198.51.100.31")
    cleo = signed_in(client, tenant, name="Cleo Laptop", addr="198.51.100.32")
    return admin, ben, cleo


# ---- the list -------------------------------------------------------------------------------


def test_admin_sees_the_sessions_of_several_users_and_not_of_another_tenant(
    client, tenant, make_tenant, office
):
    (admin_id, _, admin_site), (ben_id, ben_email, _), (cleo_id, cleo_email, _) = office
    other = make_tenant()
    _, stranger_email, _ = signed_in(client, other, ["tenant_admin"])
    page = admin_site.get("/sessions")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert sorted(listed(html)) == sorted([admin_id, ben_id, cleo_id])
    assert ben_email in html and cleo_email in html
    assert stranger_email not in html
    assert "3 live sessions" in html
    assert html.count("This browser") == 1
    assert "Safari on iPhone" in html and "198.51.100.31" in html
    assert f'href="/users/{ben_id}"' in html
    assert "Revoke selected" in html


def test_newest_activity_comes_first(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), (cleo_id, cleo_email, _) = office
    backdate_sessions(tenant, ben_id, last_seen_at=now() - timedelta(minutes=20))
    backdate_sessions(tenant, cleo_id, last_seen_at=now() - timedelta(minutes=10))
    html = admin_site.get("/sessions").get_data(as_text=True)
    assert html.index(cleo_email) < html.index(ben_email)


def test_signed_out_visitor_is_sent_to_sign_in(client, tenant):
    response = browser(client, tenant).get("/sessions")
    assert response.status_code == 302 and "/sign-in" in response.location


def test_member_is_refused_the_page_and_the_revocations(client, tenant, office):
    _, (_, _, ben_site), (cleo_id, _, _) = office
    assert ben_site.get("/sessions").status_code == 403
    cleo_session = sessions_of(tenant, cleo_id)[0]
    assert ben_site.post(f"/sessions/{cleo_session}/revoke").status_code == 403
    assert ben_site.post("/sessions/revoke", {"ids": [cleo_session]}).status_code == 403
    assert session_count(tenant, cleo_id) == 1


def test_compliance_officer_sees_the_page_without_revoke_buttons_and_cannot_revoke(
    client, tenant, office
):
    _, _, (cleo_id, cleo_email, _) = office
    _, _, officer = signed_in(client, tenant, ["compliance_officer"])
    page = officer.get("/sessions")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and cleo_email in html
    assert "Revoke" not in html and 'name="ids"' not in html
    cleo_session = sessions_of(tenant, cleo_id)[0]
    assert officer.post(f"/sessions/{cleo_session}/revoke").status_code == 403
    assert (
        officer.post("/sessions/revoke", {"ids": [cleo_session], "confirmed": "yes"}).status_code
        == 403
    )
    assert session_count(tenant, cleo_id) == 1


def test_sessions_past_the_idle_or_absolute_timeout_are_not_listed(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), (cleo_id, cleo_email, _) = office
    backdate_sessions(tenant, ben_id, last_seen_at=now() - timedelta(minutes=31))
    backdate_sessions(
        tenant,
        cleo_id,
        created_at=now() - timedelta(hours=12, minutes=1),
        last_seen_at=now() - timedelta(minutes=1),
    )
    html = admin_site.get("/sessions").get_data(as_text=True)
    assert ben_email not in html and cleo_email not in html
    assert "1 live session" in html
    assert session_count(tenant, ben_id) == 1  # still a row until its next use deletes it


def test_the_tenants_own_timeouts_decide_what_is_live(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), _ = office
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, idle_timeout_minutes=120)
    backdate_sessions(tenant, ben_id, last_seen_at=now() - timedelta(minutes=90))
    assert ben_email in admin_site.get("/sessions").get_data(as_text=True)


def test_sessions_of_suspended_users_are_not_listed(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), _ = office
    with db.tenant_scope(tenant) as session:
        # Straight to the row: the service would end the sessions itself.
        session.execute(update(User).where(User.id == ben_id).values(status="suspended"))
    assert ben_email not in admin_site.get("/sessions").get_data(as_text=True)


def test_search_finds_users_by_email_or_name(client, tenant, office):
    (_, _, admin_site), (_, ben_email, _), (cleo_id, cleo_email, _) = office
    html = admin_site.get("/sessions?q=cleo+lap").get_data(as_text=True)
    assert listed(html) == [cleo_id]
    assert "1 live session matching" in html
    html = admin_site.get(f"/sessions?q={ben_email.upper()}").get_data(as_text=True)
    assert ben_email in html and cleo_email not in html


def test_search_treats_wildcards_literally(client, tenant, office):
    (_, _, admin_site), _, _ = office
    html = admin_site.get("/sessions?q=%25").get_data(as_text=True)
    assert "No sessions match" in html


def test_htmx_search_returns_the_results_block_and_pushes_a_clean_url(client, tenant, office):
    (_, _, admin_site), _, (_, cleo_email, _) = office
    response = admin_site.get("/sessions?q=cleo&method=&within=", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="results">') and "<html" not in html
    assert cleo_email in html
    assert response.headers["HX-Push-Url"] == "/sessions?q=cleo"
    assert "HX-Request" in response.headers["Vary"]


def test_filter_by_sign_in_method(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), (_, cleo_email, _) = office
    with db.tenant_scope(tenant) as session:
        session.execute(
            update(UserSession).where(UserSession.user_id == ben_id).values(method="totp")
        )
    html = admin_site.get("/sessions?method=totp").get_data(as_text=True)
    assert ben_email in html and cleo_email not in html
    assert "Password and app code" in html
    html = admin_site.get("/sessions?method=password").get_data(as_text=True)
    assert ben_email not in html and cleo_email in html


def test_filter_by_last_seen_within(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), (_, cleo_email, _) = office
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(
            session, actor=SYSTEM, idle_timeout_minutes=24 * 60, absolute_timeout_minutes=48 * 60
        )
    backdate_sessions(tenant, ben_id, last_seen_at=now() - timedelta(hours=2))
    assert ben_email not in admin_site.get("/sessions?within=15m").get_data(as_text=True)
    assert ben_email not in admin_site.get("/sessions?within=1h").get_data(as_text=True)
    html = admin_site.get("/sessions?within=24h").get_data(as_text=True)
    assert ben_email in html and cleo_email in html


def test_keyset_pages_walk_forward_and_back(client, tenant, office, monkeypatch):
    (_, _, admin_site), _, _ = office
    monkeypatch.setattr(sessions_views, "PAGE_SIZE", 2)
    user_id, _ = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        user = lifecycle.get_user(session, user_id)
        for _ in range(3):
            auth.start_user_session(
                session, user, actor=SYSTEM, user_agent=FIREFOX, device_token=None
            )
    seen: list[str] = []
    url = "/sessions"
    for _ in range(3):
        html = admin_site.get(url).get_data(as_text=True)
        assert "6 live sessions" in html
        seen += re.findall(r'name="ids" value="(\d+)"', html)
        found = re.search(r'href="(/sessions\?after=[^"]+)"', html)
        if not found:
            break
        url = found.group(1).replace("&amp;", "&")
    assert len(seen) == 6 and len(set(seen)) == 6
    previous = re.search(r'href="(/sessions\?before=[^"]+)"', html)
    assert previous
    back = admin_site.get(previous.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r'name="ids" value="(\d+)"', back) == seen[2:4]


@pytest.mark.parametrize(
    "query",
    [
        "q=" + "x" * 5000,
        "q=%27%3B+drop+table+users%3B--",
        "q=%E2%80%AE%F0%9F%98%80",
        "method=admin&within=forever",
        "method[]=password&within=-1",
        "after=garbage",
        "before=%25%25%25",
        "after=" + "A" * 5000,
        "after=" + cursor("not a time", "not an id"),
        "after=" + cursor({"t": "2024-01-01T00:00:00+00:00"}, 1.5),
        "after=" + cursor({"t": "2024-01-01T00:00:00+00:00"}, 2**70),
        "after=" + cursor({"t": "0001-01-01T00:00:00+14:00"}, 1),
        "before=" + cursor({"t": "9999-12-31T23:59:59-14:00"}, -5),
        "after=" + cursor({"t": "2024-01-01T00:00:00"}, 1),
        "after=" + cursor(1, 2, 3),
        "after=" + cursor(None, None),
        "after=x&before=y&after=z",
    ],
)
def test_hostile_query_parameters_never_cause_a_server_error(client, tenant, office, query):
    (_, _, admin_site), _, _ = office
    response = admin_site.get(f"/sessions?{query}")
    assert response.status_code == 200
    response = admin_site.get(f"/sessions?{query}", headers={"HX-Request": "true"})
    assert response.status_code == 200


# ---- revoking one ---------------------------------------------------------------------------


def test_revoking_a_session_signs_that_user_out_at_their_next_request(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, ben_site), _ = office
    assert ben_site.get("/account").status_code == 200
    ben_session = sessions_of(tenant, ben_id)[0]
    response = admin_site.post(f"/sessions/{ben_session}/revoke", {"next": "/sessions?q=ben"})
    assert response.status_code == 303 and response.location == "/sessions?q=ben"
    following = ben_site.get("/account")
    assert following.status_code == 302 and "/sign-in" in following.location
    assert session_count(tenant, ben_id) == 0
    assert audit_entries(tenant, target_id=ben_id)[0].action == "auth:session:revoke"
    html = admin_site.get("/sessions").get_data(as_text=True)
    assert ben_id not in listed(html) and f"Session of {ben_email} revoked" in html


def test_revoking_with_htmx_rerenders_the_list_without_the_row_and_sends_a_toast(
    client, tenant, office
):
    (_, _, admin_site), (ben_id, ben_email, _), (_, cleo_email, _) = office
    ben_session = sessions_of(tenant, ben_id)[0]
    response = admin_site.post(
        f"/sessions/{ben_session}/revoke",
        {"next": "/sessions"},
        headers={"HX-Request": "true"},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="results">')
    assert ben_email not in html and cleo_email in html and "2 live sessions" in html
    assert json.loads(response.headers["HX-Trigger"])["toast"] == f"Session of {ben_email} revoked"
    assert "HX-Push-Url" not in response.headers


def test_revoking_your_own_session_signs_you_out(client, tenant, office):
    (admin_id, _, admin_site), _, _ = office
    mine = sessions_of(tenant, admin_id)[0]
    response = admin_site.post(f"/sessions/{mine}/revoke")
    assert response.status_code == 303 and response.location == "/sign-in"
    assert admin_site.get("/sessions").status_code == 302
    assert audit_entries(tenant, target_id=admin_id)[0].action == "auth:session:revoke"


def test_another_tenants_session_id_returns_404(client, tenant, make_tenant, office):
    (_, _, admin_site), _, _ = office
    stranger_id, stranger_site, foreign = stranger_session(client, tenant, make_tenant)
    for session_id in [foreign, 999_999, 2**31, 2**40]:
        assert admin_site.post(f"/sessions/{session_id}/revoke").status_code == 404
    assert stranger_site.get("/account").status_code == 200


def test_revoke_next_cannot_redirect_elsewhere(client, tenant, office):
    (_, _, admin_site), (ben_id, _, _), (cleo_id, _, _) = office
    response = admin_site.post(
        f"/sessions/{sessions_of(tenant, ben_id)[0]}/revoke", {"next": "https://evil.example/"}
    )
    assert response.location == "/sessions"
    response = admin_site.post(
        "/sessions/revoke",
        {"ids": sessions_of(tenant, cleo_id), "confirmed": "yes", "next": "//evil.example"},
    )
    assert response.location == "/sessions"


# ---- revoking a selection -------------------------------------------------------------------


def test_bulk_revoke_asks_first_naming_the_consequence(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), (cleo_id, cleo_email, _) = office
    ids = sessions_of(tenant, ben_id) + sessions_of(tenant, cleo_id)
    page = admin_site.post("/sessions/revoke", {"ids": ids, "next": "/sessions"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Revoke 2 sessions?" in html and "signed out at their next request" in html
    assert ben_email in html and cleo_email in html
    assert session_count(tenant, ben_id) == 1 and session_count(tenant, cleo_id) == 1


def test_bulk_revoke_signs_the_selected_users_out(client, tenant, office):
    (_, _, admin_site), (ben_id, _, ben_site), (cleo_id, cleo_email, cleo_site) = office
    ids = sessions_of(tenant, ben_id) + sessions_of(tenant, cleo_id)
    response = admin_site.post("/sessions/revoke", {"ids": ids, "confirmed": "yes"})
    assert response.status_code == 303 and response.location == "/sessions"
    html = admin_site.get("/sessions").get_data(as_text=True)
    assert "2 sessions revoked" in html and cleo_email not in html
    assert ben_site.get("/account").status_code == 302
    assert cleo_site.get("/account").status_code == 302
    assert admin_site.get("/account").status_code == 200
    assert audit_entries(tenant, target_id=ben_id)[0].action == "auth:session:revoke"
    assert audit_entries(tenant, target_id=cleo_id)[0].action == "auth:session:revoke"


def test_bulk_revoke_with_htmx_returns_the_list_and_a_toast(client, tenant, office):
    (_, _, admin_site), (ben_id, ben_email, _), _ = office
    response = admin_site.post(
        "/sessions/revoke",
        {"ids": sessions_of(tenant, ben_id), "confirmed": "yes", "next": "/sessions"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert ben_email not in response.get_data(as_text=True)
    assert json.loads(response.headers["HX-Trigger"])["toast"] == "1 session revoked"


def test_bulk_revoke_ignores_another_tenants_session_ids(client, tenant, make_tenant, office):
    (_, _, admin_site), _, _ = office
    _, stranger_site, foreign = stranger_session(client, tenant, make_tenant)
    response = admin_site.post("/sessions/revoke", {"ids": [foreign], "confirmed": "yes"})
    assert response.status_code == 303
    assert stranger_site.get("/account").status_code == 200
    assert "No sessions to revoke" in admin_site.get("/sessions").get_data(as_text=True)


def test_bulk_revoke_including_your_own_session_signs_you_out(client, tenant, office):
    (admin_id, _, admin_site), (ben_id, _, ben_site), _ = office
    ids = sessions_of(tenant, admin_id) + sessions_of(tenant, ben_id)
    html = admin_site.post("/sessions/revoke", {"ids": ids}).get_data(as_text=True)
    assert "you will be signed out too" in html
    response = admin_site.post("/sessions/revoke", {"ids": ids, "confirmed": "yes"})
    assert response.status_code == 303 and response.location == "/sign-in"
    assert admin_site.get("/sessions").status_code == 302
    assert ben_site.get("/account").status_code == 302


@pytest.mark.parametrize("ids", [[], ["abc"], ["1e9"]])
def test_bulk_revoke_without_a_valid_selection_is_refused_with_422(client, tenant, office, ids):
    (_, _, admin_site), (ben_id, _, _), _ = office
    response = admin_site.post("/sessions/revoke", {"ids": ids, "confirmed": "yes"})
    assert response.status_code == 422
    assert 'id="bulk-error"' in response.get_data(as_text=True)
    assert session_count(tenant, ben_id) == 1


# ---- CSRF -----------------------------------------------------------------------------------


def test_revocations_without_a_csrf_token_are_refused(app, client, tenant, office):
    (_, _, admin_site), (ben_id, _, _), _ = office
    ben_session = sessions_of(tenant, ben_id)[0]
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        one = admin_site.post(f"/sessions/{ben_session}/revoke")
        bulk = admin_site.post("/sessions/revoke", {"ids": [ben_session], "confirmed": "yes"})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert one.status_code == 400 and bulk.status_code == 400
    assert session_count(tenant, ben_id) == 1


def test_revoking_with_the_pages_csrf_token_works(app, client, tenant, office):
    (_, _, admin_site), (ben_id, _, ben_site), _ = office
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        html = admin_site.get("/sessions").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        ben_session = sessions_of(tenant, ben_id)[0]
        response = admin_site.post(f"/sessions/{ben_session}/revoke", {"csrf_token": token})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 303
    assert ben_site.get("/account").status_code == 302
