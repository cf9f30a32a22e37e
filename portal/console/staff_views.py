"""Console pages for MSP staff accounts: list, create, change role, deactivate, reactivate."""

from __future__ import annotations

from flask import abort, url_for
from sqlalchemy import func, select

from portal.accounts.services import AccountError
from portal.console import services
from portal.console.auth import current_actor
from portal.console.forms import ActionForm, StaffCreateForm, StaffRoleForm
from portal.console.models import StaffSession, StaffUser
from portal.console.views import bp
from portal.permissions import Permission, requires
from portal.web import render_page, request_session, see_other


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


def render_staff(form=None, *, status=200, error=None):
    return render_page(
        "console/staff.html",
        "create" if status == 422 else None,
        rows=staff_rows(),
        form=form or StaffCreateForm(formdata=None),
        role_form=StaffRoleForm(formdata=None),
        action_form=ActionForm(formdata=None),
        error=error,
        status=status,
    )


def access_staff(staff_id: int) -> StaffUser:
    member = request_session().get(StaffUser, staff_id, with_for_update=True)
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
            member = services.create_staff(
                request_session(),
                email=form.email.data,
                name=form.name.data or "",
                role=form.role.data,
                password=form.password.data,
                actor=current_actor(),
            )
        except AccountError as exc:
            getattr(form, exc.field or "email").errors = [str(exc)]
        else:
            return see_other(url_for("console.staff"), toast=f"{member.email} can now sign in")
    return render_staff(form, status=422)


@bp.post("/staff/<int:staff_id>/role")
@requires(Permission.STAFF_MANAGE)
def staff_role(staff_id):
    member = access_staff(staff_id)
    form = StaffRoleForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        services.change_staff_role(request_session(), member, form.role.data, actor=current_actor())
    except AccountError as exc:
        return render_staff(status=409, error=str(exc))
    return see_other(
        url_for("console.staff"), toast=f"{member.email} is now {member.role.replace('_', ' ')}"
    )


@bp.post("/staff/<int:staff_id>/deactivate")
@requires(Permission.STAFF_MANAGE)
def staff_deactivate(staff_id):
    member = access_staff(staff_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        services.deactivate_staff(request_session(), member, actor=current_actor())
    except AccountError as exc:
        return render_staff(status=409, error=str(exc))
    return see_other(url_for("console.staff"), toast=f"{member.email} deactivated and signed out")


@bp.post("/staff/<int:staff_id>/reactivate")
@requires(Permission.STAFF_MANAGE)
def staff_reactivate(staff_id):
    member = access_staff(staff_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    services.reactivate_staff(request_session(), member, actor=current_actor())
    return see_other(url_for("console.staff"), toast=f"{member.email} reactivated")
