"""What the tenant admin page modules share: "is this me", the roles a person may be offered
and may give, and the largest id a URL may name."""

from __future__ import annotations

from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from portal.accounts import roles as account_roles
from portal.accounts.models import User
from portal.permissions import BuiltinRole
from portal.site.auth import current_actor

MAX_ID = 2**31 - 1  # ids are PostgreSQL integers; a larger one cannot exist


def actor_is(user: User) -> bool:
    """Whether the signed-in person is `user` (never for MSP staff visiting)."""
    return not getattr(current_user, "is_staff", False) and current_user.id == user.id


def role_choices(session, all_roles=None) -> list[SelectChoice]:
    """Roles a user can be given (Member is having none)."""
    return [
        SelectChoice(r.key, r.name)
        for r in (all_roles or account_roles.roles(session))
        if r.key != BuiltinRole.MEMBER
    ]


def ungrantable_roles(session, all_roles=None) -> set[str]:
    """Roles the signed-in person may not give (a permission they lack): offered disabled.
    The services refuse them anyway; this only keeps the page from offering them."""
    all_roles = all_roles or account_roles.roles(session)
    return {r.key for r in all_roles} - account_roles.grantable_role_keys(
        session, current_actor(), all_roles
    )
