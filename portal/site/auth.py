"""Flask-Login wiring for tenant users, mirroring the console's: token in cookie, row in schema."""

from __future__ import annotations

from flask import Flask, redirect, request, url_for
from flask_login import LoginManager, UserMixin, current_user

from portal.web import actor_for, request_session


class SignedInUser(UserMixin):
    def __init__(self, token: str, session_id: int, user):
        self.token = token
        self.session_id = session_id
        self.user = user  # the model object at sign-in, a plain row of its columns after

    def get_id(self) -> str:
        return self.token

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def display_name(self) -> str:
        return self.user.name or self.user.email


def current_actor():
    if current_user.is_authenticated:
        return actor_for("user", current_user.user.id, current_user.email)
    return actor_for("anonymous", None, None)


def init_login(app: Flask) -> None:
    from portal.accounts.services import load_user_session

    manager = LoginManager()
    manager.session_protection = None
    manager.init_app(app)

    @manager.user_loader
    def load(token: str):
        row = load_user_session(request_session(), token)
        return SignedInUser(token, row.session_id, row) if row else None

    @manager.unauthorized_handler
    def unauthorized():
        target = url_for("site.sign_in", next=request.full_path.rstrip("?"))
        if request.headers.get("HX-Request") == "true":
            response = app.response_class(status=204)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target)
