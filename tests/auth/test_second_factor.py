"""The second sign-in step of tenant users (portal/auth/second_factor.check, which staff share):
the audit entry of a used backup code and who may pass the step."""

from __future__ import annotations

from sqlalchemy import update

from portal.accounts.models import User, UserStatus
from portal.auth import services as auth
from portal.db import db
from tests.auth.test_services import ADDR, ANONYMOUS, last_entry, with_mfa
from tests.site.support import add_user


def test_a_used_backup_code_is_recorded_with_the_user_as_actor_and_address(tenant):
    user_id, email = add_user(tenant)
    _, codes = with_mfa(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert (
            auth.check_second_factor(session, user, codes[0], actor=ANONYMOUS, throttle=None)
            == "backup_code"
        )
    entry = last_entry(tenant)
    assert entry.action == "auth:mfa:backup_code_used" and entry.target_id == str(user_id)
    assert (entry.actor_type, entry.actor_id) == ("user", str(user_id))
    assert (entry.actor_label, entry.client_addr) == (email, ADDR)


def test_a_suspended_user_is_refused_at_the_second_step_even_with_a_right_code(tenant):
    user_id, _ = add_user(tenant)
    _, codes = with_mfa(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        session.execute(update(User).where(User.id == user_id).values(status=UserStatus.SUSPENDED))
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert (
            auth.check_second_factor(session, user, codes[0], actor=ANONYMOUS, throttle=None)
            is None
        )
        assert auth.backup_codes_left(session, user_id) == 10  # the code was not used up
    entry = last_entry(tenant)
    assert entry.action == "auth:mfa:failed"
    assert entry.detail == {"reason": "bad_code", "step": "mfa"}
