"""Staff sign-in throttling: growing delays, a lock that even the right password cannot pass,
per-address limits, and answers that do not tell known accounts from unknown ones (A4)."""

from sqlalchemy import select

from portal.auth.throttle import Policy, SignInThrottle
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.queue import queues
from tests.conftest import PASSWORD

HOST = {"Host": "localhost"}
ERROR = b"Email or password is not right."


def attempt(client, email, password, address="203.0.113.7"):
    return client.post(
        "/sign-in",
        data={"email": email, "password": password},
        headers=HOST,
        environ_base={"REMOTE_ADDR": address},
    )


def test_after_five_failures_even_the_right_password_must_wait(client, make_staff):
    member = make_staff()
    for _ in range(5):
        assert attempt(client, member.email, "wrong password!").status_code == 422
    refused = attempt(client, member.email, PASSWORD)
    assert refused.status_code == 422 and ERROR in refused.data
    with db.platform_scope() as session:
        last = session.scalars(
            select(PlatformAuditEntry)
            .where(PlatformAuditEntry.action == "console:staff:sign_in_failed")
            .order_by(PlatformAuditEntry.seq.desc())
        ).first()
    assert last.detail == {"reason": "throttled"} and last.target_id == str(member.id)


def test_twenty_failures_lock_the_account_for_fifteen_minutes(app, make_staff):
    member = make_staff()
    throttle = SignInThrottle(queues.redis, "staff")
    for _ in range(20):
        throttle.failed(member.email, None)
    assert 890 < throttle.wait_seconds(member.email, None) <= 900
    assert throttle.wait_seconds(member.email.upper(), None) > 890  # same account, any case


def test_success_resets_the_account_count(client, make_staff):
    member = make_staff(mfa=False)
    for _ in range(2):
        for _ in range(4):
            attempt(client, member.email, "wrong password!")
        assert attempt(client, member.email, PASSWORD).status_code == 303
        client.post("/sign-out", headers=HOST)


def test_with_mfa_only_the_completed_second_step_resets_the_account_count(client, make_staff):
    member = make_staff()
    for _ in range(4):
        attempt(client, member.email, "wrong password!")
    assert attempt(client, member.email, PASSWORD).status_code == 303  # to the second step
    client.post("/sign-out", headers=HOST)
    attempt(client, member.email, "wrong password!")  # the 6th failure: now delayed
    assert attempt(client, member.email, PASSWORD).status_code == 422


def test_one_address_trying_many_accounts_is_throttled_too(app):
    throttle = SignInThrottle(queues.redis, "staff", Policy(delay_after=5, address_factor=4))
    for i in range(20):
        throttle.failed(f"victim{i}@msp.example", "198.51.100.9")
    assert throttle.wait_seconds("fresh-account@msp.example", "198.51.100.9") > 0
    assert throttle.wait_seconds("fresh-account@msp.example", "198.51.100.10") == 0


def test_throttled_unknown_and_known_accounts_get_the_same_answer(client, make_staff):
    member = make_staff()
    ghost = "nobody-" + member.email
    answers = {}
    for email in (member.email, ghost):
        for _ in range(5):
            attempt(client, email, "wrong password!")
        answers[email] = attempt(client, email, PASSWORD)  # within the 1 s delay
    known, unknown = answers[member.email], answers[ghost]
    assert known.status_code == unknown.status_code == 422
    assert ERROR in known.data and ERROR in unknown.data
