"""Console Staff and Jobs pages: permissions, audit, last-admin guard, failed job retry."""

from rq import SimpleWorker
from sqlalchemy import select

from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.queue import queues
from portal.staff.models import StaffSession, StaffUser
from tests.conftest import PASSWORD, sign_in_staff

HOST = {"Host": "localhost"}


def last_action(target_id):
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry.action)
            .where(
                PlatformAuditEntry.target_type == "staff",
                PlatformAuditEntry.target_id == str(target_id),
            )
            .order_by(PlatformAuditEntry.seq.desc())
        ).first()


def test_support_sees_staff_but_cannot_add(client, sign_in_as):
    sign_in_as("support")
    page = client.get("/staff", headers=HOST)
    assert page.status_code == 200 and b"Add a staff member" not in page.data
    response = client.post(
        "/staff",
        data={"email": "x@msp.example", "role": "support", "password": PASSWORD},
        headers=HOST,
    )
    assert response.status_code == 403


def test_compliance_staff_cannot_open_staff_or_jobs(client, sign_in_as):
    sign_in_as("compliance")
    assert client.get("/staff", headers=HOST).status_code == 403
    assert client.get("/jobs", headers=HOST).status_code == 403


def test_admin_adds_staff_with_inline_errors_first(client, sign_in_as, make_staff):
    sign_in_as()
    bad = client.post(
        "/staff",
        data={"email": "new@msp.example", "role": "support", "password": "short"},
        headers={**HOST, "HX-Request": "true"},
    )
    assert bad.status_code == 422 and "at least 12" in bad.data.decode()
    email = "new-" + make_staff().email  # a fresh address
    good = client.post(
        "/staff", data={"email": email, "role": "support", "password": PASSWORD}, headers=HOST
    )
    assert good.status_code == 303
    with db.platform_scope() as session:
        member = session.scalars(select(StaffUser).where(StaffUser.email == email)).one()
        staff_id = member.id
    assert last_action(staff_id) == "console:staff:create"
    with db.platform_scope() as session:
        session.delete(session.get(StaffUser, staff_id))


def test_deactivating_staff_ends_their_sessions_at_once(app, client, sign_in_as, make_staff):
    victim = make_staff("support")
    other = app.test_client()
    assert sign_in_staff(other, victim).status_code == 303
    assert other.get("/tenants", headers=HOST).status_code == 200
    sign_in_as()
    assert client.post(f"/staff/{victim.id}/deactivate", headers=HOST).status_code == 303
    assert other.get("/tenants", headers=HOST).status_code == 302
    with db.platform_scope() as session:
        assert not session.scalars(
            select(StaffSession).where(StaffSession.staff_id == victim.id)
        ).all()
    assert last_action(victim.id) == "console:staff:deactivate"
    again = other.post("/sign-in", data={"email": victim.email, "password": PASSWORD}, headers=HOST)
    assert again.status_code == 422
    assert client.post(f"/staff/{victim.id}/reactivate", headers=HOST).status_code == 303
    assert (
        client.post(
            f"/staff/{victim.id}/role", data={"role": "compliance"}, headers=HOST
        ).status_code
        == 303
    )
    assert last_action(victim.id) == "console:staff:update"


def test_staff_cannot_deactivate_themselves(client, sign_in_as):
    me = sign_in_as()
    response = client.post(f"/staff/{me.id}/deactivate", headers=HOST)
    assert response.status_code == 409 and b"your own account" in response.data


def test_last_active_platform_admin_cannot_be_demoted(app, make_staff):
    from portal.accounts.validation import AccountError
    from portal.compliance.audit import Actor
    from portal.staff.members import change_staff_role
    from portal.staff.models import StaffRole

    make_staff("support")
    with db.platform_scope() as session:
        admins = session.scalars(
            select(StaffUser).where(StaffUser.role == StaffRole.PLATFORM_ADMIN, StaffUser.active)
        ).all()
        keep, *others = admins if admins else [None]
        for member in others:
            member.active = False
        session.flush()
        if keep is None:
            return
        try:
            change_staff_role(session, keep, "support", actor=Actor.system("test"))
        except AccountError as exc:
            assert "last active platform admin" in str(exc)
        else:
            raise AssertionError("the last admin was demoted")
        session.rollback()


def failing_job():
    raise ValueError("boom from a test job")


def test_jobs_page_shows_failed_jobs_and_retry_requeues_them(client, sign_in_as):
    queue = queues.get("default")
    queue.empty()
    job = queue.enqueue("tests.console.test_staff_and_jobs.failing_job")
    SimpleWorker([queue], connection=queues.redis).work(burst=True)
    sign_in_as()
    page = client.get("/jobs", headers=HOST).data.decode()
    assert job.id in page and "boom from a test job" in page
    fragment = client.get("/jobs", headers={**HOST, "HX-Request": "true"}).data.decode()
    assert fragment.lstrip().startswith('<div id="jobs-live"')
    assert client.post(f"/jobs/default/{job.id}/retry", headers=HOST).status_code == 303
    assert queue.count == 1
    assert client.post("/jobs/default/no-such-job/retry", headers=HOST).status_code == 404
    metrics = client.get("/metrics", headers=HOST).data.decode()
    assert 'portal_queue_jobs{queue="default",state="waiting"} 1.0' in metrics
    queue.empty()
