"""Production serving: gunicorn with gunicorn.conf.py, and /metrics summed over its workers."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(urls, app, tmp_path):
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=urls["database_url"],
        DATABASE_OWNER_URL=urls["database_owner_url"],
        REDIS_URL=urls["redis_url"],
        SECRET_KEY="gunicorn-test-secret-" + "x" * 20,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("gunicorn did not start: " + process.stderr.read().decode()[-2000:])
            time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(20)


def healthz_count(base: str) -> float:
    body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
    count = re.search(
        r'portal_request_duration_seconds_count\{endpoint="ops.healthz",method="GET",status="200"\} (\S+)',
        body,
    )
    assert count, body[:2000]
    assert "portal_tenants{" in body
    return float(count.group(1))


def test_metrics_count_requests_of_every_gunicorn_worker(gunicorn):
    # Counted from what /metrics says before: the start-up probes may have reached a worker
    # more than once on a slow machine.
    before = healthz_count(gunicorn)
    for _ in range(40):
        urllib.request.urlopen(f"{gunicorn}/healthz", timeout=5).read()
    # Both workers' files are summed, whichever answered.
    assert healthz_count(gunicorn) - before == 40.0
