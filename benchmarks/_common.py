"""Shared set-up for the benchmarks: their own database, bench tenants, clean-up, statistics,
and the gunicorn servers and HTTP requests of the scripts that load a real server.

Every benchmark works in its own database (`portal_bench` on the embedded PostgreSQL, or the
database named by BENCH_DATABASE_URL), creates tenants whose slugs start with `bench-`, and
drops them again at the end, also after a failure or Ctrl-C. Leftovers of a run that was killed
are dropped at the start of the next one.
"""

from __future__ import annotations

import http.client
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INSTANCE = Path(os.environ.get("PORTAL_INSTANCE_PATH") or ROOT / "instance").resolve()
BENCH_DATABASE = "portal_bench"
BENCH_PREFIX = "bench-"
SECRET = "bench-secret-key-" + "b" * 32
BASE_DOMAIN = "localhost"
PASSWORD = "correct horse battery staple"
# No benchmarked path talks to Redis (the client connects lazily), so the default is never used.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"

_embedded = False


def database_url() -> str:
    """BENCH_DATABASE_URL (created if missing), else `portal_bench` on the embedded server."""
    global _embedded
    from portal import embedded

    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        embedded.ensure_database(url)
        return url
    _embedded = True
    return embedded.postgres_url(INSTANCE, BENCH_DATABASE)


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL


def describe(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        name = conn.execute("SELECT current_database()").fetchone()[0]
    where = "embedded" if _embedded else "BENCH_DATABASE_URL"
    return f"PostgreSQL {version}, database {name} ({where})"


def machine() -> str:
    """CPU count and load: other work on the machine skews absolute figures more than ratios."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} (1 min) {five:.2f} (5 min)"


def configure(url: str) -> None:
    """Point the process at the bench database and bring the platform schema to head."""
    from portal.db import db, load_models
    from portal.tenancy.migrations import upgrade_platform

    db.configure(url)
    load_models()
    upgrade_platform()


def create_app(url: str):
    from portal import create_app as portal_app
    from portal.tenancy.migrations import upgrade_platform

    app = portal_app(
        {
            "database_url": url,
            "redis_url": redis_url(),
            "secret_key": SECRET,
            "log_level": "WARNING",
        }
    )
    upgrade_platform()
    return app


def run_id() -> str:
    return uuid.uuid4().hex[:6]


def actor():
    from portal.compliance.audit import Actor

    return Actor.system("benchmark")


def create_tenants(slugs: list[str], *, batch: int = 25, progress: str | None = None) -> None:
    """Provision tenants with the portal's own service, `batch` per transaction."""
    from portal.db import db
    from portal.tenancy.services import create_tenant

    started = time.perf_counter()
    for start in range(0, len(slugs), batch):
        with db.platform_scope() as session:
            for slug in slugs[start : start + batch]:
                create_tenant(
                    session,
                    slug=slug,
                    name=f"Bench {slug}",
                    actor=actor(),
                    base_domain=BASE_DOMAIN,
                )
        if progress:
            done = min(start + batch, len(slugs))
            rate = done / (time.perf_counter() - started)
            text = f"{progress}: {done}/{len(slugs)} ({rate:.1f}/s)"
            progress_line(text, done, len(slugs), start)


def progress_line(text: str, done: int, total: int, previous: int) -> None:
    """One updating line on a terminal; a line per tenth of the way otherwise."""
    if sys.stdout.isatty():
        print(f"\r  {text}", end="\n" if done >= total else "", flush=True)
    elif done >= total or done * 10 // total > previous * 10 // total:
        print(f"  {text}", flush=True)


def drop_tenants(slugs: list[str], *, batch: int = 25) -> None:
    """Drop schema, role and platform row of each slug (`drop_schema` + delete), in batches."""
    from sqlalchemy import delete

    from portal.db import db
    from portal.tenancy import routing
    from portal.tenancy.models import Tenant
    from portal.tenancy.services import drop_schema

    for start in range(0, len(slugs), batch):
        chunk = slugs[start : start + batch]
        with db.platform_scope() as session:
            for slug in chunk:
                drop_schema(session, slug)
            session.execute(delete(Tenant).where(Tenant.slug.in_(chunk)))
    routing.invalidate()


def bench_leftovers() -> list[str]:
    """Slugs of bench tenants (rows, schemas or roles) still in the bench database."""
    from sqlalchemy import select, text

    from portal.db import db
    from portal.tenancy.models import Tenant

    with db.platform_scope() as session:
        rows = session.scalars(select(Tenant.slug).where(Tenant.slug.startswith(BENCH_PREFIX)))
        found = set(rows)
        names = session.scalars(
            text(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_bench\\_%' "
                "UNION SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_bench\\_%'"
            )
        )
        # tenant_schema() maps hyphens to underscores, so the underscore form names them too.
        known = {s.replace("-", "_") for s in found}
        found.update(n[len("tenant_") :] for n in names if n[len("tenant_") :] not in known)
    return sorted(found)


def drop_leftovers() -> None:
    leftovers = bench_leftovers()
    if leftovers:
        print(f"dropping {len(leftovers)} bench tenant(s) left by an earlier run", flush=True)
        drop_tenants(leftovers)


def shutdown() -> None:
    from portal import embedded
    from portal.db import db

    db.dispose()
    if _embedded:
        embedded.stop_postgres()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# ---- a gunicorn server and requests to it ----------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, *, headers=None, body=None, timeout=30.0):
    """One request on a fresh connection to 127.0.0.1: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def session_cookie(headers) -> str | None:
    """The `session` cookie a response sets, if any."""
    for name, value in headers:
        if name.lower() == "set-cookie":
            cookie = SimpleCookie()
            cookie.load(value)
            if "session" in cookie:
                return cookie["session"].value
    return None


class Gunicorn:
    """One gunicorn master (and its workers) on a free loopback port, started by the benchmark
    and stopped by its pid. It runs from the repository root (so `wsgi:app` imports) with the
    benchmarks folder on its path (so `_pages_app:...` does); `config` is a gunicorn.conf.py."""

    def __init__(
        self,
        entry: str,
        env: dict,
        *,
        log: Path,
        workers: int = 2,
        worker_class: str = "sync",
        threads: int = 1,
        config: Path | None = None,
    ):
        self.port = free_port()
        self.entry = entry
        self.log = log
        self._log_file = open(log, "w")
        command = [sys.executable, "-m", "gunicorn"]
        if config is not None:
            command += ["-c", str(config)]
        command += [
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(threads),
            "--chdir",
            str(ROOT),
            "--pythonpath",
            str(HERE),
            "--log-level",
            "warning",
            entry,
        ]
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, path: str = "/healthz", timeout: float = 60) -> None:
        """Until `path` answers below 500; on failure stop the server and exit with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if request(self.port, "GET", path, timeout=5)[0] < 500:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        fail(f"gunicorn {self.entry} did not start; log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
