"""Tenant admin page: security settings (MFA policy, session timeouts, registration, password
length)."""

from __future__ import annotations

from flask import request, url_for

from portal.accounts import settings as account_settings
from portal.accounts.forms import (
    SecuritySettingsForm,
)
from portal.accounts.validation import AccountError
from portal.forms import attach_error
from portal.permissions import Permission, requires
from portal.site.auth import current_actor
from portal.site.blueprint import bp
from portal.web import after_change, render_page, request_session

SETTING_FIELDS = (
    "mfa_policy",
    "mfa_grace_days",
    "idle_timeout_minutes",
    "absolute_timeout_minutes",
    "self_registration",
    "password_min_length",
)


def render_security(form=None, *, status: int = 200):
    current = account_settings.security_settings(request_session())
    return render_page(
        "site/security_settings.html",
        "settings",
        form=form or SecuritySettingsForm(formdata=None, obj=current),
        current=current,
        deadline=account_settings.mfa_deadline(current),
        status=status,
    )


@bp.route("/settings/security", methods=["GET", "POST"])
@requires(Permission.SECURITY_MANAGE)
def security_settings():
    form = SecuritySettingsForm()
    if request.method == "GET":
        return render_security()
    if form.validate_on_submit():
        try:
            done = account_settings.update_security_settings(
                request_session(),
                actor=current_actor(),
                **{name: getattr(form, name).data for name in SETTING_FIELDS},
            )
        except AccountError as error:
            attach_error(form, error, "mfa_policy")
        else:
            toast = "Security settings saved" if done else "Security settings unchanged"
            return after_change(url_for("site.security_settings"), toast, fragment=render_security)
    return render_security(form, status=422)
