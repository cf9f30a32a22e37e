"""The tenant site's home page: for people who can see users, the organisation at a glance."""

from __future__ import annotations

from flask_login import current_user, login_required
from sqlalchemy import func, select

from portal.accounts import settings as account_settings
from portal.accounts.models import User, UserStatus
from portal.compliance.models import TenantAuditEntry
from portal.permissions import Permission
from portal.site.auth import tenant_settings
from portal.site.blueprint import bp
from portal.web import render_page, request_session


@bp.get("/")
@login_required
def home():
    return render_page("site/home.html", **overview())


def overview() -> dict:
    """What the home page shows: for people who can see users, the organisation at a glance;
    for everyone else nothing needs fetching."""
    if not current_user.can(Permission.USERS_VIEW):
        return {"admin": False}
    session = request_session()
    counts = {status: 0 for status in UserStatus}
    with_mfa = 0
    for status, n, mfa in session.execute(
        select(User.status, func.count(), func.count(User.mfa_enabled_at)).group_by(User.status)
    ):
        counts[status] = n
        if status == UserStatus.ACTIVE:
            with_mfa = mfa
    recent = session.execute(
        select(User.id, User.email, User.name, User.last_sign_in_at, User.last_sign_in_addr)
        .where(User.last_sign_in_at.is_not(None), User.status != UserStatus.DELETED)
        .order_by(User.last_sign_in_at.desc())
        .limit(6)
    ).all()
    entries = []
    if current_user.can(Permission.AUDIT_VIEW):
        entries = session.scalars(
            select(TenantAuditEntry).order_by(TenantAuditEntry.seq.desc()).limit(8)
        ).all()
    settings = tenant_settings()  # already read for this request's session timeouts
    active = counts[UserStatus.ACTIVE]
    return {
        "admin": True,
        "counts": counts,
        "total": sum(n for status, n in counts.items() if status != UserStatus.DELETED),
        "with_mfa": with_mfa,
        "mfa_percent": round(100 * with_mfa / active) if active else 0,
        "recent": recent,
        "entries": entries,
        "security": settings,
        "mfa_deadline": account_settings.mfa_deadline(settings),
    }
