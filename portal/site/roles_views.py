"""Tenant admin pages: roles (built-in ones read-only; custom ones created, edited, deleted)."""

from __future__ import annotations

from flask import abort, request, url_for
from flask_login import current_user
from sqlalchemy import select

from portal.accounts import roles as account_roles
from portal.accounts.forms import (
    RoleForm,
)
from portal.accounts.models import Role
from portal.accounts.validation import AccountError
from portal.forms import ActionForm, attach_error
from portal.permissions import TENANT_PERMISSIONS, Permission, requires
from portal.site.auth import current_actor
from portal.site.blueprint import bp
from portal.web import after_change, render_page, request_session


def permission_rows() -> list[tuple[str, str]]:
    return [(str(p), text) for p, text in TENANT_PERMISSIONS.items()]


@bp.get("/roles")
@requires(Permission.ROLES_VIEW)
def roles():
    return render_page(
        "site/roles.html",
        roles=account_roles.roles(request_session(), with_counts=True),
        permissions=permission_rows(),
    )


@bp.route("/roles/new", methods=["GET", "POST"])
@requires(Permission.ROLES_MANAGE)
def role_new():
    form = RoleForm()
    if form.validate_on_submit():
        try:
            role = account_roles.create_role(
                request_session(),
                name=form.name.data,
                description=form.description.data or "",
                permissions=form.permissions.data or [],
                actor=current_actor(),
            )
        except AccountError as error:
            attach_error(form, error, "name")
        else:
            return after_change(url_for("site.role", key=role.key), f"Role {role.name} created")
    return render_role(None, None, form, status=422 if request.method == "POST" else 200)


def access_role(key: str) -> tuple[account_roles.RoleInfo, Role | None]:
    """The role's description and, for a tenant-defined role, its row; 404 for neither."""
    session = request_session()
    info = next((r for r in account_roles.roles(session, with_counts=True) if r.key == key), None)
    if info is None:
        abort(404)
    row = None
    if not info.builtin:
        row = session.scalars(select(Role).where(Role.key == key).with_for_update()).first()
        if row is None:
            abort(404)
    return info, row


def render_role(info, row, form=None, *, status: int = 200, error: str | None = None):
    """A role's page: read-only for a built-in role, its form for a tenant-defined one (or a
    new one when `info` is None). Permissions the signed-in person lacks are offered disabled,
    and a role they may not change (they hold it, or it has more than they hold) read-only."""
    actor = current_actor()
    held = account_roles.held_permissions(actor)
    if form is None and row is not None:
        form = RoleForm(
            formdata=None,
            name=row.name,
            description=row.description,
            permissions=list(row.permissions),
        )
    return render_page(
        "site/role.html",
        "form",
        form=form,
        role=row,
        info=info,
        permissions=permission_rows(),
        codes={str(p): str(p) for p in TENANT_PERMISSIONS},
        delete_form=ActionForm(formdata=None),
        locked_permissions={str(p) for p in TENANT_PERMISSIONS} - held,
        protected=account_roles.role_change_refusal(request_session(), row, actor=actor)
        if row is not None
        else None,
        error=error,
        status=status,
    )


@bp.route("/roles/<key>", methods=["GET", "POST"])
@requires(Permission.ROLES_VIEW)
def role(key):
    if request.method == "POST" and not current_user.can(Permission.ROLES_MANAGE):
        abort(403)
    info, row = access_role(key)
    if request.method == "GET":
        return render_role(info, row)
    if row is None:
        abort(404)  # built-in roles are defined in code, not editable
    form = RoleForm()
    if form.validate_on_submit():
        try:
            done = account_roles.update_role(
                request_session(),
                row,
                name=form.name.data,
                description=form.description.data or "",
                permissions=form.permissions.data or [],
                actor=current_actor(),
            )
        except AccountError as error:
            attach_error(form, error)
        else:
            toast = f"Role {row.name} saved" if done else "Nothing to change"
            return after_change(url_for("site.role", key=row.key), toast)
    return render_role(info, row, form, status=422)


@bp.post("/roles/<key>/delete")
@requires(Permission.ROLES_MANAGE)
def role_delete(key):
    info, row = access_role(key)
    if row is None:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        account_roles.delete_role(request_session(), row, actor=current_actor())
    except AccountError as error:
        return render_role(info, row, status=422, error=str(error))
    return after_change(url_for("site.roles"), f"Role {info.name} deleted")
