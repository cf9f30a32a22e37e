"""The per-address request limit on password endpoints (issue 11 §5): a flood of sign-ins from
one address is answered 429 with Retry-After before any password is hashed, on both sites,
the same for known and unknown accounts; IPv6 clients count per /64; the window slides."""

from __future__ import annotations

import dataclasses

import pytest

from portal import passwords
from portal.auth.flood import CODE, HASHING, RequestLimit, address_group, forget_refused, limit_of
from portal.queue import queues
from tests.conftest import PASSWORD
from tests.site.support import Site, add_user, normalised

LIMIT = 3


@pytest.fixture
def low_limit(app):
    """This test's sign-in limit: LIMIT form posts per address per minute."""
    settings = app.config["PORTAL"]
    app.config["PORTAL"] = dataclasses.replace(settings, sign_in_rate_limit=LIMIT)
    yield LIMIT
    app.config["PORTAL"] = settings
    forget_refused()  # this process's memory of the addresses refused under this limit


@pytest.fixture
def verifications(monkeypatch):
    """Counts Argon2 verifications (the real hasher still does the work)."""
    calls = []
    hasher = passwords._hasher

    class CountingHasher:
        def verify(self, *args, **kwargs):
            calls.append(1)
            return hasher.verify(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(hasher, name)

    monkeypatch.setattr(passwords, "_hasher", CountingHasher())
    return calls


def test_a_flood_from_one_address_gets_429_before_any_hashing(
    client, tenant, low_limit, verifications
):
    _, email = add_user(tenant)
    site = Site(client, tenant, addr="198.51.100.50")
    for _ in range(LIMIT):
        assert site.sign_in(email, "wrong password here").status_code == 422
    assert len(verifications) == LIMIT
    verifications.clear()
    refused = site.sign_in(email, PASSWORD)  # even the right password
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    assert b"Too many attempts" in refused.data and b"Request id for support" in refused.data
    assert verifications == []
    assert site.get("/").status_code == 302  # not signed in


def test_the_limit_answers_the_same_for_unknown_and_known_accounts(client, tenant, low_limit):
    _, email = add_user(tenant)
    known = Site(client, tenant, addr="198.51.100.51")
    unknown = Site(client, tenant, addr="198.51.100.52")
    for _ in range(LIMIT):
        known.sign_in(email, "wrong password here")
        unknown.sign_in("nobody-" + email, "wrong password here")
    a = known.sign_in(email, "wrong password here")
    b = unknown.sign_in("nobody-" + email, "wrong password here")
    assert a.status_code == b.status_code == 429
    assert normalised(a.data, email) == normalised(b.data, "nobody-" + email)


def test_other_addresses_are_not_limited_by_someone_elses_flood(client, tenant, low_limit):
    _, email = add_user(tenant)
    flooder = Site(client, tenant, addr="198.51.100.53")
    for _ in range(LIMIT + 2):
        flooder.sign_in(email, "wrong password here")
    assert flooder.sign_in(email).status_code == 429
    assert Site(client, tenant, addr="198.51.100.54").sign_in(email).status_code == 303


def test_showing_the_sign_in_form_is_not_counted(client, tenant, low_limit):
    _, email = add_user(tenant)
    site = Site(client, tenant, addr="198.51.100.55")
    for _ in range(LIMIT * 3):
        assert site.get("/sign-in").status_code == 200
    assert site.sign_in(email).status_code == 303


def test_ipv6_addresses_in_one_64_share_the_limit(client, tenant, low_limit):
    _, email = add_user(tenant)
    for i in range(LIMIT):
        Site(client, tenant, addr=f"2001:db8:1:2::{i + 1:x}").sign_in(email, "wrong password!")
    rotated = Site(client, tenant, addr="2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert rotated.sign_in(email).status_code == 429
    neighbour = Site(client, tenant, addr="2001:db8:1:3::1")  # another /64
    assert neighbour.sign_in(email).status_code == 303


def test_address_groups():
    assert address_group("192.0.2.7") == "192.0.2.7"
    assert address_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_group("2001:db8::1") == address_group("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_group("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert address_group("fe80::1%eth0") == "fe80::/64"
    assert address_group(None) == address_group("not an address") == "unknown"


def test_the_password_reset_and_account_forms_share_the_addresss_limit(client, tenant, low_limit):
    user_id, email = add_user(tenant)
    site = Site(client, tenant, addr="198.51.100.56")
    assert site.sign_in(email).status_code == 303
    for _ in range(LIMIT - 1):
        site.post(
            "/account/security",
            {"current_password": "wrong password here", "new_password": "x" * 20},
        )
    assert site.post("/account/mfa/disable", {"password": PASSWORD}).status_code == 429
    assert site.post("/reset-password/not-a-token", {"password": "x" * 20}).status_code == 429
    assert site.get("/account/security").status_code == 200  # pages stay open


def test_the_console_sign_in_is_limited_too(client, make_staff, low_limit, verifications):
    member = make_staff()
    for _ in range(LIMIT):
        response = client.post(
            "/sign-in",
            data={"email": member.email, "password": "wrong password here"},
            headers={"Host": "localhost"},
            environ_base={"REMOTE_ADDR": "203.0.113.60"},
        )
        assert response.status_code == 422
    verifications.clear()
    refused = client.post(
        "/sign-in",
        data={"email": member.email, "password": PASSWORD},
        headers={"Host": "localhost"},
        environ_base={"REMOTE_ADDR": "203.0.113.60"},
    )
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert verifications == []


def marked(app) -> dict[str, str]:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    return {e: limit_of(app, e) for e in sorted(endpoints) if limit_of(app, e)}


def test_every_form_that_takes_a_password_or_a_sign_in_code_is_limited(app):
    """Each view that takes a password (sign-in, registration, reset, invitation, password
    change, re-entered passwords) or a sign-in code carries its mark through its decorators."""
    assert marked(app.extensions["portal.tenant_site"]) == {
        "site.sign_in": HASHING,
        "site.mfa_verify": CODE,
        "site.register": HASHING,
        "site.reset_password": HASHING,
        "site.invitation": HASHING,
        "site.account_security": HASHING,
        "site.mfa_backup_codes": HASHING,
        "site.mfa_disable": HASHING,
    }
    assert marked(app) == {
        "console.sign_in": HASHING,
        "console.sign_in_verify": CODE,
        "console.account_password": HASHING,
        "console.account_mfa_backup_codes": HASHING,
        "console.account_mfa_disable": HASHING,
    }


def test_the_window_slides_and_retry_after_is_exact(app):
    limit = RequestLimit(queues.redis, limit=10, window=60)
    address = "192.0.2.200"
    start = 6_000_000.0  # the start of a fixed window (a multiple of 60)
    for i in range(10):
        assert limit.hit(address, now=start + i).allowed
    refused = limit.hit(address, now=start + 10)
    assert not refused.allowed
    # The ten requests of the first window slide out as the second one advances: one more fits
    # once 9 of them (weighted by the overlap) remain, i.e. 6 s into the next window.
    assert refused.retry_after == 56
    assert not limit.hit(address, now=start + 10 + refused.retry_after - 1).allowed
    assert limit.hit(address, now=start + 10 + refused.retry_after).allowed
    # Refused requests were not counted: the next window is not blocked by them.
    assert limit.hit(address, now=start + 120).allowed
