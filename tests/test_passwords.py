"""Password hashing (issue 11 §5): the chosen Argon2id parameters, rehashing of older hashes at
sign-in (tenant users and staff), and the per-process cap on concurrent hash computations that
turns a flood into quick 503 pages while the rest of the portal keeps answering."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.low_level import Type
from sqlalchemy import select, update

from portal import passwords
from portal.accounts.models import User
from portal.db import db
from portal.queue import queues
from portal.staff.models import StaffUser
from tests.conftest import PASSWORD
from tests.site.support import Site, add_user

# argon2-cffi's default profile, which the portal used before (m=64 MiB, t=3, p=4).
OLD_HASHER = PasswordHasher()


def test_new_hashes_use_owasps_argon2id_profile():
    params = extract_parameters(passwords.hash_password(PASSWORD))
    assert params.type is Type.ID
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)


def test_hashes_made_with_the_old_parameters_still_verify():
    old = OLD_HASHER.hash(PASSWORD)
    assert passwords.verify_password(old, PASSWORD)
    assert not passwords.verify_password(old, "not the password")
    assert passwords.rehashed(old, PASSWORD) is not None
    assert passwords.rehashed(passwords.hash_password(PASSWORD), PASSWORD) is None


def test_a_tenant_users_old_hash_is_replaced_at_sign_in(client, tenant):
    user_id, email = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        session.execute(
            update(User).where(User.id == user_id).values(password_hash=OLD_HASHER.hash(PASSWORD))
        )
    assert Site(client, tenant).sign_in(email).status_code == 303
    with db.tenant_scope(tenant) as session:
        stored = session.scalar(select(User.password_hash).where(User.id == user_id))
    assert extract_parameters(stored).memory_cost == 19 * 1024
    assert passwords.verify_password(stored, PASSWORD)


def test_a_wrong_password_does_not_rehash(client, tenant):
    user_id, email = add_user(tenant)
    old = OLD_HASHER.hash(PASSWORD)
    with db.tenant_scope(tenant) as session:
        session.execute(update(User).where(User.id == user_id).values(password_hash=old))
    assert Site(client, tenant).sign_in(email, "wrong password here").status_code == 422
    with db.tenant_scope(tenant) as session:
        assert session.scalar(select(User.password_hash).where(User.id == user_id)) == old


def test_a_staff_members_old_hash_is_replaced_at_sign_in(client, make_staff):
    member = make_staff()
    with db.platform_scope() as session:
        session.execute(
            update(StaffUser)
            .where(StaffUser.id == member.id)
            .values(password_hash=OLD_HASHER.hash(PASSWORD))
        )
    response = client.post(
        "/sign-in",
        data={"email": member.email, "password": PASSWORD},
        headers={"Host": "localhost"},
    )
    assert response.status_code in (302, 303)  # signed in (or on to the second step)
    with db.platform_scope() as session:
        stored = session.scalar(select(StaffUser.password_hash).where(StaffUser.id == member.id))
    assert extract_parameters(stored).memory_cost == 19 * 1024


@pytest.fixture
def slots(app):
    """Lets a test change the hashing slots; the app's own come back afterwards."""
    settings = app.config["PORTAL"]
    yield passwords.configure_hashing
    passwords.configure_hashing(
        concurrency=settings.password_hash_concurrency,
        wait_seconds=settings.password_hash_wait_ms / 1000,
        host_concurrency=settings.password_hash_host_concurrency,
        redis=lambda: queues.redis,
    )


def test_no_more_than_the_cap_of_hashes_run_at_once_in_a_process(slots, monkeypatch):
    slots(concurrency=2, wait_seconds=5)
    running, most = [0], [0]
    lock = threading.Lock()
    hasher = passwords._hasher

    class SlowHasher:
        def verify(self, *args, **kwargs):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return False

        def __getattr__(self, name):
            return getattr(hasher, name)

    monkeypatch.setattr(passwords, "_hasher", SlowHasher())
    threads = [
        threading.Thread(target=passwords.verify_password, args=(None, "guess")) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 2


@contextlib.contextmanager
def another_sign_in_hashing():
    """Another thread of this process holds a hashing slot for the block's duration."""
    taken, done = threading.Event(), threading.Event()

    def hashing():
        with passwords._slots.slot():
            taken.set()
            done.wait(10)

    thread = threading.Thread(target=hashing)
    thread.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        done.set()
        thread.join(10)


def test_a_sign_in_finding_the_processs_slots_taken_gets_a_designed_503_quickly(
    client, tenant, slots
):
    _, email = add_user(tenant)
    slots(concurrency=1, wait_seconds=0.1)
    site = Site(client, tenant, addr="198.51.100.90")
    with another_sign_in_hashing():
        started = time.monotonic()
        busy = site.sign_in(email)
        assert time.monotonic() - started < 1
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "2"
        assert b"Too many sign-ins at once" in busy.data and b"Request id" in busy.data
        assert site.get("/sign-in").status_code == 200  # pages that do not hash still answer
    assert site.sign_in(email).status_code == 303  # the slot is free again


def test_a_sign_in_while_another_process_hashes_gets_a_503_without_waiting(client, tenant, app):
    """gunicorn's sync workers serve one request each: the machine-wide slot (in Redis) is what
    keeps a second worker free for pages. Here another worker's lease is planted."""
    _, email = add_user(tenant)
    assert app.config["PORTAL"].password_hash_host_concurrency == 1
    key = passwords._slots.host_key
    queues.redis.zadd(key, {"another-worker": time.time()})
    try:
        site = Site(client, tenant, addr="198.51.100.91")
        started = time.monotonic()
        busy = site.sign_in(email)
        assert busy.status_code == 503 and time.monotonic() - started < 0.5
        # A worker killed mid-hash leaves its lease behind; it expires.
        stale = time.time() - passwords.HOST_LEASE_SECONDS - 1
        queues.redis.zadd(key, {"another-worker": stale})
        assert site.sign_in(email).status_code == 303
        assert queues.redis.zcard(key) == 0  # the stale lease is gone, and ours was returned
    finally:
        queues.redis.delete(key)
