"""A tenant page's latency while a flood of wrong sign-ins arrives, vs the same page idle.

The real portal runs under gunicorn with the project's gunicorn.conf.py (2 sync workers unless
--workers/--worker-class say otherwise) on a free loopback port, with PORTAL_PROXY_COUNT=1 so
that the flood's 10 client addresses come from X-Forwarded-For. A bench tenant (`bench-f-…`)
holds a tenant admin and 30 members; the admin signs in through the real form (CSRF on).

Phases, back to back in one run (each --duration seconds):
1. idle: one client requests the tenant's users page (`GET /users`) every --interval seconds;
2. flood: the same, while --rate wrong sign-ins per second (default 50, each with a valid
   CSRF token, half for the admin's email, half for unknown ones) arrive open-loop from
   --addresses addresses (default 10); the flood keeps its pace whatever the answers take;
3. idle again: the reference pools both idle phases, which bracket the flood in time.

Prints p50/p95/max of the page per phase, the flood phase's p95 also for its first seconds
(while each address still has attempts left in the per-address limit, so passwords are being
hashed) and for the rest; page failures (any non-200 or error); the answers the flood got
(422 refused, 429 limited, 503 busy); and **flood p95 / idle p95, target <= 2.0** (idle:
both idle phases pooled; each one's ratio is printed too) with no failed page request. Never
asserts a timing.

Talks to Redis (the throttle and the limit): give it a Redis database of its own with
BENCH_REDIS_URL; its keys for the bench addresses and tenant are deleted at the end.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_flood \
    BENCH_REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python benchmarks/signin_flood.py
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import secrets
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import _common as common

PREFIX = "bench-f-"
MEMBERS = 30


def form_session(port: int, host: str, address: str) -> tuple[str, str]:
    """(session cookie, CSRF token) of the sign-in form, fetched from `address`."""
    headers = {"Host": host, "X-Forwarded-For": address}
    status, got, body = common.request(port, "GET", "/sign-in", headers=headers)
    match = common.CSRF_RE.search(body.decode())
    cookie = common.session_cookie(got)
    if status != 200 or not match or not cookie:
        common.fail(f"GET /sign-in from {address}: HTTP {status}, csrf token: {bool(match)}")
    return cookie, match.group(1)


def sign_in(port: int, host: str, email: str) -> str:
    address = "10.78.0.1"
    cookie, token = form_session(port, host, address)
    status, got, _ = common.request(
        port,
        "POST",
        "/sign-in",
        body=urlencode({"email": email, "password": common.PASSWORD, "csrf_token": token}),
        headers={
            "Host": host,
            "X-Forwarded-For": address,
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"session={cookie}",
        },
    )
    signed_in = common.session_cookie(got)
    if status != 303 or not signed_in:
        common.fail(f"POST /sign-in as the bench admin: HTTP {status}")
    return signed_in


# ---- load ---------------------------------------------------------------------------------


def probe_pages(port, host, cookie, duration, interval, samples, failures, started_at):
    """Sequential GET /users every `interval` s for `duration` s: (offset, latency) samples."""
    headers = {"Host": host, "Cookie": f"session={cookie}", "X-Forwarded-For": "10.78.0.2"}
    stop_at = time.perf_counter() + duration
    next_at = time.perf_counter()
    while time.perf_counter() < stop_at:
        begun = time.perf_counter()
        try:
            status, _, body = common.request(port, "GET", "/users", headers=headers)
            if status != 200 or b"<table" not in body:
                failures.append(f"HTTP {status}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(type(exc).__name__)
        else:
            samples.append((begun - started_at, time.perf_counter() - begun))
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))


def flood(port, host, forms, emails, rate, duration, results) -> None:
    """`rate` wrong sign-ins per second for `duration` s, open-loop, round-robin over `forms`
    (one (address, cookie, token) per client address). Runs in a process of its own, so its
    threads do not hold the page client's GIL; the requests are pre-built bytes on raw
    sockets, so it takes as little CPU from the server as it can. Sends back
    {answer: [seconds, ...]} through `results`."""
    total = int(rate * duration)
    timings: dict[str, list[float]] = {}
    lock = threading.Lock()

    def attempt(i: int) -> None:
        address, cookie, token = forms[i % len(forms)]
        body = urlencode(
            {"email": emails[i % len(emails)], "password": f"wrong-{i}", "csrf_token": token}
        ).encode()
        head = (
            f"POST /sign-in HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {address}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Cookie: session={cookie}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        begun = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(head + body)
                first = sock.recv(64)
                while sock.recv(65536):
                    pass
            key = first.split(b" ", 2)[1].decode() if first.startswith(b"HTTP/") else "bad"
        except OSError as exc:
            key = type(exc).__name__
        with lock:
            timings.setdefault(key, []).append(time.perf_counter() - begun)

    with ThreadPoolExecutor(max_workers=64) as pool:
        start = time.perf_counter()
        for i in range(total):
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            pool.submit(attempt, i)
    results.put(timings)


def stats(latencies: list[float]) -> str:
    if not latencies:
        return "no samples"
    ms = [v * 1000 for v in latencies]
    return (
        f"p50 {common.median(ms):6.1f} ms  p95 {common.percentile(ms, 95):6.1f} ms  "
        f"max {max(ms):7.1f} ms  (n={len(ms)})"
    )


def p95(latencies: list[float]) -> float:
    return common.percentile(latencies, 95) if latencies else float("nan")


# ---- set-up and clean-up ------------------------------------------------------------------


def create_bench_tenant(slug: str) -> str:
    from sqlalchemy import select

    from portal.accounts import lifecycle
    from portal.db import db
    from portal.tenancy.models import Tenant

    common.create_tenants([slug])
    email = f"admin@{slug}.example"
    with db.platform_scope() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).one()
        session.expunge(tenant)
    with db.tenant_scope(tenant) as session:
        lifecycle.create_user(
            session,
            email=email,
            name="Bench Admin",
            password=common.PASSWORD,
            status="active",
            role_keys=["tenant_admin"],
            actor=common.actor(),
        )
        for i in range(MEMBERS):
            lifecycle.create_user(
                session,
                email=f"member-{i:02d}@{slug}.example",
                name=f"Member {i:02d}",
                password=None,
                status="active",
                role_keys=[],
                actor=common.actor(),
            )
    return email


def own_leftovers() -> list[str]:
    """Bench tenants of an earlier, killed run of this script (only `bench-f-`, this database)."""
    from sqlalchemy import select

    from portal.db import db
    from portal.tenancy.models import Tenant

    with db.platform_scope() as session:
        return list(session.scalars(select(Tenant.slug).where(Tenant.slug.startswith(PREFIX))))


def clear_redis_keys(slug: str, addresses: list[str]) -> None:
    from portal.queue import queues

    redis = queues.redis
    patterns = [f"throttle:user:{slug}:*", *(f"throttle:flood:{a}:*" for a in addresses)]
    for pattern in patterns:
        keys = list(redis.scan_iter(pattern))
        if keys:
            redis.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30, help="seconds per phase")
    parser.add_argument("--rate", type=float, default=50, help="wrong sign-ins per second")
    parser.add_argument("--addresses", type=int, default=10, help="flooding client addresses")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between pages")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    args = parser.parse_args()
    if not (0 < args.rate <= 500 and 0 < args.duration <= 600 and 0 < args.addresses <= 250):
        parser.error("rate 0-500/s, duration 0-600 s, addresses 1-250")

    from portal.queue import queues

    url = common.database_url()
    slug = f"{PREFIX}{common.run_id()}"
    host = f"{slug}.{common.BASE_DOMAIN}"
    addresses = [f"10.77.0.{i + 1}" for i in range(args.addresses)] + ["10.78.0.1", "10.78.0.2"]
    created: list[str] = []
    server = None
    logs = tempfile.TemporaryDirectory(prefix="bench-flood-")
    try:
        common.configure(url)
        queues.configure(common.redis_url())
        leftovers = own_leftovers()
        if leftovers:
            print(f"dropping {len(leftovers)} bench tenant(s) left by an earlier run")
            common.drop_tenants(leftovers)
        print(f"sign-in flood benchmark on {common.describe(url)}")
        print(f"machine: {common.machine()}")
        created.append(slug)
        email = create_bench_tenant(slug)
        secret = secrets.token_hex(32)
        env = dict(
            os.environ,
            DATABASE_URL=url,
            REDIS_URL=common.redis_url(),
            SECRET_KEY=secret,
            LOG_LEVEL="WARNING",
            PORTAL_ENV="development",
            PORTAL_BASE_DOMAIN=common.BASE_DOMAIN,
            PORTAL_PROXY_COUNT="1",
        )
        server = common.Gunicorn(
            "wsgi:app",
            env,
            log=Path(logs.name) / "portal.log",
            workers=args.workers,
            worker_class=args.worker_class,
            threads=args.threads,
            config=common.ROOT / "gunicorn.conf.py",
        )
        server.wait_ready()
        cookie = sign_in(server.port, host, email)
        forms = [(a, *form_session(server.port, host, a)) for a in addresses[: args.addresses]]
        emails = [email, f"nobody@{slug}.example", email, f"ghost@{slug}.example"]
        from portal.passwords import _hasher

        print(
            f"gunicorn -c gunicorn.conf.py wsgi:app: {args.workers} {args.worker_class} workers; "
            f"Argon2id m={_hasher.memory_cost // 1024} MiB t={_hasher.time_cost} "
            f"p={_hasher.parallelism}"
        )
        print(
            f"page: GET /users on {host} (signed-in tenant admin, {MEMBERS + 1} users) every "
            f"{args.interval * 1000:.0f} ms; flood: {args.rate:g} wrong sign-ins/s from "
            f"{args.addresses} addresses; {args.duration:g} s per phase"
        )
        probe_pages(server.port, host, cookie, 3, args.interval, [], [], time.perf_counter())

        results = {}
        timings: dict[str, list[float]] = {}
        spawn = multiprocessing.get_context("spawn")
        flood_results = spawn.Queue()
        for phase in ("idle", "flood", "idle again"):
            samples: list[tuple[float, float]] = []
            failures: list[str] = []
            started_at = time.perf_counter()
            flooder = None
            if phase == "flood":
                flooder = spawn.Process(
                    target=flood,
                    args=(
                        server.port,
                        host,
                        forms,
                        emails,
                        args.rate,
                        args.duration,
                        flood_results,
                    ),
                )
                flooder.start()
            probe_pages(
                server.port,
                host,
                cookie,
                args.duration,
                args.interval,
                samples,
                failures,
                started_at,
            )
            if flooder is not None:
                timings = flood_results.get(timeout=args.duration + 120)
                flooder.join(30)
            results[phase] = (samples, failures)
            latencies = [latency for _, latency in samples]
            note = f", {len(failures)} FAILED: {sorted(set(failures))}" if failures else ""
            print(f"  {phase:<11} {stats(latencies)}{note}", flush=True)

        flood_samples = results["flood"][0]
        # While every address still has attempts left in the window, passwords are hashed.
        limit = int(env.get("SIGN_IN_RATE_LIMIT") or 30)
        burst = limit * args.addresses / args.rate
        early = [lat for at, lat in flood_samples if at < burst + 1]
        later = [lat for at, lat in flood_samples if at >= burst + 1]
        print(
            f"  flood, first {burst + 1:.0f} s (hashing until each address is limited): "
            f"{stats(early)}"
        )
        print(f"  flood, the rest: {stats(later)}")
        answers = {key: len(values) for key, values in sorted(timings.items())}
        print(f"  flood answers: {answers}")
        for key, values in sorted(timings.items()):
            print(f"    {key}: {stats(values)}")
        before = [lat for _, lat in results["idle"][0]]
        after = [lat for _, lat in results["idle again"][0]]
        flooded = [lat for _, lat in flood_samples]
        # The reference pools both idle phases, which bracket the flood in time.
        ratio = p95(flooded) / p95(before + after)
        failed = sum(len(f) for _, f in results.values())
        print(f"machine at the end: {common.machine()}")
        print(
            f"page p95 flood / idle (before: {p95(flooded) / p95(before):.2f}x, after: "
            f"{p95(flooded) / p95(after):.2f}x)"
        )
        print(
            f"page p95 flood / idle (both idle phases): {ratio:.2f}x "
            f"(target <= 2.0: {common.verdict(ratio <= 2.0)}); "
            f"failed page requests: {failed} ({common.verdict(failed == 0)})"
        )
    finally:
        if server is not None:
            server.stop()
        print("cleaning up the bench tenant and its Redis keys...", flush=True)
        try:
            clear_redis_keys(slug, addresses)
            common.drop_tenants(created)
        finally:
            queues.close()
            common.shutdown()
            logs.cleanup()


if __name__ == "__main__":
    main()
