"""Console pages for MSP staff accounts: list, create, change role, deactivate, reactivate,
and the tenants a support or compliance member may see."""

from __future__ import annotations

from flask import abort, url_for
from sqlalchemy import func, select
from wtforms.fields.choices import SelectChoice

from portal.accounts.validation import AccountError
from portal.console.auth import current_actor
from portal.console.blueprint import bp
from portal.console.forms import StaffCreateForm, StaffRoleForm, StaffTenantsForm
from portal.forms import ActionForm, attach_error
from portal.permissions import Permission, requires
from portal.staff.members import change_staff_role, create_staff, deactivate_staff, reactivate_staff
from portal.staff.models import StaffSession, StaffTenant, StaffUser
from portal.staff.scope import assigned_tenant_counts, set_staff_tenants
from portal.tenancy.models import Tenant, TenantStatus
from portal.validation import InputError, check_selection_size
from portal.web import after_change, render_page, request_session, wants_fragment

MAX_STAFF_TENANTS = 10_000  # a selection PostgreSQL can bind; beyond it, "All tenants"


def staff_rows():
    sessions = (
        select(StaffSession.staff_id, func.count().label("n"))
        .group_by(StaffSession.staff_id)
        .subquery()
    )
    return (
        request_session()
        .execute(
            select(StaffUser, func.coalesce(sessions.c.n, 0))
            .outerjoin(sessions, sessions.c.staff_id == StaffUser.id)
            .order_by(StaffUser.active.desc(), StaffUser.email)
        )
        .all()
    )


def tenant_choices() -> list[SelectChoice]:
    """Every tenant for the assignment list, by name; plain rows, no ORM."""
    rows = request_session().execute(
        select(Tenant.id, Tenant.name, Tenant.slug, Tenant.status).order_by(
            Tenant.name, Tenant.slug
        )
    )
    return [
        SelectChoice(
            id_, f"{name} ({slug})" + (" — deleted" if status == TenantStatus.DELETED else "")
        )
        for id_, name, slug, status in rows
    ]


def render_staff(
    form=None,
    *,
    status=200,
    error=None,
    block=None,
    assign: StaffUser | None = None,
    assign_form: StaffTenantsForm | None = None,
):
    # An HTMX fragment of one card needs neither the staff list nor the tenant counts.
    full_page = not (block and wants_fragment())
    return render_page(
        "console/staff.html",
        block,
        rows=staff_rows() if full_page else [],
        tenant_counts=assigned_tenant_counts(request_session()) if full_page else {},
        form=form or StaffCreateForm(formdata=None),
        role_form=StaffRoleForm(formdata=None),
        action_form=ActionForm(formdata=None),
        assign=assign,
        assign_form=assign_form,
        error=error,
        status=status,
    )


def access_staff(staff_id: int, *, lock: bool = True) -> StaffUser:
    member = request_session().get(StaffUser, staff_id, with_for_update=lock)
    if member is None:
        abort(404)
    return member


@bp.get("/staff")
@requires(Permission.STAFF_VIEW)
def staff():
    return render_staff()


@bp.post("/staff")
@requires(Permission.STAFF_MANAGE)
def staff_create():
    form = StaffCreateForm()
    if form.validate_on_submit():
        try:
            member = create_staff(
                request_session(),
                email=form.email.data,
                name=form.name.data or "",
                role=form.role.data,
                password=form.password.data,
                actor=current_actor(),
            )
        except AccountError as exc:
            attach_error(form, exc, "email")
        else:
            return after_change(url_for("console.staff"), f"{member.email} can now sign in")
    return render_staff(form, status=422, block="create")


@bp.post("/staff/<int:staff_id>/role")
@requires(Permission.STAFF_MANAGE)
def staff_role(staff_id):
    member = access_staff(staff_id)
    form = StaffRoleForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        change_staff_role(request_session(), member, form.role.data, actor=current_actor())
    except AccountError as exc:
        return render_staff(status=409, error=str(exc))
    return after_change(
        url_for("console.staff"), f"{member.email} is now {member.role.replace('_', ' ')}"
    )


@bp.post("/staff/<int:staff_id>/deactivate")
@requires(Permission.STAFF_MANAGE)
def staff_deactivate(staff_id):
    member = access_staff(staff_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        deactivate_staff(request_session(), member, actor=current_actor())
    except AccountError as exc:
        return render_staff(status=409, error=str(exc))
    return after_change(url_for("console.staff"), f"{member.email} deactivated and signed out")


@bp.post("/staff/<int:staff_id>/reactivate")
@requires(Permission.STAFF_MANAGE)
def staff_reactivate(staff_id):
    member = access_staff(staff_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    reactivate_staff(request_session(), member, actor=current_actor())
    return after_change(url_for("console.staff"), f"{member.email} reactivated")


@bp.get("/staff/<int:staff_id>/tenants")
@requires(Permission.STAFF_MANAGE)
def staff_tenants(staff_id):
    """The Staff page with the member's tenant assignment open."""
    member = access_staff(staff_id, lock=False)
    assigned = request_session().scalars(
        select(StaffTenant.tenant_id).where(StaffTenant.staff_id == member.id)
    )
    form = StaffTenantsForm(
        formdata=None, scope="all" if member.all_tenants else "some", tenant_ids=list(assigned)
    )
    form.tenant_ids.choices = tenant_choices()
    return render_staff(block="assign", assign=member, assign_form=form)


@bp.post("/staff/<int:staff_id>/tenants")
@requires(Permission.STAFF_MANAGE)
def staff_tenants_save(staff_id):
    member = access_staff(staff_id)
    form = StaffTenantsForm()
    form.tenant_ids.choices = tenant_choices()
    if form.validate_on_submit():
        try:
            check_selection_size(
                form.tenant_ids.data, noun="tenant", field="tenant_ids", limit=MAX_STAFF_TENANTS
            )
            changed = set_staff_tenants(
                request_session(),
                member,
                all_tenants=form.scope.data == "all",
                tenant_ids=form.tenant_ids.data or [],
                actor=current_actor(),
            )
        except InputError as exc:  # an AccountError, or too many tenants for one statement
            attach_error(form, exc, "tenant_ids")
        else:
            if not changed:
                toast = f"No change: {member.email} already sees these tenants"
            elif member.all_tenants:
                toast = f"{member.email} now sees every tenant"
            else:
                n = len(set(form.tenant_ids.data))
                toast = f"{member.email} now sees {n} tenant{'' if n == 1 else 's'}"
            return after_change(url_for("console.staff"), toast)
    return render_staff(block="assign", status=422, assign=member, assign_form=form)
