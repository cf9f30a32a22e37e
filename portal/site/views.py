"""Tenant site pages: sign-in, sign-out and the signed-in home. Suspended tenants get a notice."""

from __future__ import annotations

from flask import Blueprint, redirect, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from portal.accounts import services
from portal.auth import services as auth
from portal.auth.throttle import SignInThrottle
from portal.queue import queues
from portal.accounts.models import User, UserStatus
from portal.console.forms import SignInForm
from portal.errors import render_error
from portal.site.auth import SignedInUser, current_actor
from portal.web import actor_for, current_tenant, render_page, request_session, see_other

bp = Blueprint("site", __name__)


@bp.before_request
def refuse_unless_active():
    tenant = current_tenant()
    if tenant is not None and not tenant.active:
        return render_error(
            403,
            f"{tenant.name} is suspended",
            f"Sign-in to {tenant.name} is paused by your service provider. Your data is kept. "
            "Contact your provider's support to restore access.",
            suspended=True,
        )
    return None


@bp.get("/")
@login_required
def home():
    db = request_session()
    people = db.scalars(
        select(User).where(User.status != UserStatus.DELETED).order_by(User.email).limit(100)
    ).all()
    return render_page("site/home.html", people=people, total=services.count_users(db))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("site.home"))
    form = SignInForm()
    error = None
    if form.validate_on_submit():
        db = request_session()
        throttle = SignInThrottle(queues.redis, f"user:{current_tenant().slug}")
        user = auth.check_password_step(
            db, form.email.data, form.password.data, actor=current_actor(), throttle=throttle
        )
        if user is None:
            error = "Email or password is not right."
            db.commit()  # keep the failed-attempt audit entry
        else:
            session.clear()
            started = auth.start_user_session(
                db,
                user,
                actor=actor_for("user", user.id, user.email),
                user_agent=request.user_agent.string,
                device_token=request.cookies.get("portal_device"),
            )
            login_user(SignedInUser(started.token, started.row.id, user))
            return see_other(url_for("site.home"))
    status = 422 if request.method == "POST" else 200
    return render_page("site/sign_in.html", form=form, error=error, status=status)


@bp.post("/sign-out")
def sign_out():
    if current_user.is_authenticated:
        auth.end_user_session(request_session(), current_user.token, actor=current_actor())
        logout_user()
    session.clear()
    return see_other(url_for("site.sign_in"))
