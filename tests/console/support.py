"""What the console page tests share: request headers and the platform audit trail."""

from sqlalchemy import select

from portal.compliance.models import PlatformAuditEntry
from portal.db import db

HOST = {"Host": "localhost"}
HTMX = {"Host": "localhost", "HX-Request": "true"}


def entries(action) -> list[PlatformAuditEntry]:
    """The platform trail's entries of `action`, newest first."""
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry)
            .where(PlatformAuditEntry.action == action)
            .order_by(PlatformAuditEntry.seq.desc())
        ).all()
