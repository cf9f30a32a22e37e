"""Every route of both sites, fed arbitrary query strings and form bodies (hypothesis), signed in
with full rights: never a 5xx, and a refusal (4xx) changes no stored data.

- The routes come from each app's `url_map`, so a route added later is fuzzed automatically;
  a route whose path arguments this file cannot fill, or that cannot be fuzzed, must be listed
  in EXCLUDED with a reason (test_every_route_is_fuzzed_or_excluded_with_a_reason fails
  otherwise).
- Inputs are built as raw bytes, as an attacker sends them: field names read from the pages
  themselves (so forms get their own fields) and random ones, repeated keys, NUL bytes, lone
  surrogates and non-UTF-8 percent-encodings, huge numbers, dates at the calendar's ends,
  strings up to 70,000 characters, tampered keyset cursors; path ids out of any range.
- "No change" is a snapshot of every table of the platform schema and the tenant's schema:
  the row count, the audit trails' last seq, and a digest of each table's rows (except the
  session tables, whose last-seen time moves on every request).
- Run time stays modest: three explicit examples (every field of the pages with a hostile
  value) and FUZZ_EXAMPLES (default 3) generated ones per route and method, derandomized
  so CI reproduces a failure, no shrinking (the failing example is reported as generated).
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import quote, quote_from_bytes

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from portal.accounts import roles
from portal.accounts.models import Device, User, UserSession
from portal.compliance.audit import Actor
from portal.db import db, tenant_schema
from portal.mail_models import OutboxMessage
from portal.staff.models import StaffUser
from portal.tenancy.models import Tenant
from tests.conftest import PASSWORD, purge
from tests.site import conftest as site_fixtures
from tests.site.support import host

# The tenant site's fixtures, used here too.
admin, site_user, sign_in_site = (
    site_fixtures.admin,
    site_fixtures.site_user,
    site_fixtures.sign_in_site,
)

# Examples carry strings of up to 70,000 characters; hypothesis warns when it prints them.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
CONSOLE = "localhost"
FUZZ_ADDR = "198.51.100.77"  # fuzzed sign-ins are throttled here, not at the fixtures' address
SYSTEM = Actor.system("test")

# Routes not fuzzed, each with its reason. Keys are endpoint names of either site.
EXCLUDED = {
    "static": "serves files from static/; it reads nothing but the file name",
    "console.sign_out": "ends the session the fuzzing runs in (tests/console cover sign-out)",
    "site.sign_out": "ends the session the fuzzing runs in (tests/site cover sign-out)",
}
# Refusals these routes answer are recorded on purpose (A4: failed sign-ins are audited and
# counted even though the answer is 4xx), so their 4xx may change the audit trail.
RECORDS_REFUSALS = {
    "console.sign_in": "a failed staff sign-in is audited (STAFF_SIGN_IN_FAILED)",
    "console.sign_in_verify": "a wrong staff code is audited",
    "site.sign_in": "a failed sign-in is audited (USER_SIGN_IN_FAILED)",
    "site.mfa_verify": "a wrong code is audited (MFA_FAILED)",
}
# Tables whose rows move on every request (last seen); only their row count is compared.
TOUCHED_ON_EVERY_REQUEST = {"staff_sessions", "user_sessions", "devices"}

# ---- hostile values ------------------------------------------------------------------------

SPECIAL = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "\ufffd",
    "İ",
    "ΟΔΥΣ@example.gr",
    "İnci@example.com",
    "0",
    "-1",
    "1.5",
    "1e309",
    "NaN",
    "Infinity",
    "true",
    "null",
    "[]",
    "{}",
    str(2**31 - 1),
    str(2**31),
    str(2**63),
    str(2**64),
    "9" * 400,
    "9999-12-31",
    "0001-01-01",
    "10000-01-01",
    "2026-02-30",
    "0000-00-00",
    "9999-12-31T23:59:59-23:59",
    "yes",
    "all",
    "some",
    "on",
    "-",
    "--email",
    "-last_sign_in",
    "%",
    "_",
    "\\",
    "'; DROP TABLE users; --",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "//evil.example/",
    "javascript:alert(1)",
    "\r\nSet-Cookie: x=1",
    "a" * 321,
    "x" * 5_000,
]
# The explicit examples give each field of every page one of these, in rotation.
HARD = [
    "9" * 400,
    "9999-12-31",
    "İnci@example.com",
    "\ud800",
    "x" * 5_000,
    "-1",
    str(2**31),
    "yes",
    "",
    "ΟΔΥΣ@example.gr",
    "1e309",
    "0001-01-01",
    "-last_sign_in",
    base64.urlsafe_b64encode(b'["a\\u0000", true]').decode(),  # a tampered cursor
    "n." + base64.urlsafe_b64encode(b"[true]").decode(),
]
RAW_BYTES = [b"%", b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\x80abc", b"a\x00"]


def cursor_of(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(SPECIAL[:12]),
    st.builds(lambda t: {"t": t}, st.sampled_from(["2026-01-01T00:00:00+00:00", "9999-12-31"])),
)
cursors = st.one_of(
    st.builds(cursor_of, st.lists(json_scalars, max_size=3)),
    st.builds(
        lambda prefix, c: f"{prefix}.{c}",
        st.sampled_from(["n", "d", "x"]),
        st.builds(cursor_of, st.lists(json_scalars, max_size=3)),
    ),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(1, 3000)).map(
        lambda s: base64.urlsafe_b64encode(s.encode()).decode()
    ),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.", max_size=40
    ),
)
texts = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),  # surrogates too
    st.sampled_from(SPECIAL),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.integers(min_value=1, max_value=70_000).map(lambda n: "A" * n),
    cursors,
)


@dataclass
class Vocabulary:
    """What the pages themselves offer: field names, and values their options and links carry."""

    names: set[str] = field(default_factory=set)
    values: set[str] = field(default_factory=set)

    def read(self, html: str) -> None:
        self.names.update(re.findall(r'\bname="([^"]{1,40})"', html))
        self.values.update(v for v in re.findall(r'\bvalue="([^"]{0,60})"', html) if "{" not in v)
        for query in re.findall(r'href="[^"?]*\?([^"#]+)"', html):
            for pair in query.replace("&amp;", "&").split("&"):
                key, _, value = pair.partition("=")
                if key and len(key) <= 40:
                    self.names.add(key)
                    self.values.add(value[:60])

    def pairs(self):
        """A strategy for a list of (name, value) pairs, each side str or raw bytes."""
        names = st.one_of(
            st.sampled_from(sorted(self.names) or ["q"]),
            st.text(max_size=12),
            st.sampled_from(["\x00", "a[]", "ids", "next", "after", "before", "sort", "to"]),
        )
        values = st.one_of(
            texts,
            st.sampled_from(sorted(self.values) or [""]),
            st.sampled_from(RAW_BYTES),
            st.binary(max_size=12),
        )
        pair = st.tuples(names, values)
        repeated = st.builds(
            lambda name, value, n: [(name, value)] * n, names, values, st.integers(2, 300)
        )
        return st.one_of(
            st.lists(pair, max_size=8),
            st.builds(lambda a, b: a + b, st.lists(pair, max_size=4), repeated),
        )


def encode(pairs) -> str:
    """Pairs as a percent-encoded query string or form body, bytes passed through untouched
    (so non-UTF-8 and lone surrogates reach the server as an attacker would send them)."""

    def one(part) -> str:
        if isinstance(part, bytes):
            return quote_from_bytes(part, safe="")
        return quote_from_bytes(part.encode("utf-8", "surrogatepass"), safe="")

    return "&".join(f"{one(k)}={one(v)}" for k, v in pairs)


# ---- the stored state ----------------------------------------------------------------------


class Snapshot:
    """Row counts, audit seqs and row digests of the platform schema and a tenant's schema,
    read as the owner role outside the app's transactions."""

    def __init__(self, url: str, schemas: list[str]):
        self.url, self.schemas, self.conn = url, schemas, None
        with psycopg.connect(url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE' "
                "ORDER BY 1, 2",
                (schemas,),
            ).fetchall()
        parts = []
        for schema, table in tables:
            name = f'"{schema}"."{table}"'
            if table == "audit_entries":
                digest = "max(t.seq)::text"
            elif table in TOUCHED_ON_EVERY_REQUEST or table == "alembic_version":
                digest = "''"
            else:
                digest = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            parts.append(f"SELECT '{schema}.{table}', count(*), {digest} FROM {name} t")
        self.sql = " UNION ALL ".join(parts)

    def take(self) -> dict[str, tuple]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, autocommit=True)
        return {name: (count, digest) for name, count, digest in self.conn.execute(self.sql)}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def changed(before: dict, after: dict) -> list[str]:
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


# ---- routes --------------------------------------------------------------------------------

INT_PATHS = [2**31 - 1, 2**31, 2**63, 10**30]
STR_PATHS = ["x" * 300, "İ", "%C0%80", "%FF", "..", "a b", "%E2%80%AE"]


@dataclass
class Route:
    endpoint: str
    rule: str
    methods: list[str]
    arguments: dict[str, str]  # name -> converter


def routes_of(app) -> list[Route]:
    found = []
    for rule in app.url_map.iter_rules():
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        arguments = {name: type(conv).__name__ for name, conv in rule._converters.items()}
        found.append(Route(rule.endpoint, rule.rule, methods, arguments))
    return sorted(found, key=lambda r: (r.rule, r.endpoint))


def path_strategy(route: Route, known: dict[str, str]):
    """Paths for `route`, its arguments filled with a real object's value or an id or text no
    object can have, and the path to the real object. None when an argument has no value known
    here (then the route must be excluded, or a value added to `known`)."""
    choices = {}
    for name, converter in route.arguments.items():
        if name not in known:
            return None
        hostile = INT_PATHS if converter == "IntegerConverter" else STR_PATHS
        choices[name] = st.sampled_from([known[name], known[name], *hostile])

    def build(values: dict) -> str:
        path = route.rule
        for name, value in values.items():
            text = str(value)
            text = text if text.startswith("%") else quote(text, safe="")
            path = re.sub(rf"<(?:[a-z]+:)?{name}>", text, path)
        return path

    real = build({name: known[name] for name in route.arguments})
    return st.fixed_dictionaries(choices).map(build), real


@dataclass
class Fuzzing:
    client: object
    host: str
    snapshot: Snapshot
    vocabulary: Vocabulary
    signed_in: object  # () -> None: sign in again if a request signed the client out
    failures: list[str] = field(default_factory=list)

    def run(self, route: Route, known: dict[str, str]) -> None:
        found = path_strategy(route, known)
        assert found is not None, f"{route.rule}: no value for its path arguments"
        paths, real = found
        for method in route.methods:
            self._fuzz(route, method, paths, real)

    def explicit(self, rotation: int) -> list[tuple[str, str]]:
        """Every field name the pages use, each with a hostile value (rotated per example)."""
        names = sorted(self.vocabulary.names)
        return [(n, HARD[(i + rotation) % len(HARD)]) for i, n in enumerate(names)]

    def _fuzz(self, route: Route, method: str, paths, real: str) -> None:
        post = method == "POST"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(
            path=paths,
            query=self.vocabulary.pairs(),
            form=self.vocabulary.pairs() if method == "POST" else st.just([]),
            htmx=st.booleans(),
        )
        @example(
            path=real, query=self.explicit(0), form=self.explicit(1) if post else [], htmx=False
        )
        @example(
            path=real, query=self.explicit(2), form=self.explicit(3) if post else [], htmx=True
        )
        @example(
            path=real, query=self.explicit(4), form=self.explicit(5) if post else [], htmx=False
        )
        def probe(path, query, form, htmx):
            headers = {"Host": self.host}
            if htmx:
                headers["HX-Request"] = "true"
            before = self.snapshot.take()
            response = self.client.open(
                path,
                method=method,
                query_string=encode(query),
                data=encode(form).encode("ascii") if method == "POST" else None,
                content_type="application/x-www-form-urlencoded" if method == "POST" else None,
                headers=headers,
                environ_base={"REMOTE_ADDR": FUZZ_ADDR},
            )
            response.get_data()  # streamed bodies (CSV) run to the end
            status = response.status_code
            described = f"{method} {path}?{encode(query)[:300]} form={encode(form)[:300]!r}"
            assert status < 500, f"{status} for {described}"
            if status >= 400 and route.endpoint not in RECORDS_REFUSALS:
                moved = changed(before, self.snapshot.take())
                assert not moved, f"{status} refusal changed {moved} for {described}"
            if method == "GET" and route.endpoint not in RECORDS_REFUSALS:
                moved = changed(before, self.snapshot.take())
                assert not moved, f"GET changed {moved} for {described}"

        try:
            probe()
        except Exception as error:  # noqa: BLE001 — every route is tried; all failures reported
            self.failures.append(f"{route.endpoint} {method}: {str(error)[:800]}")
        self.signed_in()


def fuzz_all(fuzzing: Fuzzing, app, known: dict[str, str]) -> None:
    routes = [r for r in routes_of(app) if r.endpoint not in EXCLUDED]
    for route in routes:  # GET pages first, so their field names reach the POSTs' vocabulary
        if "GET" in route.methods and not route.arguments:
            response = fuzzing.client.get(route.rule, headers={"Host": fuzzing.host})
            fuzzing.vocabulary.read(response.get_data(as_text=True))
    try:
        for route in routes:
            fuzzing.run(route, known)
    finally:
        fuzzing.snapshot.close()
    assert not fuzzing.failures, (
        f"{len(fuzzing.failures)} routes failed: "
        + ", ".join(f.split(":", 1)[0] for f in fuzzing.failures)
        + "\n\n"
        + "\n\n".join(fuzzing.failures)
    )


# ---- the tests -----------------------------------------------------------------------------


def all_routes(app) -> list[tuple[str, Route]]:
    site = app.extensions["portal.tenant_site"]
    return [("console", r) for r in routes_of(app)] + [("site", r) for r in routes_of(site)]


CONSOLE_PATH_ARGS = {"staff_id", "slug", "message_id", "session_id", "queue", "job_id"}
SITE_PATH_ARGS = {"user_id", "session_id", "device_id", "key", "token"}


def test_every_route_is_fuzzed_or_excluded_with_a_reason(app):
    """A route added later is fuzzed if this file can fill its path; otherwise it must be
    excluded explicitly, with a reason."""
    unfillable = []
    for site, route in all_routes(app):
        known = CONSOLE_PATH_ARGS if site == "console" else SITE_PATH_ARGS
        if route.endpoint in EXCLUDED:
            assert EXCLUDED[route.endpoint].strip(), route.endpoint
            continue
        missing = set(route.arguments) - known
        if missing:
            unfillable.append(f"{site} {route.rule} ({route.endpoint}): {sorted(missing)}")
    assert not unfillable, (
        "Routes neither fuzzed nor excluded; give their path arguments a value in "
        "tests/test_property_inputs.py or add them to EXCLUDED with a reason:\n"
        + "\n".join(unfillable)
    )
    stale = set(EXCLUDED) - {route.endpoint for _site, route in all_routes(app)}
    assert not stale, f"EXCLUDED names routes that no longer exist: {sorted(stale)}"


@pytest.fixture
def snapshot_url(urls):
    return urls.get("database_owner_url") or urls["database_url"]


def test_the_snapshot_sees_rows_added_changed_and_audited(tenant, site_user, snapshot_url):
    snapshot = Snapshot(snapshot_url, ["platform", tenant_schema(tenant.slug)])
    try:
        before = snapshot.take()
        user = site_user(tenant)
        added = snapshot.take()
        assert {
            f"{tenant_schema(tenant.slug)}.users",
            f"{tenant_schema(tenant.slug)}.audit_entries",
        } <= set(changed(before, added))
        with db.tenant_scope(tenant) as session:
            session.execute(update(User).where(User.id == user.id).values(name="Renamed"))
        assert changed(added, snapshot.take()) == [f"{tenant_schema(tenant.slug)}.users"]
    finally:
        snapshot.close()


def test_every_console_route_survives_arbitrary_input(
    app, client, sign_in_as, make_staff, make_tenant, snapshot_url
):
    target_tenant = make_tenant()
    target_staff = make_staff("support")
    me = sign_in_as()
    with db.platform_scope() as session:
        message_id = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()))
    known = {
        "staff_id": target_staff.id,
        "slug": target_tenant.slug,
        "message_id": message_id or 1,
        "session_id": 2**31 - 1,  # another's session: 404, never this client's own
        "queue": "default",
        "job_id": "no-such-job",
    }
    with db.platform_scope() as session:
        slugs_before = set(session.scalars(select(Tenant.slug)))
        staff_before = set(session.scalars(select(StaffUser.id)))

    def signed_in():
        nonlocal me
        response = client.get("/tenants", headers={"Host": CONSOLE})
        if response.status_code != 200:
            me = sign_in_as()

    fuzzing = Fuzzing(
        client=client,
        host=CONSOLE,
        snapshot=Snapshot(snapshot_url, ["platform"]),
        vocabulary=Vocabulary(),
        signed_in=signed_in,
    )
    try:
        fuzz_all(fuzzing, app, known)
    finally:
        cleanup_console(slugs_before, staff_before)


def cleanup_console(slugs_before: set[str], staff_before: set[int]) -> None:
    """Tenants and staff the fuzzing happened to create (random input can be valid)."""
    with db.platform_scope() as session:
        created = set(session.scalars(select(Tenant.slug))) - slugs_before
        session.execute(delete(StaffUser).where(StaffUser.id.not_in(staff_before or {0})))
    for slug in created:
        purge(slug)


def test_every_tenant_site_route_survives_arbitrary_input(
    app, client, tenant, site_user, admin, snapshot_url
):
    target = site_user(tenant, name="Target Person")
    other = app.test_client()
    assert (
        other.post(
            "/sign-in",
            data={"email": target.email, "password": PASSWORD},
            headers=host(tenant),
            environ_base={"REMOTE_ADDR": "198.51.100.78"},
        ).status_code
        == 303
    )
    with db.tenant_scope(tenant) as session:
        target_session = session.scalar(
            select(UserSession.id).where(UserSession.user_id == target.id)
        )
        target_device = session.scalar(select(Device.id).where(Device.user_id == target.id))
        role = roles.create_role(
            session, name="Fuzzed role", permissions=["accounts:user:view"], actor=SYSTEM
        )
        role_key = role.key
    known = {
        "user_id": target.id,
        "session_id": target_session,
        "device_id": target_device,
        "key": role_key,
        "token": "not-a-token",
    }

    def signed_in():
        response = client.get("/users", headers=host(tenant))
        if response.status_code != 200:
            client.post(
                "/sign-in", data={"email": admin.email, "password": PASSWORD}, headers=host(tenant)
            )

    fuzzing = Fuzzing(
        client=client,
        host=f"{tenant.slug}.localhost",
        snapshot=Snapshot(snapshot_url, ["platform", tenant_schema(tenant.slug)]),
        vocabulary=Vocabulary(),
        signed_in=signed_in,
    )
    fuzz_all(fuzzing, app.extensions["portal.tenant_site"], known)
