"""Consent pages: the compliance officer's (purposes with their counts and rates, defining and
rewording a purpose, any user's history) and My account → Consents, where users grant and
withdraw with one click each.

The gate: a signed-in user with a purpose to answer (a required one not granted in its current
words, an optional one never answered or reworded since) is sent to My account → Consents
before anything else, and goes on to where they were going once they have answered. MFA
enrolment comes first (its gate runs before this one and its pages are let through here).
"""

from __future__ import annotations

from functools import wraps

from flask import abort, flash, request, url_for
from flask_login import current_user, login_required

from portal.accounts import lifecycle
from portal.compliance import consent as ledger
from portal.compliance.consent_models import ConsentPurpose, ConsentSource
from portal.compliance.forms import AnswerForm, PurposeForm
from portal.forms import ActionForm, attach_error
from portal.permissions import Permission, requires
from portal.site.admin_common import MAX_ID
from portal.site.auth import MFA_ENROLMENT_ENDPOINTS, current_actor
from portal.site.blueprint import bp
from portal.web import (
    after_change,
    full_page_redirect,
    local_path,
    render_page,
    request_session,
    see_other,
)

# Reachable while answers are pending (besides the MFA enrolment pages and site.mfa_*).
CONSENT_GATE_ENDPOINTS = {
    "static",
    "site.account_consents",
    "site.account_consent_grant",
    "site.account_consent_withdraw",
    "site.sign_in",
    "site.sign_out",
}


@bp.before_request
def require_consent_answers():
    """Send a signed-in user with pending purposes to answer them first (not staff visits)."""
    endpoint = request.endpoint or ""
    if not endpoint or endpoint in CONSENT_GATE_ENDPOINTS or endpoint in MFA_ENROLMENT_ENDPOINTS:
        return None
    if endpoint.startswith("site.mfa_") or not current_user.is_authenticated:
        return None
    if current_user.is_staff or not ledger.pending_for(request_session(), current_user.id):
        return None
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return full_page_redirect(url_for("site.account_consents", next=target))


def basis_labels() -> dict[str, str]:
    return {str(k): v for k, v in ledger.LAWFUL_BASIS_LABELS.items()}


# ---- the compliance officer's pages --------------------------------------------------------


@bp.get("/consent")
@requires(Permission.CONSENT_VIEW)
def consent():
    session = request_session()
    return render_page(
        "site/consent.html",
        purposes=ledger.purposes(session),
        stats=ledger.purpose_stats(session),
        bases=basis_labels(),
    )


def access_purpose(key: str, *, lock: bool = False) -> ConsentPurpose:
    if not ledger.PURPOSE_KEY_RE.match(key):
        abort(404)
    purpose = ledger.get_purpose(request_session(), key, lock=lock)
    if purpose is None:
        abort(404)
    return purpose


def render_purpose(
    purpose: ConsentPurpose | None,
    form: PurposeForm | None = None,
    *,
    status: int = 200,
    error: str | None = None,
):
    """A purpose's page (or the new-purpose form when `purpose` is None)."""
    session = request_session()
    if form is None and purpose is not None:
        form = PurposeForm(
            formdata=None,
            title=purpose.title,
            description=purpose.description,
            lawful_basis=purpose.lawful_basis,
            required=purpose.required,
        )
    return render_page(
        "site/consent_purpose.html",
        "form",
        purpose=purpose,
        form=form,
        stats=ledger.purpose_stats(session).get(purpose.key) if purpose else None,
        versions=ledger.purpose_versions(session, purpose.key) if purpose else [],
        bases=basis_labels(),
        archive_form=ActionForm(formdata=None),
        error=error,
        status=status,
    )


@bp.route("/consent/new", methods=["GET", "POST"])
@requires(Permission.CONSENT_MANAGE)
def consent_purpose_new():
    form = PurposeForm()
    if form.validate_on_submit():
        try:
            purpose = ledger.define_purpose(
                request_session(),
                key=form.key.data or "",
                title=form.title.data,
                description=form.description.data,
                required=form.required.data,
                lawful_basis=form.lawful_basis.data,
                actor=current_actor(),
            )
        except ledger.ConsentError as error:
            attach_error(form, error)
        else:
            return after_change(
                url_for("site.consent_purpose", key=purpose.key), f"Purpose {purpose.title} defined"
            )
    return render_purpose(None, form, status=422 if request.method == "POST" else 200)


@bp.route("/consent/purposes/<key>", methods=["GET", "POST"])
@requires(Permission.CONSENT_VIEW)
def consent_purpose(key):
    if request.method == "GET":
        return render_purpose(access_purpose(key))
    if not current_user.can(Permission.CONSENT_MANAGE):
        abort(403)
    purpose = access_purpose(key, lock=True)
    form = PurposeForm()
    if form.validate_on_submit():
        try:
            changed = ledger.update_purpose(
                request_session(),
                purpose,
                title=form.title.data,
                description=form.description.data,
                required=form.required.data,
                lawful_basis=form.lawful_basis.data,
                actor=current_actor(),
            )
        except ledger.ConsentError as error:
            attach_error(form, error)
        else:
            toast = f"Purpose {purpose.title} saved" if changed else "Nothing to change"
            return after_change(url_for("site.consent_purpose", key=purpose.key), toast)
    return render_purpose(purpose, form, status=422)


@bp.post("/consent/purposes/<key>/archive")
@requires(Permission.CONSENT_MANAGE)
def consent_purpose_archive(key):
    purpose = access_purpose(key, lock=True)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        ledger.archive_purpose(request_session(), purpose, actor=current_actor())
    except ledger.ConsentError as error:
        return render_purpose(purpose, status=422, error=str(error))
    return after_change(url_for("site.consent"), f"Purpose {purpose.title} archived")


@bp.get("/users/<int:user_id>/consents")
@requires(Permission.CONSENT_VIEW)
def user_consents(user_id):
    if not 0 < user_id <= MAX_ID:
        abort(404)
    session = request_session()
    user = lifecycle.get_user(session, user_id)
    if user is None:
        abort(404)
    return render_page(
        "site/user_consents.html",
        u=user,
        states=ledger.states_for(session, user.id),
        history=ledger.history(session, user.id),
        bases=basis_labels(),
    )


# ---- My account → Consents -----------------------------------------------------------------


def own_account(view):
    """Signed in as a user of this tenant (staff visits have no account here)."""

    @login_required
    @wraps(view)
    def wrapped(*args, **kwargs):
        if getattr(current_user, "is_staff", False):
            abort(404)
        return view(*args, **kwargs)

    return wrapped


def next_path() -> str | None:
    """Where the gate was going to (a path on this site), or None."""
    target = request.args.get("next")
    return local_path(target, "") or None


def render_account_consents(*, status: int = 200, errors: dict[str, str] | None = None):
    states = ledger.states_for(request_session(), current_user.id)
    return render_page(
        "site/account_consents.html",
        "consents",
        states=states,
        pending=[s for s in states if s.pending],
        next=next_path(),
        errors=errors or {},
        bases=basis_labels(),
        status=status,
    )


@bp.get("/account/consents")
@own_account
def account_consents():
    return render_account_consents()


def answer(key: str, *, granting: bool):
    """Grant or withdraw `key` for the signed-in user, as shown in the version they read."""
    if not ledger.PURPOSE_KEY_RE.match(key):
        abort(404)
    form = AnswerForm()
    if not form.validate_on_submit():
        message = "This answer was incomplete. Read the purpose and answer again."
        return render_account_consents(status=422, errors={key: message})
    session = request_session()
    user = lifecycle.get_user(session, current_user.id, lock=True)
    if user is None:
        abort(404)
    change = ledger.grant_consent if granting else ledger.withdraw_consent
    try:
        changed = change(
            session,
            user,
            key,
            actor=current_actor(),
            source=ConsentSource.WEB,
            version=form.version.data,
        )
    except ledger.ConsentError as error:
        if ledger.get_purpose(session, key) is None:
            abort(404)
        return render_account_consents(status=422, errors={key: str(error)})
    purpose = ledger.get_purpose(session, key)
    verb = "agreed to" if granting else "withdrew"
    toast = f"You {verb} {purpose.title}" if changed else "Nothing to change"
    target = next_path()
    if target and not ledger.pending_for(session, user.id):
        flash(toast, "success")
        return see_other(target)
    return after_change(
        url_for("site.account_consents", next=target),
        toast,
        fragment=lambda: render_account_consents(),
    )


@bp.post("/account/consents/<key>/grant")
@own_account
def account_consent_grant(key):
    return answer(key, granting=True)


@bp.post("/account/consents/<key>/withdraw")
@own_account
def account_consent_withdraw(key):
    return answer(key, granting=False)
