"""Demo data for `portal dev`: a platform admin and three tenants full of people, created once.

Idempotent, so `portal dev` can run it on every start: staff are created when there are none,
tenants when their slug is free, and each tenant's people when their email is free (a second run
creates nothing and costs a few queries). Everything goes through the services, so the audit
trail reads like real use, except the sign-in history, devices, sessions and MFA enrolments,
which are written directly with times spread over the last 60 days. The people are the same on
every machine: names, statuses and roles come from a random generator seeded with the slug.

Argon2 costs ~60 ms a hash, so only the people one signs in as (admin, compliance officer,
alex) get their own hash; the members share one hash of the same demo password.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import crypto
from portal.accounts.lifecycle import create_user, delete_user, suspend_user
from portal.accounts.models import BackupCode, Device, Role, User, UserSession, UserStatus
from portal.accounts.roles import create_role
from portal.auth import mfa
from portal.auth.services import TOTP_PURPOSE, describe_agent
from portal.compliance import consent
from portal.compliance.audit import Actor, AuditAction, record
from portal.config import Settings
from portal.db import db
from portal.passwords import hash_password
from portal.permissions import BuiltinRole, Permission
from portal.sessions import token_hash
from portal.staff.members import create_staff
from portal.staff.mfa import enrol_staff_mfa
from portal.staff.models import StaffUser
from portal.tenancy.models import Tenant
from portal.tenancy.services import create_tenant, update_limits

DEMO_PASSWORD = "demo-password-2026"
DEMO_ADMIN = "admin@msp.example"
# The demo staff admin's TOTP secret, so a newcomer can sign in to the console at once (staff
# MFA is required): `portal dev` prints it and its otpauth:// URI, in development only. A
# development value, public like the demo password; never use it for a real account.
DEMO_STAFF_TOTP_SECRET = "DEMOMSPPORTALDEVSECRETONLY234567"
# (slug, name, max users): room for the 53 people below, initech close to its limit.
DEMO_TENANTS = (
    ("acme", "Acme Corporation", 250),
    ("globex", "Globex", 100),
    ("initech", "Initech", 60),
)
DEMO_MEMBERS = 50
HISTORY_DAYS = 60
HELPDESK_ROLE = "Helpdesk"
HELPDESK_KEY = "helpdesk"
# (key, title, description, required, lawful basis, share of people who agree)
DEMO_PURPOSES = (
    (
        "terms",
        "Terms of service",
        "You agree to use the portal under the organisation's terms of service.",
        True,
        "contract",
        1.0,
    ),
    (
        "product_analytics",
        "Product analytics",
        "We record which pages and features you use, to see what to improve. "
        "Nothing is shared outside the organisation.",
        False,
        "consent",
        0.7,
    ),
    (
        "product_news",
        "Product news by email",
        "About one email a month on new features and planned maintenance.",
        False,
        "consent",
        0.3,
    ),
)

FIRST_NAMES = (
    "Aisha", "Akira", "Alejandro", "Amara", "Anders", "Ana", "Arjun", "Beatriz", "Bilal",
    "Camille", "Chen", "Chidi", "Daniela", "Dmitri", "Elif", "Emeka", "Emma", "Fatima",
    "Felix", "Freya", "Gabriel", "Hana", "Hiroshi", "Ines", "Ingrid", "Isaac", "Jamal",
    "Javier", "Jia", "Kavya", "Kemal", "Lars", "Layla", "Leon", "Lucia", "Mateo", "Maya",
    "Mehmet", "Mei", "Nadia", "Niamh", "Nikhil", "Noah", "Olga", "Omar", "Priya", "Rafael",
    "Rosa", "Sakura", "Santiago", "Sofia", "Tariq", "Thandiwe", "Tomasz", "Valentina",
    "Wei", "Yara", "Yusuf", "Zanele", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Abebe", "Adeyemi", "Andersson", "Bakker", "Banerjee", "Becker", "Carvalho", "Castillo",
    "Chowdhury", "Costa", "Dubois", "Eriksen", "Fernandes", "Fischer", "Garcia", "Haddad",
    "Hansen", "Hernandez", "Ito", "Horvat", "Jansen", "Kapoor", "Kim", "Kowalski", "Kumar",
    "Larsen", "Li", "Lindqvist", "Lopez", "Mahlangu", "Martin", "Mensah", "Moreau", "Murphy",
    "Nakamura", "Nguyen", "Novak", "Okafor", "Oliveira", "O'Brien", "Park", "Patel", "Popescu",
    "Rahman", "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Suzuki", "Tanaka", "Torres",
    "Van Dijk", "Walsh", "Wang", "Yilmaz", "Zhang",
)  # fmt: skip
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36 Edg/124.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
# Documentation address ranges (RFC 5737): realistic-looking, never anyone's real address.
ADDRESS_PREFIXES = ("192.0.2.", "198.51.100.", "203.0.113.")


@dataclass(frozen=True)
class Person:
    """One demo user as planned; `history` is False for people who never signed in."""

    email: str
    name: str
    status: str
    roles: tuple[str, ...] = ()
    mfa: bool = False
    history: bool = True
    own_password: bool = False  # gets its own Argon2 hash (someone to sign in as)


def demo_people(slug: str, members: int = DEMO_MEMBERS) -> list[Person]:
    """The tenant's people: admin, compliance officer, alex and `members` generated members.

    Deterministic per slug. Of the members about 10% are invited, 6% suspended, up to 2
    deleted, the rest active; about 8% hold the Helpdesk role and one more is a tenant admin;
    about 40% have MFA (never the invited, who have not set a password)."""
    rng = random.Random(f"portal-demo:{slug}")
    domain = f"{slug}.example"
    people = [
        Person(
            f"admin@{domain}",
            "Jordan Ellis",
            UserStatus.ACTIVE,
            (BuiltinRole.TENANT_ADMIN,),
            own_password=True,
        ),
        Person(
            f"compliance@{domain}",
            "Priya Raman",
            UserStatus.ACTIVE,
            (BuiltinRole.COMPLIANCE_OFFICER,),
            own_password=True,
        ),
        Person(f"alex@{domain}", "Alex Morgan", UserStatus.ACTIVE, own_password=True),
    ]
    invited = round(members * 0.10)
    suspended = round(members * 0.06)
    deleted = min(2, round(members * 0.04))
    statuses = (
        [UserStatus.INVITED] * invited
        + [UserStatus.SUSPENDED] * suspended
        + [UserStatus.DELETED] * deleted
    )
    statuses += [UserStatus.ACTIVE] * (members - len(statuses))
    rng.shuffle(statuses)
    enrolled = [i for i, s in enumerate(statuses) if s != UserStatus.INVITED]
    with_mfa = set(rng.sample(enrolled, min(len(enrolled), round(members * 0.4))))
    active = [i for i, s in enumerate(statuses) if s == UserStatus.ACTIVE]
    chosen = rng.sample(active, min(len(active), round(members * 0.08) + 1))
    extra_roles = {i: (HELPDESK_KEY,) for i in chosen[1:]}
    if chosen and members >= 20:
        extra_roles[chosen[0]] = (BuiltinRole.TENANT_ADMIN,)
    taken: set[str] = {p.email for p in people}
    for i, status in enumerate(statuses):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
        email, n = f"{local}@{domain}", 1
        while email in taken:
            n += 1
            email = f"{local}{n}@{domain}"
        taken.add(email)
        people.append(
            Person(
                email,
                f"{first} {last}",
                status,
                extra_roles.get(i, ()),
                mfa=i in with_mfa,
                # Enrolling MFA takes a sign-in, so only those without it may never have.
                history=status != UserStatus.INVITED and (i in with_mfa or rng.random() < 0.9),
            )
        )
    return people


@cache
def _member_password_hash() -> str:
    return hash_password(DEMO_PASSWORD)


def _helpdesk_role(session: Session, actor: Actor) -> None:
    if session.scalar(select(Role.id).where(Role.key == HELPDESK_KEY)) is None:
        create_role(
            session,
            name=HELPDESK_ROLE,
            description="First-line support: looks people up and signs out lost devices.",
            permissions=[Permission.USERS_VIEW, Permission.SESSIONS_REVOKE],
            actor=actor,
        )


def seed_tenant_people(
    session: Session, tenant, *, members: int = DEMO_MEMBERS, actor: Actor | None = None
) -> int:
    """Create the tenant's demo people that do not exist yet (see `demo_people`) with their
    roles, MFA, sign-in history, devices and sessions; returns how many were created.

    Runs in the caller's tenant scope (`db.tenant_scope(tenant)`)."""
    actor = actor or Actor.system("demo-seed")
    people = demo_people(tenant.slug, members)
    existing = set(
        session.scalars(
            select(func.lower(User.email)).where(
                func.lower(User.email).in_([p.email for p in people])
            )
        )
    )
    planned = [p for p in people if p.email not in existing]
    if any(p.roles == (HELPDESK_KEY,) for p in planned):
        _helpdesk_role(session, actor)
    if not planned:
        return 0
    rng = random.Random(f"portal-demo-history:{tenant.slug}")
    now = datetime.now(UTC)
    created: list[tuple[Person, User]] = []
    for person in planned:
        signs_in = person.status != UserStatus.INVITED
        user = create_user(
            session,
            email=person.email,
            name=person.name,
            password=DEMO_PASSWORD if person.own_password else None,
            status=UserStatus.ACTIVE if signs_in else UserStatus.INVITED,
            role_keys=person.roles,
            actor=actor,
        )
        if signs_in:
            user.created_at = now - timedelta(days=rng.uniform(HISTORY_DAYS, 720))
            if not person.own_password:
                user.password_hash = _member_password_hash()
                user.password_changed_at = user.created_at
        else:
            user.created_at = now - timedelta(days=rng.uniform(0, 10))
        if person.mfa:
            _enrol_mfa(session, user, rng, now)
        if person.history:
            _sign_in_history(session, user, person, rng, now)
        created.append((person, user))
    session.flush()
    answering = [user for person, user in created if person.status != UserStatus.INVITED]
    _seed_consents(session, tenant, answering, actor)
    # Status changes last, through the services: suspending ends the sessions made above.
    for person, user in created:
        if person.status == UserStatus.SUSPENDED:
            reason = rng.choice(("left the company", "security review", "extended leave"))
            suspend_user(session, user, actor=actor, reason=reason)
        elif person.status == UserStatus.DELETED:
            delete_user(session, user, actor=actor)
    return len(created)


def _seed_consents(session: Session, tenant, users: list[User], actor: Actor) -> None:
    """The demo purposes (when the tenant has none) and an answer from each of `users` to
    each, so nobody is stopped at the consent page and the Consent page has rates to show."""
    if not consent.purposes(session):
        for key, title, description, required, basis, _ in DEMO_PURPOSES:
            consent.define_purpose(
                session,
                key=key,
                title=title,
                description=description,
                required=required,
                lawful_basis=basis,
                actor=actor,
            )
    rng = random.Random(f"portal-demo-consent:{tenant.slug}")
    in_use = {p.key for p in consent.purposes(session, include_archived=False)}
    for key, *_, share in DEMO_PURPOSES:
        if key in in_use:
            agree = {user.id for user in users if rng.random() < share}
            withdraw = [user.id for user in users if user.id not in agree]
            consent.import_answers(
                session, key, granted=sorted(agree), withdrawn=withdraw, actor=actor
            )


def _user_actor(user: User, addr: str | None) -> Actor:
    return Actor(type="user", id=str(user.id), label=user.email, client_addr=addr)


def _enrol_mfa(session: Session, user: User, rng: random.Random, now: datetime) -> None:
    """MFA on, as `confirm_mfa_enrolment` leaves it: a sealed secret and 10 backup codes."""
    user.mfa_secret = crypto.seal(mfa.new_secret(), purpose=TOTP_PURPOSE)
    enabled_at = user.created_at + (now - user.created_at) * rng.uniform(0.1, 0.9)
    user.mfa_enabled_at = enabled_at
    used = rng.choice((0, 0, 0, 1, 2))
    session.add_all(
        BackupCode(
            user_id=user.id,
            code_hash=mfa.backup_code_hash(code),
            created_at=enabled_at,
            used_at=enabled_at + timedelta(days=i + 1) if i < used else None,
        )
        for i, code in enumerate(mfa.generate_backup_codes())
    )
    record(session, AuditAction.MFA_ENROL, actor=_user_actor(user, None), target=("user", user.id))


def _sign_in_history(
    session: Session, user: User, person: Person, rng: random.Random, now: datetime
) -> None:
    """Last sign-in within HISTORY_DAYS, 1–3 devices, a session or two for recent sign-ins,
    and audit entries of the latest sign-ins."""
    addrs = [f"{rng.choice(ADDRESS_PREFIXES)}{rng.randint(2, 254)}" for _ in range(3)]
    last = now - timedelta(days=rng.uniform(0, HISTORY_DAYS))
    if person.own_password:
        last = now - timedelta(hours=rng.uniform(1, 48))
    user.last_sign_in_at = last
    user.last_sign_in_addr = addrs[0]
    user.sign_in_count = rng.randint(3, 300)
    devices = []
    for n in range(rng.choice((1, 1, 2, 3))):
        agent = rng.choice(USER_AGENTS)
        seen = last - timedelta(days=n * rng.uniform(1, 20))
        devices.append(
            Device(
                user_id=user.id,
                token_hash=token_hash(secrets.token_urlsafe(32)),
                label=describe_agent(agent),
                user_agent=agent,
                first_seen_at=max(user.created_at, seen - timedelta(days=rng.uniform(5, 90))),
                last_seen_at=seen,
                last_addr=addrs[n],
            )
        )
    session.add_all(devices)
    session.flush()
    method = "totp" if person.mfa else "password"
    session_ids: list[int | None] = [None] * len(devices)
    if now - last < timedelta(days=3):
        for n, device in enumerate(devices[:2]):
            row = UserSession(
                token_hash=token_hash(secrets.token_urlsafe(32)),
                user_id=user.id,
                device_id=device.id,
                created_at=device.last_seen_at,
                last_seen_at=min(now, device.last_seen_at + timedelta(minutes=rng.randint(1, 90))),
                client_addr=device.last_addr,
                user_agent=device.user_agent,
                method=method,
            )
            session.add(row)
            session.flush()
            session_ids[n] = row.id
    for n, device in reversed(list(enumerate(devices))):
        record(
            session,
            AuditAction.USER_SIGN_IN,
            actor=_user_actor(user, device.last_addr),
            target=("user", user.id),
            detail={
                "session": session_ids[n],
                "method": method,
                "device": device.id,
                "new_device": False,
            },
        )


def _ensure_room(session: Session, tenant: Tenant, max_users: int, actor: Actor) -> None:
    """Raise a demo tenant's user limit made by an older seed (10 users) to today's."""
    if tenant.max_users is not None and tenant.max_users < max_users:
        update_limits(session, tenant, actor=actor, max_users=max_users)


def seed_demo(settings: Settings) -> dict:
    """Create the demo staff, tenants and people that are missing; return what to print."""
    actor = Actor.system("demo-seed")
    with db.platform_scope() as session:
        if not session.scalar(select(func.count()).select_from(StaffUser)):
            create_staff(
                session,
                email=DEMO_ADMIN,
                name="Demo Admin",
                role="platform_admin",
                password=DEMO_PASSWORD,
                actor=actor,
            )
            create_staff(
                session,
                email="support@msp.example",
                name="Demo Support",
                role="support",
                password=DEMO_PASSWORD,
                actor=actor,
            )
        admin = session.scalars(
            select(StaffUser).where(func.lower(StaffUser.email) == DEMO_ADMIN).with_for_update()
        ).first()
        if admin is not None and not admin.mfa_enabled and not admin.mfa_secret:
            enrol_staff_mfa(session, admin, DEMO_STAFF_TOTP_SECRET, actor=actor)
    for slug, name, max_users in DEMO_TENANTS:
        with db.platform_scope() as session:
            tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
            if tenant is None:
                tenant = create_tenant(
                    session,
                    slug=slug,
                    name=name,
                    max_users=max_users,
                    actor=actor,
                    base_domain=settings.base_domain,
                )
            elif not tenant.is_active:
                continue  # suspended or deleted by hand: leave it be
            else:
                _ensure_room(session, tenant, max_users, actor)
        with db.tenant_scope(tenant) as session:
            seed_tenant_people(session, tenant, actor=actor)
    return {"admin": DEMO_ADMIN, "tenants": [slug for slug, _, _ in DEMO_TENANTS]}


def staff_mfa_lines() -> list[str]:
    """What `portal dev` prints (development only) for the demo admin's second step."""
    uri = mfa.provisioning_uri(DEMO_STAFF_TOTP_SECRET, account=DEMO_ADMIN, issuer="MSP Portal")
    return [
        f"  Staff TOTP secret {mfa.format_secret(DEMO_STAFF_TOTP_SECRET)}  (development only)",
        f"  Staff TOTP URI    {uri}",
        '  Staff TOTP code   .venv/bin/python -c "import pyotp; '
        f"print(pyotp.TOTP('{DEMO_STAFF_TOTP_SECRET}').now())\"",
    ]


def sign_in_lines(slugs, *, base_domain: str, port: int) -> list[str]:
    """What `portal dev` prints per tenant: where to sign in, and as whom."""
    accounts = (
        ("admin", "tenant admin"),
        ("compliance", "compliance officer"),
        ("alex", "member"),
    )
    rows = [
        (f"Tenant {slug}" if n == 0 else "", f"http://{slug}.{base_domain}:{port}/sign-in",
         f"{local}@{slug}.example / {DEMO_PASSWORD}", role)
        for slug in slugs
        for n, (local, role) in enumerate(accounts)
    ]  # fmt: skip
    url_width = max((len(row[1]) for row in rows), default=0)
    account_width = max((len(row[2]) for row in rows), default=0)
    return [
        f"  {label:<17} {url:<{url_width}}  {account:<{account_width}}  ({role})"
        for label, url, account, role in rows
    ]
