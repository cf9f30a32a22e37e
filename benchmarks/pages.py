"""Throughput of the signed-in console tenants list vs a bare Flask app rendering the same page.

Both run under gunicorn with 2 workers (sync worker class unless --worker-class says otherwise)
on free loopback ports, started from benchmarks/_pages_app.py:

- portal: the real app (`create_app`), its own bench database holding 30 bench tenants,
  a bench staff member enrolled in MFA signed in through the real sign-in forms (password, then
  a TOTP code; CSRF stays on: the tokens are read from the forms), load on `GET /tenants`
  (25 rows per page) with that session cookie. The sign-in uses Redis (throttle, second step);
  the page does not.
- bare: a Flask app without database, sign-in, CSRF or middleware rendering the same
  template (templates/console/tenants.html in its console layout) for 25 fixed rows.

Load comes from `wrk` when it is installed (apt-get install -y wrk), otherwise from a threaded
http.client loop with keep-alive. The two targets alternate for --rounds rounds of --duration
seconds each; prints req/s of each run, each round's ratio, the medians, and the median of
the rounds' ratios (target: portal ≥ 40 % of bare). Never asserts a timing.

    .venv/bin/python benchmarks/pages.py [--duration 10] [--rounds 3] [--connections 4]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import _common as common
import pyotp

TENANTS = 30


def sign_in(port: int, email: str, totp_secret: str) -> str:
    """Both steps of the staff sign-in through the forms (the password, then a TOTP code; CSRF
    tokens read from each form); returns the signed-in session cookie."""
    status, headers, body = common.request(port, "GET", "/sign-in")
    match = common.CSRF_RE.search(body.decode())
    cookie = common.session_cookie(headers)
    if status != 200 or not match or not cookie:
        common.fail(f"GET /sign-in: HTTP {status}, csrf token found: {bool(match)}")
    form = {"email": email, "password": common.PASSWORD, "csrf_token": match.group(1)}
    status, headers, _ = post_form(port, "/sign-in", form, cookie)
    cookie = common.session_cookie(headers) or cookie
    if status != 303:
        common.fail(f"POST /sign-in: HTTP {status} (expected 303 to the second step)")
    status, headers, body = common.request(
        port, "GET", "/sign-in/verify", headers={"Cookie": f"session={cookie}"}
    )
    match = common.CSRF_RE.search(body.decode())
    cookie = common.session_cookie(headers) or cookie  # now holding the form's CSRF secret
    if status != 200 or not match:
        common.fail(f"GET /sign-in/verify: HTTP {status}, csrf token found: {bool(match)}")
    form = {"code": pyotp.TOTP(totp_secret).now(), "csrf_token": match.group(1)}
    status, headers, _ = post_form(port, "/sign-in/verify", form, cookie)
    signed_in = common.session_cookie(headers)
    if status != 303 or not signed_in:
        common.fail(f"POST /sign-in/verify: HTTP {status} (expected 303 and a new session cookie)")
    return signed_in


def post_form(port: int, path: str, form: dict, cookie: str):
    return common.request(
        port,
        "POST",
        path,
        body=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"session={cookie}",
        },
    )


def check_page(port: int, headers: dict, label: str) -> int:
    status, _, body = common.request(port, "GET", "/tenants", headers=headers)
    if status != 200:
        common.fail(f"{label}: GET /tenants answered HTTP {status}")
    text = body.decode()
    rows = text.count("<tr>") - 1  # minus the header row
    if rows != 25:
        common.fail(f"{label}: /tenants shows {rows} rows, expected 25")
    return len(body)


# ---- load generators ----------------------------------------------------------------------


def run_wrk(port: int, headers: dict, duration: float, connections: int) -> tuple[float, str]:
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}/tenants")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    notes = []
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if bad:
        notes.append(f"{bad.group(1)} non-2xx responses")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        notes.append(f"socket errors: {errors.group(1)}")
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if latency:
        notes.insert(0, f"latency avg {latency.group(1)}")
    return rate, ", ".join(notes)


def run_python(port: int, headers: dict, duration: float, connections: int) -> tuple[float, str]:
    """Threaded http.client client with keep-alive (reconnecting when the server closes)."""
    done = [0] * connections
    bad = [0] * connections
    stop_at = time.perf_counter() + duration

    def worker(slot: int) -> None:
        conn = None
        while time.perf_counter() < stop_at:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", "/tenants", headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
                continue
            if response.status == 200:
                done[slot] += 1
            else:
                bad[slot] += 1
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    note = f"{sum(bad)} non-200 responses" if sum(bad) else ""
    return sum(done) / elapsed, note


# ---- main ---------------------------------------------------------------------------------


def create_staff(email: str, totp_secret: str, secret_key: str) -> int:
    """A bench platform admin enrolled in MFA (staff must be, by default) with `totp_secret`,
    sealed with the servers' `secret_key`."""
    from portal import crypto
    from portal.db import db
    from portal.staff.members import create_staff as create
    from portal.staff.mfa import enrol_staff_mfa

    crypto.configure(secret_key)
    with db.platform_scope() as session:
        member = create(
            session,
            email=email,
            name="Bench Staff",
            role="platform_admin",
            password=common.PASSWORD,
            actor=common.actor(),
        )
        enrol_staff_mfa(session, member, totp_secret, actor=common.actor())
        return member.id


def delete_staff(staff_id: int) -> None:
    from portal.db import db
    from portal.staff.models import StaffUser

    with db.platform_scope() as session:
        member = session.get(StaffUser, staff_id)
        if member is not None:
            session.delete(member)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of untimed load first")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per target")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per target")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    args = parser.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    if args.client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install -y wrk)")
    load = run_wrk if use_wrk else run_python

    url = common.database_url()
    run = common.run_id()
    slugs = [f"bench-p-{run}-{i:03d}" for i in range(TENANTS)]
    created: list[str] = []
    staff_id = None
    servers: list[common.Gunicorn] = []
    logs = tempfile.TemporaryDirectory(prefix="bench-pages-")
    try:
        common.configure(url)
        common.drop_leftovers()
        print(f"pages benchmark on {common.describe(url)}")
        print(f"machine: {common.machine()}")
        created.extend(slugs)
        common.create_tenants(slugs)
        email = f"bench-{run}@msp.example"
        secret = secrets.token_hex(32)
        totp_secret = pyotp.random_base32()
        staff_id = create_staff(email, totp_secret, secret)
        env = dict(
            os.environ,
            # wsgi.py reads the portal's own variables, _pages_app.portal_app() the BENCH_APP_*.
            DATABASE_URL=url,
            REDIS_URL=common.redis_url(),
            SECRET_KEY=secret,
            LOG_LEVEL="WARNING",
            PORTAL_ENV="development",
            BENCH_APP_DATABASE_URL=url,
            BENCH_APP_REDIS_URL=common.redis_url(),
            BENCH_APP_SECRET_KEY=secret,
        )
        entry = "wsgi:app" if (common.ROOT / "wsgi.py").exists() else "_pages_app:portal_app()"
        workers = {"workers": args.workers, "worker_class": args.worker_class}
        portal = common.Gunicorn(entry, env, log=Path(logs.name) / "portal.log", **workers)
        servers.append(portal)
        bare = common.Gunicorn(
            "_pages_app:bare_app()", env, log=Path(logs.name) / "bare.log", **workers
        )
        servers.append(bare)
        portal.wait_ready("/healthz")
        bare.wait_ready("/tenants")

        cookie = sign_in(portal.port, email, totp_secret)
        targets = {
            "portal": (portal.port, {"Cookie": f"session={cookie}"}),
            "bare": (bare.port, {}),
        }
        sizes = {name: check_page(port, hdrs, name) for name, (port, hdrs) in targets.items()}
        print(
            f"gunicorn: portal {entry}, bare _pages_app:bare_app(); "
            f"{args.workers} {args.worker_class} workers each; load: "
            f"{'wrk' if use_wrk else 'python http.client threads'}, "
            f"{args.connections} connections, {args.rounds} x {args.duration:g} s per target"
        )
        print(f"page size: portal {sizes['portal']} bytes, bare {sizes['bare']} bytes")

        for port, hdrs in targets.values():
            load(port, hdrs, args.warmup, args.connections)
        rates: dict[str, list[float]] = {"portal": [], "bare": []}
        ratios: list[float] = []
        for i in range(args.rounds):
            order = ("bare", "portal") if i % 2 == 0 else ("portal", "bare")
            for name in order:
                port, hdrs = targets[name]
                rate, note = load(port, hdrs, args.duration, args.connections)
                rates[name].append(rate)
                print(f"  round {i + 1} {name:<6} {rate:8.1f} req/s  {note}".rstrip(), flush=True)
            # Each round's two runs are back to back, so their ratio shares the machine's state.
            ratios.append(rates["portal"][-1] / rates["bare"][-1])
            print(f"  round {i + 1} ratio portal/bare {ratios[-1]:.1%}", flush=True)

        ratio = common.median(ratios)
        print(f"portal /tenants (signed in): median {common.median(rates['portal']):.1f} req/s")
        print(f"bare Flask, same template:   median {common.median(rates['bare']):.1f} req/s")
        print(f"machine at the end: {common.machine()}")
        print(
            f"ratio portal/bare (median of the rounds' ratios): {ratio:.1%}  "
            f"(target >= 40%: {common.verdict(ratio >= 0.40)})"
        )
    finally:
        for server in servers:
            server.stop()
        print("cleaning up bench tenants and staff...", flush=True)
        try:
            if staff_id is not None:
                delete_staff(staff_id)
            common.drop_tenants(created)
        finally:
            common.shutdown()
            logs.cleanup()


if __name__ == "__main__":
    main()
