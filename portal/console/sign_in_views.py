"""Console sign-in (password step; the second step is in account_views) and sign-out."""

from __future__ import annotations

from flask import redirect, request, url_for
from flask import session as cookie
from flask_login import current_user, login_user, logout_user

from portal.auth import flood
from portal.auth.throttle import SignInThrottle
from portal.console import second_step
from portal.console.auth import SignedInStaff, current_actor
from portal.console.blueprint import bp
from portal.console.common import (
    safe_next,
)
from portal.console.forms import (
    SignInForm,
)
from portal.queue import queues
from portal.staff.sessions import authenticate_staff, end_staff_session, start_staff_session
from portal.web import (
    actor_for,
    render_page,
    request_session,
    see_other,
)


@bp.route("/sign-in", methods=["GET", "POST"])
@flood.hashes_password
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("console.overview"))
    form = SignInForm()
    error = None
    if form.validate_on_submit():
        session = request_session()
        member = authenticate_staff(
            session,
            form.email.data,
            form.password.data,
            actor=current_actor(),
            throttle=SignInThrottle(queues.redis, "staff"),
        )
        if member is None:
            error = "Email or password is not right."
        elif member.mfa_enabled:
            # The second step (portal/console/account_views.py) completes the sign-in.
            second_step.begin(member, safe_next(request.args.get("next")))
            return see_other(url_for("console.sign_in_verify"))
        else:
            cookie.clear()  # nothing from before sign-in survives it
            token, row = start_staff_session(
                session,
                member,
                actor=actor_for("staff", member.id, member.email),
                user_agent=request.user_agent.string,
            )
            login_user(SignedInStaff(token, row.id, member))
            return see_other(safe_next(request.args.get("next")))
    status = 422 if request.method == "POST" else 200
    return render_page("console/sign_in.html", form=form, error=error, status=status)


@bp.post("/sign-out")
def sign_out():
    if current_user.is_authenticated:
        end_staff_session(request_session(), current_user.token, actor=current_actor())
        logout_user()
    cookie.clear()
    return see_other(url_for("console.sign_in"))
