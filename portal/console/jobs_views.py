"""Console page for background work: queue depths, workers, schedulers, failed jobs."""

from __future__ import annotations

from flask import abort, url_for

from portal import jobs
from portal.console.auth import current_actor
from portal.console.blueprint import bp
from portal.forms import ActionForm
from portal.permissions import Permission, requires
from portal.web import after_change, render_page, request_session


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
    if not jobs.retry_job(request_session(), queue, job_id, actor=current_actor()):
        abort(404)
    return after_change(url_for("console.jobs_page"), "Job queued again")
