"""What several console page modules share: the tenants the signed-in member may see, a
tenant looked up within them, safe redirects and the list page size."""

from __future__ import annotations

from flask import abort, current_app, g, url_for
from flask_login import current_user
from sqlalchemy import select

from portal.staff import scope
from portal.tenancy.models import Tenant
from portal.web import local_path, request_session

PAGE_SIZE = 25


def settings():
    return current_app.config["PORTAL"]


def visible_tenant_ids() -> frozenset[int] | None:
    """Ids of the tenants the signed-in member may see (None: every tenant), read once per
    request. Every read of tenants, or of audit entries about them, goes through this."""
    if "visible_tenant_ids" not in g:
        g.visible_tenant_ids = scope.visible_tenant_ids(request_session(), current_user.staff)
    return g.visible_tenant_ids


def visible(query, where):
    """`query` restricted by `where`, a scope filter that is None when nothing is hidden."""
    return query if where is None else query.where(where)


def safe_next(target: str | None) -> str:
    return local_path(target, url_for("console.overview"))


def access_tenant(slug: str, *, lock: bool = False) -> Tenant:
    """The tenant, or 404 when it does not exist or is outside what the member may see (the
    same answer, so a restricted member learns nothing about other tenants)."""
    query = visible(
        select(Tenant).where(Tenant.slug == slug),
        scope.visible_tenant_filter(visible_tenant_ids()),
    )
    if lock:
        query = query.with_for_update()
    tenant = request_session().scalars(query).first()
    if tenant is None:
        abort(404)
    return tenant
