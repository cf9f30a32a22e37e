"""Console page for background work: queue depths, workers, schedulers, failed jobs."""

from __future__ import annotations

from flask import abort, url_for

from portal import jobs
from portal.compliance.audit import AuditAction, record
from portal.console.auth import current_actor
from portal.console.forms import ActionForm
from portal.console.views import bp
from portal.permissions import Permission, requires
from portal.web import render_page, request_session, see_other


@bp.get("/jobs")
@requires(Permission.JOBS_VIEW)
def jobs_page():
    return render_page(
        "console/jobs.html",
        "live",
        states=jobs.queue_states(),
        workers=jobs.workers(),
        schedulers=jobs.schedulers(),
        failed=jobs.failed_jobs(),
        action_form=ActionForm(formdata=None),
    )


@bp.post("/jobs/<queue>/<job_id>/retry")
@requires(Permission.JOBS_MANAGE)
def job_retry(queue, job_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    if not jobs.retry_failed_job(queue, job_id):
        abort(404)
    record(
        request_session(),
        AuditAction.JOB_RETRY,
        actor=current_actor(),
        target=("job", job_id),
        detail={"queue": queue},
    )
    return see_other(url_for("console.jobs_page"), toast="Job queued again")
