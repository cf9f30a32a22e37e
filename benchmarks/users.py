"""The tenant users page with 100,000 users, against bare SQL; and sign-ins per second.

1. One bench tenant is provisioned with `create_tenant`; a tenant admin is created with
   `create_user` (a real Argon2 hash of the bench password). The other users (N - 1, default
   99,999) are loaded with COPY into the tenant's schema, as the owner connection: ~85 %
   active, 8 % invited (no password, never signed in), 5 % suspended, 2 % deleted; ~30 % with
   MFA; last sign-in spread over 90 days (10 % of the others never); ~2 % tenant_admin and ~3 %
   compliance_officer in `user_roles`, also by COPY. Every user with a password shares the
   admin's hash. Then VACUUM (ANALYZE) of both tables, as autovacuum would do on a live table.
2. The admin signs in through the real tenant sign-in form (Flask test client, Host
   `<slug>.localhost`, CSRF on). Timed, `--requests` times each after `--warmup`: the users page
   (a) first page, (b) a filtered page (status, role and MFA filters; plus two searches, a word
   and an email prefix, against the former contains-search's bare SQL as well), and
   (c) page 500, reached by following the "Next" links 499 times from the first page, then
   requested repeatedly with that one cursor. Each as a full page and as an HTMX fragment
   (`HX-Request: true`); the targets apply to the full page.
3. Reference: for each page, what it shows, bare: the same rows (the columns the page shows,
   the same WHERE, ORDER BY, keyset predicate and LIMIT), their roles, and the total count, run
   with plain psycopg on one connection, schema-qualified, timed the same number of times (and
   the rows statement alone, for information). Printed: p50 and p95 of each, page p95 / bare
   p95, and PASS/MISS against the targets (page p95 < 50 ms, ratio <= 3). From 5 requests
   with a statement listener: statements per request, time in SQL and in the count, and the
   plans of the portal's rows and count statements (EXPLAIN, not executed).
   Then the Sessions page over `--sessions` loaded session rows: its plans and latency.
4. Sign-ins per second: Argon2 verifications in one process (`verify_password`, and the full
   `check_password_step` with its lookup and Redis throttle), in 2 processes in parallel
   (each configured on its own), and end-to-end POST /sign-in through the test client. The
   Argon2 parameters are printed with the arithmetic that explains the rate.

Sign-in needs Redis (the throttle): BENCH_REDIS_URL, default redis://127.0.0.1:6379/15; the
throttle keys of the bench tenant are deleted at the end. The bench tenant is dropped at the
end, also on failure. Never asserts a timing.

    .venv/bin/python benchmarks/users.py [--users 100000] [--requests 300] [--warmup 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import time
from datetime import UTC, datetime, timedelta
from html import unescape

import _common as common
import psycopg

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
NEXT_RE = re.compile(r'href="([^"]*after=[^"]*)"[^>]*>Next</a>')

FIRST = (
    "Anna Ben Carla David Emma Felix Greta Hugo Ida Jonas Klara Lukas Mia Noah Olga Paul Quinn "
    "Rosa Sven Tara Ulf Vera Walter Xenia Yusuf Zoe Amir Bea Chen Dara Eli Fatima Gino Hana "
    "Ivan Jana Kofi Lena Mateo Nina"
).split()
LAST = (
    "Schmidt Muller Meyer Weber Fischer Wagner Becker Hoffmann Schulz Koch Richter Klein Wolf "
    "Neumann Schwarz Braun Zimmermann Hartmann Kruger Lange Werner Krause Lehmann Kaiser Fuchs "
    "Scholz Vogel Friedrich Keller Gunther Frank Berger Winkler Roth Beck Lorenz Baumann Albrecht "
    "Schuster Simon Ludwig Bohm Winter Kraus Martin Schumacher Vogt Stein Jager Otto Sommer "
    "Gross Seidel Heinrich Brandt Haas Schreiber Graf Dietrich Ziegler"
).split()
STATUSES = (("active", 85), ("invited", 8), ("suspended", 5), ("deleted", 2))


# ---- the bench tenant and its users -------------------------------------------------------


def tenant_row(slug: str):
    from sqlalchemy import select

    from portal.db import db
    from portal.tenancy.models import Tenant

    with db.platform_scope() as session:
        return session.scalars(select(Tenant).where(Tenant.slug == slug)).one()


def create_admin(slug: str) -> tuple[str, str]:
    """The tenant admin who signs in; returns (email, password hash)."""
    from sqlalchemy import select

    from portal.accounts.lifecycle import create_user
    from portal.accounts.models import User
    from portal.db import db

    email = f"admin@{slug}.example"
    with db.tenant_scope(tenant_row(slug)) as session:
        create_user(
            session,
            email=email,
            name="Bench Admin",
            password=common.PASSWORD,
            role_keys=["tenant_admin"],
            actor=common.actor(),
        )
        password_hash = session.scalar(select(User.password_hash).where(User.email == email))
    return email, password_hash


def load_users(url: str, schema: str, count: int, password_hash: str, seed: int) -> dict:
    """COPY `count` users and their roles into `schema`; returns counts by kind."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    counts = {"users": count, "mfa": 0, "never": 0, "tenant_admin": 0, "compliance_officer": 0}
    counts.update({status: 0 for status, _ in STATUSES})
    statuses = [status for status, _ in STATUSES]
    weights = [weight for _, weight in STATUSES]
    with psycopg.connect(url) as conn:
        first_id = conn.execute(
            f'SELECT coalesce(max(id), 0) + 1 FROM "{schema}".users'
        ).fetchone()[0]
        with conn.cursor() as cur:
            with cur.copy(
                f'COPY "{schema}".users (id, email, name, status, password_hash, created_at, '
                "deleted_at, last_sign_in_at, sign_in_count, mfa_enabled_at) FROM STDIN"
            ) as copy:
                for i in range(count):
                    first, last = rng.choice(FIRST), rng.choice(LAST)
                    status = rng.choices(statuses, weights)[0]
                    counts[status] += 1
                    created = now - timedelta(seconds=rng.uniform(91, 730) * 86400)
                    signed_in = None
                    if status != "invited" and rng.random() >= 0.10:
                        signed_in = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
                    counts["never"] += signed_in is None
                    mfa = None
                    if status != "invited" and rng.random() < 0.30 / 0.92:
                        mfa = created + timedelta(days=rng.uniform(0, 60))
                        counts["mfa"] += 1
                    copy.write_row(
                        (
                            first_id + i,
                            f"{first.lower()}.{last.lower()}.{i}@example.com",
                            f"{first} {last}",
                            status,
                            None if status == "invited" else password_hash,
                            created,
                            now - timedelta(days=rng.uniform(0, 29))
                            if status == "deleted"
                            else None,
                            signed_in,
                            0 if signed_in is None else rng.randint(1, 400),
                            mfa,
                        )
                    )
            with cur.copy(f'COPY "{schema}".user_roles (user_id, role_key) FROM STDIN') as copy:
                for i in range(count):
                    draw = rng.random()
                    role = (
                        "tenant_admin"
                        if draw < 0.02
                        else "compliance_officer"
                        if draw < 0.05
                        else None
                    )
                    if role:
                        counts[role] += 1
                        copy.write_row((first_id + i, role))
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{schema}\".users', 'id'), %s)",
            (first_id + count - 1,),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'VACUUM (ANALYZE) "{schema}".users')
        conn.execute(f'VACUUM (ANALYZE) "{schema}".user_roles')
    return counts


def load_sessions(url: str, schema: str, count: int, seed: int) -> int:
    """COPY `count` sign-in sessions of random users, last seen over the past 7 days (expired
    rows linger until their next use), each created up to 11 hours before it was last seen;
    returns how many were seen in the last 30 minutes (the default idle timeout)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    recent = 0
    with psycopg.connect(url) as conn:
        low, high = conn.execute(f'SELECT min(id), max(id) FROM "{schema}".users').fetchone()
        with conn.cursor() as cur:
            with cur.copy(
                f'COPY "{schema}".user_sessions (token_hash, user_id, created_at, last_seen_at, '
                "client_addr, user_agent, method) FROM STDIN"
            ) as copy:
                for i in range(count):
                    seen = now - timedelta(seconds=rng.uniform(0, 7 * 86400))
                    recent += seen >= now - timedelta(minutes=30)
                    copy.write_row(
                        (
                            f"bench{i:059d}",
                            rng.randint(low, high),
                            seen - timedelta(seconds=rng.uniform(0, 11 * 3600)),
                            seen,
                            f"198.51.100.{i % 250}",
                            "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                            "password",
                        )
                    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'VACUUM (ANALYZE) "{schema}".user_sessions')
    return recent


def measure_sessions_page(admin: Admin, conn, args) -> None:
    """The Sessions page over the loaded sessions: its statements' plans and its latency."""
    captured = captured_statements(admin, "/sessions")
    print(f"\n(d) sessions page: GET /sessions ({args.sessions} session rows)")
    for statement, parameters, _ in captured[0]:
        if "user_sessions" in statement and ("LIMIT" in statement or "count(*)" in statement):
            kind = "count" if "count(*)" in statement else "rows"
            print(f"  plan, portal's {kind}: {plan_summary(conn, statement, parameters)}")
            analyzed = conn.execute("EXPLAIN (ANALYZE) " + statement, parameters).fetchall()
            print(f"  ({analyzed[-1][0].strip()})")
    full = admin.latencies("/sessions", args.requests, args.warmup, fragment=False)
    print("  " + summary("page, full", full))


# ---- sign-ins per second --------------------------------------------------------------------


def verify_rate(password_hash: str, count: int) -> tuple[float, float]:
    """Sequential `verify_password` calls: (seconds per verification, CPU seconds per one)."""
    from portal.passwords import verify_password

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        if not verify_password(password_hash, common.PASSWORD):
            raise RuntimeError("the bench password does not verify")
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def password_step_rate(slug: str, email: str, count: int) -> float:
    """Sequential `check_password_step` calls, each in its own tenant transaction (as in a
    request, with the Redis throttle): seconds per sign-in."""
    from portal.auth.services import check_password_step
    from portal.auth.throttle import SignInThrottle
    from portal.db import db
    from portal.queue import queues

    throttle = SignInThrottle(queues.redis, f"user:{slug}")
    started = time.perf_counter()
    for _ in range(count):
        with db.tenant_scope(slug) as session:
            user = check_password_step(
                session, email, common.PASSWORD, actor=common.actor(), throttle=throttle
            )
        if user is None:
            raise RuntimeError(f"check_password_step refused {email}")
    return (time.perf_counter() - started) / count


def _worker(url, slug, email, password_hash, count, kind, barrier, out):
    """One process of the parallel measurement: configures the portal on its own, warms up
    (one untimed sign-in), waits for the others, then runs `count` timed ones."""
    from portal.db import db, load_models
    from portal.queue import queues

    db.configure(url)
    load_models()
    queues.configure(common.redis_url())
    run = (
        (lambda n: verify_rate(password_hash, n))
        if kind == "verify"
        else (lambda n: password_step_rate(slug, email, n))
    )
    run(1)
    barrier.wait()
    started = time.perf_counter()
    run(count)
    out.put((started, time.perf_counter()))
    db.dispose()


def parallel_rate(url, slug, email, password_hash, count, kind, processes) -> float:
    """Sign-ins per second of `processes` processes started together, `count` each."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    out = context.Queue()
    workers = [
        context.Process(
            target=_worker, args=(url, slug, email, password_hash, count, kind, barrier, out)
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    spans = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode:
            common.fail(f"a parallel sign-in process exited with {worker.exitcode}")
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return processes * count / wall


# ---- the page through the app -----------------------------------------------------------------


class Admin:
    """A test client signed in as the bench tenant's admin, through the real sign-in form."""

    def __init__(self, app, slug: str, email: str):
        self.app = app
        self.host = f"{slug}.{common.BASE_DOMAIN}"
        self.email = email
        self.client = app.test_client()
        self.sign_ins = 0

    def sign_in(self, client=None) -> float:
        """Sign in (CSRF on); returns the seconds the POST took."""
        client = client or self.client
        # Each sign-in from its own address (198.18.0.0/15, for benchmarks): the per-address
        # limit (SIGN_IN_RATE_LIMIT a minute) would answer 429 after 30 from one.
        self.sign_ins += 1
        address = {"REMOTE_ADDR": f"198.18.{self.sign_ins // 250}.{self.sign_ins % 250 + 1}"}
        page = client.get("/sign-in", headers={"Host": self.host}, environ_base=address)
        match = CSRF_RE.search(page.get_data(as_text=True))
        if page.status_code != 200 or not match:
            common.fail(f"sign-in page of {self.host}: HTTP {page.status_code}, no csrf_token")
        started = time.perf_counter()
        response = client.post(
            "/sign-in",
            data={"email": self.email, "password": common.PASSWORD, "csrf_token": match.group(1)},
            headers={"Host": self.host},
            environ_base=address,
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 303:
            common.fail(f"sign-in to {self.host}: HTTP {response.status_code}")
        return elapsed

    def get(self, url: str, *, fragment: bool = False) -> tuple[float, str]:
        headers = {"Host": self.host}
        if fragment:
            headers["HX-Request"] = "true"
        started = time.perf_counter()
        response = self.client.get(url, headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            common.fail(f"GET {url} on {self.host}: HTTP {response.status_code}")
        return elapsed, response.get_data(as_text=True)

    def latencies(self, url: str, requests: int, warmup: int, *, fragment: bool) -> list[float]:
        for _ in range(warmup):
            self.get(url, fragment=fragment)
        return [self.get(url, fragment=fragment)[0] for _ in range(requests)]


def end_to_end_sign_ins(admin: Admin, count: int) -> float:
    """POST /sign-in through the test client, a fresh client (no session) each time: seconds
    per sign-in (the form's GET is not timed)."""
    admin.sign_in(admin.app.test_client())
    return sum(admin.sign_in(admin.app.test_client()) for _ in range(count)) / count


# ---- figures ------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def summary(label: str, values: list[float]) -> str:
    return f"{label}: p50 {ms(common.median(values))}, p95 {ms(common.percentile(values, 95))}"


# ---- the pages and their bare SQL ---------------------------------------------------------------

COLUMNS = "id, email, name, status, created_at, deleted_at, last_sign_in_at, mfa_enabled_at"


class Case:
    """One users page: its URL, and the bare SQL that returns what it shows."""

    def __init__(
        self, label: str, url: str, where: str, params: tuple = (), former: tuple | None = None
    ):
        self.label = label
        self.url = url
        self.where = where
        self.params = params
        # (where, params) of the same search as the former contains-search, for comparison.
        # A search has only the 50 ms target: its bare side is a few index lookups, and the
        # page's fixed cost (~10 ms) would be many times that.
        self.former = former
        self.ratio_target = former is None

    def rows_sql(self, schema: str, size: int) -> tuple[str, tuple]:
        sql = (
            f'SELECT {COLUMNS} FROM "{schema}".users u WHERE {self.where} '
            f"ORDER BY lower(email), id LIMIT {size + 1}"
        )
        return sql, self.params

    def count_sql(self, schema: str) -> tuple[str, tuple]:
        # The page's total ignores the cursor: the keyset predicate is the last condition.
        where, params = self.where, self.params
        if " AND (lower(email), id) > " in where:
            where = where.split(" AND (lower(email), id) > ")[0]
            params = params[:-2]
        return f'SELECT count(*) FROM "{schema}".users u WHERE {where}', params


def filter_where(schema: str, role: str) -> str:
    return (
        "status = 'active' AND mfa_enabled_at IS NOT NULL AND EXISTS "
        f'(SELECT 1 FROM "{schema}".user_roles r WHERE r.user_id = u.id '
        f"AND r.role_key = '{role}')"
    )


def bare_page(conn, case: Case, schema: str, size: int) -> None:
    """What the page shows, bare: its rows, their roles, the total."""
    rows = conn.execute(*case.rows_sql(schema, size)).fetchall()
    ids = [row[0] for row in rows[:size]]
    conn.execute(
        f'SELECT user_id, role_key FROM "{schema}".user_roles WHERE user_id = ANY(%s) '
        "ORDER BY user_id, role_key",
        (ids,),
    ).fetchall()
    conn.execute(*case.count_sql(schema)).fetchall()


def timed(run, requests: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def search_case(label: str, q: str) -> Case:
    """A search page: the portal's word-prefix search over the GIN-indexed tsvector column
    (the tsquery text as portal.accounts.listing builds it), and the former contains-search."""
    from urllib.parse import quote

    from portal.accounts.listing import search_query

    return Case(
        f'{label} q="{q}" (word prefixes of email and name, tsquery {search_query(q)})',
        f"/users?q={quote(q)}",
        "search_vector @@ CAST(lower(%s) AS tsquery) AND status <> 'deleted'",
        (search_query(q),),
        former=(
            "(email ILIKE %s OR name ILIKE %s) AND status <> 'deleted'",
            (f"%{q}%",) * 2,
        ),
    )


def email_prefix(url: str, schema: str) -> str:
    """What someone types to find a person by the start of their address: a local part and its
    "@" (like "alex@"), of the first generated Anna Schmidt."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT split_part(email, '@', 1) || '@' FROM \"{schema}\".users "
            "WHERE email LIKE 'anna.schmidt.%' ORDER BY id LIMIT 1"
        ).fetchone()
    return row[0] if row else "anna.schmidt.1@"


def walk_to_page(admin: Admin, first_url: str, page: int) -> str:
    """Follow the "Next" links from `first_url` to page `page`; returns its URL."""
    url = first_url
    for number in range(2, page + 1):
        _, body = admin.get(url)
        match = NEXT_RE.search(body)
        if not match:
            common.fail(f"no Next link on page {number - 1} ({url})")
        url = unescape(match.group(1))
    return url


def captured_statements(admin: Admin, url: str, requests: int = 5) -> list[list[tuple]]:
    """The statements each of `requests` requests of `url` sends (signed in, full page), as
    (statement, parameters, seconds) per request."""
    from sqlalchemy import event

    from portal.db import db

    sent: list[tuple] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        context._bench_started = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters, time.perf_counter() - context._bench_started))

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    per_request = []
    try:
        for _ in range(requests):
            admin.get(url)
            per_request.append(sent[:])
            sent.clear()
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)
    return per_request


def plan_summary(conn, statement: str, parameters) -> str:
    """The plan of a portal statement (EXPLAIN, not executed), one node per segment."""
    lines = [row[0] for row in conn.execute("EXPLAIN " + statement, parameters).fetchall()]
    nodes = [lines[0].split("  (cost")[0].strip()]
    nodes += [line.strip()[3:].split("  (cost")[0].strip() for line in lines[1:] if "->" in line]
    return " > ".join(nodes)


def cursor_values(url: str) -> tuple:
    """The (lower(email), id) a page's `after=` cursor points at."""
    from urllib.parse import parse_qs, urlsplit

    from portal.pagination import decode_cursor

    values = decode_cursor(parse_qs(urlsplit(url).query)["after"][0], 2)
    if values is None:
        common.fail(f"cannot read the cursor of {url}")
    return values


def measure_case(admin: Admin, conn, case: Case, schema: str, args) -> dict:
    """Time one page (full, fragment) and its bare SQL; print the figures and the verdict."""
    captured = captured_statements(admin, case.url)
    counts = sorted(len(sent) for sent in captured)
    sql_time = common.median([sum(t for _, _, t in sent) for sent in captured])
    count_time = common.median([sum(t for s, _, t in sent if "count(*)" in s) for sent in captured])
    print(f"\n{case.label}: GET {case.url}")
    print(
        f"  portal: {counts[0]}-{counts[-1]} statements per request (SET ROLE included), "
        f"{ms(sql_time)} in SQL, of which the count {ms(count_time)} "
        f"(median of {len(captured)} requests)"
    )
    for statement, parameters, _ in captured[0]:
        if "sort_value" in statement or "count(*)" in statement:
            kind = "rows" if "sort_value" in statement else "count"
            print(f"  plan, portal's {kind}: {plan_summary(conn, statement, parameters)}")
    full = admin.latencies(case.url, args.requests, args.warmup, fragment=False)
    fragment = admin.latencies(case.url, args.requests, args.warmup, fragment=True)
    bare = timed(lambda: bare_page(conn, case, schema, args.size), args.requests, args.warmup)
    rows_only = timed(
        lambda: conn.execute(*case.rows_sql(schema, args.size)).fetchall(),
        args.requests,
        args.warmup,
    )
    p95 = {
        name: common.percentile(values, 95)
        for name, values in (("full", full), ("fragment", fragment), ("bare", bare))
    }
    p95["rows"] = common.percentile(rows_only, 95)
    print("  " + summary("page, full", full))
    print("  " + summary("page, HTMX fragment", fragment))
    print("  " + summary("bare SQL: rows + their roles + count", bare))
    print("  " + summary("bare SQL: rows only", rows_only))
    if case.former:
        former = Case(case.label, case.url, *case.former)
        formerly = timed(lambda: bare_page(conn, former, schema, args.size), args.requests, 0)
        print(
            "  " + summary("bare SQL, the former contains-search: rows + roles + count", formerly)
        )
        print(f"  (its count: {conn.execute(*former.count_sql(schema)).fetchone()[0]} users)")
    ratio = p95["full"] / p95["bare"]
    verdict = ("PASS" if ratio <= 3 else "MISS") if case.ratio_target else "no target (a search)"
    print(
        f"  full page p95 {ms(p95['full'])}: target < 50 ms: "
        f"{'PASS' if p95['full'] < 0.050 else 'MISS'}; "
        f"page p95 / bare p95 = {ratio:.2f}: target <= 3: {verdict}"
    )
    print(
        f"  (fragment / bare {p95['fragment'] / p95['bare']:.2f}; "
        f"full / bare rows only {p95['full'] / p95['rows']:.2f})"
    )
    return {"label": case.label, "ratio": ratio, **p95}


def sign_in_rates(url: str, slug: str, admin: Admin, password_hash: str, count: int) -> float:
    from portal.passwords import _hasher, configure_hashing

    print(
        f"\nArgon2id parameters (portal.passwords._hasher): time_cost={_hasher.time_cost}, "
        f"memory_cost={_hasher.memory_cost} KiB ({_hasher.memory_cost // 1024} MiB), "
        f"parallelism={_hasher.parallelism}, hash_len={_hasher.hash_len}"
    )
    # The rate is the machine's hashing capacity: lift the machine-wide slot (which admits one
    # hash at a time through Redis on purpose, and refuses a second), as the CLI has none.
    configure_hashing(concurrency=2, wait_seconds=5, host_concurrency=0)
    verify_rate(password_hash, 2)
    per_hash, cpu = verify_rate(password_hash, count)
    print(
        f"one process, verify_password x{count}: {ms(per_hash)} per verification "
        f"({1 / per_hash:.1f}/s), CPU {ms(cpu)} per verification "
        f"(CPU/wall {cpu / per_hash:.2f}; above 1 when the {_hasher.parallelism} lanes' "
        "threads run on both cores at once)"
    )
    password_step_rate(slug, admin.email, 2)
    step = password_step_rate(slug, admin.email, count)
    print(
        f"one process, check_password_step x{count} (own transaction, Redis throttle): "
        f"{ms(step)} per sign-in ({1 / step:.1f}/s)"
    )
    processes = 2
    pure = parallel_rate(url, slug, admin.email, password_hash, count, "verify", processes)
    steps = parallel_rate(url, slug, admin.email, password_hash, count, "step", processes)
    print(
        f"{processes} processes in parallel, x{count} each: verify_password {pure:.1f}/s, "
        f"check_password_step {steps:.1f}/s ({steps * step:.2f} x one process)"
    )
    end_to_end = end_to_end_sign_ins(admin, count)
    print(
        f"end to end, POST /sign-in through the test client x{count} (one process): "
        f"{ms(end_to_end)} per sign-in ({1 / end_to_end:.1f}/s)"
    )
    cores = os.cpu_count() or 1
    print(
        f"explanation: one verification makes {_hasher.time_cost} passes over "
        f"{_hasher.memory_cost // 1024} MiB in {_hasher.parallelism} lanes, {ms(cpu)} of CPU. "
        f"Sign-ins/s ~= cores / CPU per verification = {cores} / {cpu:.3f} s = "
        f"{cores / cpu:.1f}/s at most; one process gets 1 / wall time, more than 1 / CPU only "
        f"as far as the lanes' threads overlap; {processes} processes fill {cores} cores. "
        f"Memory: {_hasher.memory_cost // 1024} MiB per verification in flight "
        f"({processes * _hasher.memory_cost // 1024} MiB with {processes} at once)."
    )
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="users in the tenant")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    parser.add_argument("--page", type=int, default=500, help="the deep page, by Next links")
    parser.add_argument("--search", default="schmidt", help="the q= of the search page")
    parser.add_argument(
        "--email-prefix",
        default="",
        help='q= of the email-prefix search (default: "anna.schmidt.N@")',
    )
    parser.add_argument("--sessions", type=int, default=100_000, help="session rows loaded")
    parser.add_argument("--sign-ins", type=int, default=40, help="timed sign-ins per measure")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated users")
    args = parser.parse_args()
    args.size = 50  # portal.accounts.listing.PAGE_SIZE
    if args.users < (args.page + 1) * args.size:
        parser.error(f"--users must be at least {(args.page + 1) * args.size} for --page")

    from portal.accounts.listing import PAGE_SIZE
    from portal.db import tenant_schema

    args.size = PAGE_SIZE
    url = common.database_url()
    slug = f"bench-u-{common.run_id()}"
    schema = tenant_schema(slug)
    created: list[str] = []
    try:
        app = common.create_app(url)
        common.drop_leftovers()
        print(f"users benchmark on {common.describe(url)}, {args.users} users")
        print(f"machine: {common.machine()}")

        # 1. The tenant and its users.
        created.append(slug)
        common.create_tenants([slug])
        email, password_hash = create_admin(slug)
        started = time.perf_counter()
        counts = load_users(url, schema, args.users - 1, password_hash, args.seed)
        print(
            f"loaded {args.users - 1} users by COPY in {time.perf_counter() - started:.1f} s "
            f"(with VACUUM ANALYZE), plus the admin: "
            + ", ".join(f"{counts[s]} {s}" for s, _ in STATUSES)
            + f"; {counts['mfa']} with MFA, {counts['never']} never signed in; "
            f"{counts['tenant_admin']} tenant_admin, {counts['compliance_officer']} "
            "compliance_officer"
        )

        # 2. and 3. The pages against bare SQL.
        admin = Admin(app, slug, email)
        admin.sign_in()
        walk_started = time.perf_counter()
        deep_url = walk_to_page(admin, "/users", args.page)
        print(
            f"followed Next {args.page - 1} times in {time.perf_counter() - walk_started:.1f} s "
            f"to page {args.page}: {deep_url[:60]}..."
        )
        role = "compliance_officer"
        cases = [
            Case("(a) first page", "/users", "status <> 'deleted'"),
            Case(
                f"(b) filtered: active {role}s with MFA",
                f"/users?status=active&role={role}&mfa=on",
                filter_where(schema, role),
            ),
            search_case("(b2) search", args.search),
            search_case("(b3) email prefix", args.email_prefix or email_prefix(url, schema)),
            Case(
                f"(c) page {args.page} by keyset",
                deep_url,
                "status <> 'deleted' AND (lower(email), id) > (%s, %s)",
                cursor_values(deep_url),
            ),
        ]
        results = []
        with psycopg.connect(url, autocommit=True) as conn:
            for case in cases:
                results.append(measure_case(admin, conn, case, schema, args))

        # The Sessions page at scale (not a target: its plan, and the page's latency).
        started = time.perf_counter()
        recent = load_sessions(url, schema, args.sessions, args.seed)
        print(
            f"\nloaded {args.sessions} sessions by COPY in {time.perf_counter() - started:.1f} s "
            f"(with VACUUM ANALYZE), {recent} of them seen in the last 30 minutes"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            measure_sessions_page(admin, conn, args)

        # 4. Sign-ins per second.
        rate = sign_in_rates(url, slug, admin, password_hash, args.sign_ins)

        print(f"\nmachine at the end: {common.machine()}")
        print(
            "summary: "
            + "; ".join(
                f"{r['label'].split(' ')[0]} p95 {r['full'] * 1000:.1f} ms ({r['ratio']:.2f}x bare)"
                for r in results
            )
            + f"; sign-ins {rate:.1f}/s on 2 processes"
        )
    finally:
        print(f"cleaning up {len(created)} bench tenant(s)...", flush=True)
        try:
            forget_throttle(slug)
            common.drop_tenants(created)
        finally:
            common.shutdown()


def forget_throttle(slug: str) -> None:
    """Delete the bench tenant's throttle keys (none are left after successful sign-ins)."""
    from portal.queue import queues

    try:
        keys = list(queues.redis.scan_iter(f"throttle:user:{slug}:*"))
        if keys:
            queues.redis.delete(*keys)
    except Exception:  # Redis not configured or down: the keys expire within the hour
        pass


if __name__ == "__main__":
    main()
