"""Console Outbox page: who may read mail, the list and a message, retrying failed mail."""

import dataclasses
import uuid

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import delete, insert, select

from portal import mail
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.mail import Mail, store_and_dispatch
from portal.mail_models import OutboxMessage
from portal.queue import queues

HOST = {"Host": "localhost"}
HTMX = {"Host": "localhost", "HX-Request": "true"}


@pytest.fixture
def marker(app):
    """A unique recipient domain for this test's mail; the rows are deleted afterwards."""
    original = mail.settings()
    mail.configure(dataclasses.replace(app.config["PORTAL"], smtp_host=None))
    domain = f"ob{uuid.uuid4().hex[:10]}.example"
    queue = queues.get("default")
    queue.empty()
    yield domain
    mail.configure(original)
    queue.empty()
    scheduled = ScheduledJobRegistry(queue=queue)
    for job_id in scheduled.get_job_ids():
        scheduled.remove(job_id, delete_job=True)
    with db.platform_scope() as session:
        session.execute(delete(OutboxMessage).where(OutboxMessage.to_addr.endswith(f"@{domain}")))


def stored(marker, *, to="alex", status=None, **fields):
    with_defaults = {"subject": "You are invited", "body": "Join: https://x/invite/t0k3n"}
    message_id = store_and_dispatch(Mail(to=f"{to}@{marker}", **{**with_defaults, **fields}))
    if status:
        with db.platform_scope() as session:
            message = session.get(OutboxMessage, message_id)
            message.status = status
            message.error = "ConnectionRefusedError: [Errno 111] Connection refused"
            message.attempts = 4
    return message_id


def retry_entries(message_id):
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry).where(
                PlatformAuditEntry.action == "ops:outbox:retry",
                PlatformAuditEntry.target_type == "outbox",
                PlatformAuditEntry.target_id == str(message_id),
            )
        ).all()


@pytest.mark.parametrize("path", ["/outbox", "/outbox/1"])
def test_signed_out_outbox_redirects_to_sign_in(client, path):
    response = client.get(path, headers=HOST)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=")


@pytest.mark.parametrize("role", ["support", "compliance"])
def test_only_platform_admins_may_read_mail(client, sign_in_as, marker, role):
    message_id = stored(marker, status="failed")
    sign_in_as(role)
    assert client.get("/outbox", headers=HOST).status_code == 403
    assert client.get(f"/outbox/{message_id}", headers=HOST).status_code == 403
    assert client.post(f"/outbox/{message_id}/retry", headers=HOST).status_code == 403
    assert b'href="/outbox"' not in client.get("/tenants", headers=HOST).data
    assert retry_entries(message_id) == []


def test_admin_sees_stored_mail_newest_first_and_filters_it(client, sign_in_as, marker):
    older = stored(marker, to="first", subject="Older message")
    newer = stored(marker, to="second", subject="Reset your password", tenant_slug="acme")
    stored(marker, to="third", subject="Broken one", status="failed")
    sign_in_as()
    page = client.get(f"/outbox?q={marker}", headers=HOST).data.decode()
    assert 'href="/outbox" aria-current="page"' in page
    assert "3 messages" in page
    assert page.index("Broken one") < page.index("Reset your password") < page.index("Older")
    assert f'href="/outbox/{newer}"' in page and f'href="/outbox/{older}"' in page
    assert "status-badge status-invited" in page and "Stored" in page
    assert "No SMTP server is configured" in page
    failed = client.get(f"/outbox?q={marker}&status=failed", headers=HTMX).data.decode()
    assert failed.lstrip().startswith('<div id="results"')
    assert "Broken one" in failed and "Reset your password" not in failed
    assert "Connection refused" in failed and "Retry" in failed
    by_tenant = client.get("/outbox?q=acme&status=stored", headers=HOST).data.decode()
    assert "Reset your password" in by_tenant
    nothing = client.get(f"/outbox?q=nobody-{marker}", headers=HOST).data.decode()
    assert "No messages match" in nothing
    bogus = client.get(f"/outbox?q={marker}&status=bogus", headers=HOST)
    assert bogus.status_code == 200 and "3 messages" in bogus.data.decode()


def test_outbox_pages_with_keyset_cursors(client, sign_in_as, marker):
    with db.platform_scope() as session:
        session.execute(
            insert(OutboxMessage),
            [
                dict(
                    to_addr=f"u{i:03}@{marker}",
                    subject=f"Notice {i:03}",
                    body="b",
                    kind="notice",
                    status="stored",
                    attempts=0,
                )
                for i in range(55)
            ],
        )
    sign_in_as()
    first = client.get(f"/outbox?q={marker}", headers=HOST).data.decode()
    assert "55 messages" in first and "Notice 054" in first and "Notice 004" not in first
    assert ">Previous<" not in first
    next_url = first.split('class="btn ms-auto" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(next_url, headers=HOST).data.decode()
    assert "Notice 004" in second and "Notice 000" in second and "Notice 054" not in second
    assert ">Previous<" in second and ">Next<" not in second


def test_empty_outbox_says_what_will_appear(client, sign_in_as, marker):
    sign_in_as()
    with db.platform_scope() as session:  # the outbox is a mail log, not a record to keep
        session.execute(delete(OutboxMessage))
    page = client.get("/outbox", headers=HOST).data.decode()
    assert "No mail yet — invitations and password resets will appear here." in page


def test_admin_reads_a_whole_message(client, sign_in_as, marker):
    body = "Hello Alex,\n\nReset your password: https://acme.localhost/reset/one-time-token\n"
    message_id = stored(marker, subject="Reset your password", body=body, kind="password_reset")
    sign_in_as()
    response = client.get(f"/outbox/{message_id}", headers=HOST)
    page = response.data.decode()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "https://acme.localhost/reset/one-time-token" in page and f"alex@{marker}" in page
    assert "password reset" in page and "Retry delivery" not in page
    assert client.get("/outbox/999999999", headers=HOST).status_code == 404


def test_retrying_failed_mail_enqueues_delivery_and_is_audited(app, client, sign_in_as, marker):
    mail.configure(dataclasses.replace(app.config["PORTAL"], smtp_host="127.0.0.1", smtp_port=9))
    message_id = stored(marker, status="failed")
    queue = queues.get("default")
    queue.empty()
    sign_in_as()
    page = client.get(f"/outbox/{message_id}", headers=HOST).data.decode()
    assert "Retry delivery" in page and "Connection refused" in page
    response = client.post(
        f"/outbox/{message_id}/retry", data={"next": f"/outbox?q={marker}"}, headers=HOST
    )
    assert response.status_code == 303 and response.headers["Location"] == f"/outbox?q={marker}"
    with db.platform_scope() as session:
        assert session.get(OutboxMessage, message_id).status == "queued"
    [job] = queue.jobs
    assert job.func_name == "jobs.mail.deliver_mail" and job.args == (message_id,)
    [entry] = retry_entries(message_id)
    assert entry.detail["attempts"] == 4 and entry.personal == {"to": f"alex@{marker}"}
    # Queued now: a second retry changes nothing and records nothing.
    again = client.post(f"/outbox/{message_id}/retry", headers=HOST)
    assert again.status_code == 303 and again.headers["Location"] == f"/outbox/{message_id}"
    assert queue.count == 1 and len(retry_entries(message_id)) == 1


def test_retry_without_smtp_is_refused_with_a_reason(client, sign_in_as, marker):
    message_id = stored(marker, status="failed")
    sign_in_as()
    response = client.post(f"/outbox/{message_id}/retry", headers=HOST)
    assert response.status_code == 409 and b"No SMTP server is configured" in response.data
    assert retry_entries(message_id) == []
    with db.platform_scope() as session:
        assert session.get(OutboxMessage, message_id).status == "failed"


def test_retry_of_unknown_mail_is_404_and_needs_csrf(app, client, sign_in_as, marker):
    message_id = stored(marker, status="failed")
    sign_in_as()
    assert client.post("/outbox/999999999/retry", headers=HOST).status_code == 404
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post(f"/outbox/{message_id}/retry", headers=HOST).status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert retry_entries(message_id) == []
