"""Bulk selection in Chromium (static/bulk-select.js): on the users list an admin ticks rows,
the action bar appears with the count, the role field shows only for "assign role", and a
dangerous action asks first; on the sessions page revoking a selection that includes this
browser warns about it and signs the admin out."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.accounts.lifecycle import create_user
from portal.accounts.models import User
from portal.compliance.audit import Actor
from portal.db import db
from tests.conftest import PASSWORD

pytestmark = pytest.mark.e2e


def make_people(tenant) -> None:
    with db.tenant_scope(tenant) as session:
        create_user(
            session,
            email="boss@bulk.example",
            name="Bea Boss",
            password=PASSWORD,
            role_keys=["tenant_admin"],
            actor=Actor.system("test"),
        )
        for name in ("Ann", "Ben", "Cat"):
            create_user(
                session,
                email=f"{name.lower()}@bulk.example",
                name=name,
                password=PASSWORD,
                actor=Actor.system("test"),
            )


def sign_in(page: Page, site: str) -> None:
    page.goto(f"{site}/sign-in")
    page.get_by_label("Email").fill("boss@bulk.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{site}/")


def test_admin_suspends_selected_users_after_confirming(page: Page, live_server, make_tenant):
    port = live_server.rsplit(":", 1)[1]
    tenant = make_tenant(name="Bulk Org")
    make_people(tenant)
    site = f"http://{tenant.slug}.localhost:{port}"
    sign_in(page, site)
    page.goto(f"{site}/users")

    bar = page.locator("#bulk-bar")
    expect(bar).to_be_hidden()
    page.get_by_label("Select ann@bulk.example").check()
    page.get_by_label("Select ben@bulk.example").check()
    expect(bar).to_be_visible()
    expect(page.locator("#selected-count")).to_have_text("2 selected")

    action = page.get_by_label("With the selected users")
    expect(page.get_by_label("Role to assign")).to_be_hidden()
    action.select_option("assign_role")
    expect(page.get_by_label("Role to assign")).to_be_visible()
    action.select_option("suspend")
    expect(page.get_by_label("Role to assign")).to_be_hidden()

    questions = []

    def decline_then_accept(dialog):
        questions.append(dialog.message)
        (dialog.dismiss if len(questions) == 1 else dialog.accept)()

    page.on("dialog", decline_then_accept)
    page.get_by_role("button", name="Apply to selected").click()
    assert questions[0].startswith("“Suspend” for 2 users?")
    assert "signed out at once" in questions[0]
    page.get_by_role("button", name="Apply to selected").click()
    expect(page.get_by_text("2 users suspended")).to_be_visible()

    with db.tenant_scope(tenant) as session:
        statuses = dict(session.execute(select(User.email, User.status)).all())
    assert statuses["ann@bulk.example"] == statuses["ben@bulk.example"] == "suspended"
    assert statuses["cat@bulk.example"] == "active"


def test_revoking_a_selection_with_this_browser_warns_and_signs_out(
    page: Page, live_server, make_tenant
):
    port = live_server.rsplit(":", 1)[1]
    tenant = make_tenant(name="Bulk Org")
    make_people(tenant)
    site = f"http://{tenant.slug}.localhost:{port}"
    sign_in(page, site)
    page.goto(f"{site}/sessions")
    page.get_by_label("Select all sessions on this page").check()
    expect(page.locator("#bulk-bar")).to_be_visible()
    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Revoke selected").click()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    assert questions and questions[0].startswith("Revoke 1 session?")
    assert "you will be signed out too" in questions[0]
