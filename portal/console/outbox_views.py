"""Console pages for the mail outbox: every message the portal sent or kept, and retries.

Bodies hold one-time links (invitations, password resets), so reading them needs
OUTBOX_VIEW, which only platform admins hold; the detail page is never cached.
"""

from __future__ import annotations

from functools import partial

from flask import abort, request, url_for
from markupsafe import Markup, escape
from sqlalchemy import func, or_, select

from portal import mail
from portal.console.auth import current_actor
from portal.console.blueprint import bp
from portal.console.common import safe_next
from portal.forms import ActionForm
from portal.mail_models import OutboxMessage, OutboxStatus
from portal.pagination import Filter, ListSpec, choice_filter
from portal.permissions import Permission, requires
from portal.validation import InputError
from portal.web import after_change, render_page, request_session

PAGE_SIZE = 50

# Status as text plus colour, reusing the tenant status colours.
BADGES = {
    OutboxStatus.STORED: ("status-invited", "Stored"),
    OutboxStatus.QUEUED: ("status-suspended", "Queued"),
    OutboxStatus.SENT: ("status-active", "Sent"),
    OutboxStatus.FAILED: ("status-deleted", "Failed"),
}

LIST_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.tenant_slug,
    OutboxMessage.to_addr,
    OutboxMessage.subject,
    OutboxMessage.kind,
    OutboxMessage.status,
    OutboxMessage.attempts,
    func.left(OutboxMessage.error, 200).label("error"),
    OutboxMessage.created_at,
    OutboxMessage.sent_at,
)


def outbox_badge(status: str) -> Markup:
    css, label = BADGES.get(status, ("", str(status).capitalize()))
    return Markup(
        f'<span class="badge status-badge {css}"><span class="status-dot" aria-hidden="true">'
        f"</span> {escape(label)}</span>"
    )


OUTBOX = ListSpec(
    filters=(Filter("q", lambda raw: raw[:320]), choice_filter("status", OutboxStatus.ALL)),
    sorts={"created": ("created_at", "id")},
    default_sort="-created",
    size=PAGE_SIZE,
)


@bp.get("/outbox")
@requires(Permission.OUTBOX_VIEW)
def outbox():
    query = OUTBOX.parse(request.args)
    q, status = query.filters["q"], query.filters["status"]
    conditions = []
    if q:
        conditions.append(
            or_(
                OutboxMessage.to_addr.icontains(q, autoescape=True),
                OutboxMessage.tenant_slug.icontains(q, autoescape=True),
            )
        )
    if status:
        conditions.append(OutboxMessage.status == status)
    messages = OUTBOX.page(
        request_session(),
        select(*LIST_COLUMNS).where(*conditions).subquery("messages"),
        query,
        url=partial(url_for, "console.outbox"),
        size=PAGE_SIZE,
    )
    return render_page(
        "console/outbox.html",
        "results",
        messages=messages,
        statuses=[(s, BADGES[s][1]) for s in OutboxStatus.ALL],
        badge=outbox_badge,
        smtp=mail.smtp_configured(),
        action_form=ActionForm(formdata=None),
        here=messages.here,
    )


def access_message(message_id: int, *, lock: bool = False) -> OutboxMessage:
    message = request_session().get(OutboxMessage, message_id, with_for_update=lock)
    if message is None:
        abort(404)
    return message


def render_message(message: OutboxMessage, *, status: int = 200, error: str | None = None):
    response = render_page(
        "console/outbox_message.html",
        m=message,
        badge=outbox_badge,
        smtp=mail.smtp_configured(),
        action_form=ActionForm(formdata=None),
        error=error,
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"  # the body may hold a one-time link
    return response


@bp.get("/outbox/<int:message_id>")
@requires(Permission.OUTBOX_VIEW)
def outbox_message(message_id):
    return render_message(access_message(message_id))


@bp.post("/outbox/<int:message_id>/retry")
@requires(Permission.JOBS_MANAGE)
def outbox_retry(message_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    message = access_message(message_id, lock=True)
    try:
        retried = mail.retry_delivery(request_session(), message, actor=current_actor())
    except InputError as exc:
        return render_message(message, status=409, error=str(exc))
    back = request.form.get("next", "")
    target = (
        safe_next(back)
        if back.startswith("/outbox")
        else url_for("console.outbox_message", message_id=message.id)
    )
    if not retried:
        return after_change(target, f"Nothing to retry: the message is {message.status}")
    return after_change(target, f"Mail to {message.to_addr} queued for delivery again")
