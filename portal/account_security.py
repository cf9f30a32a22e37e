"""The security steps of "My account" on both sites: change the password, and set up, renew
backup codes of, or turn off two-factor authentication.

A tenant user and a staff member go through the same steps; what differs is theirs to say in an
`AccountSecurity`: how to load the signed-in owner, their services, their throttle, and the page
that shows the forms. Each step parses its form, calls the service and answers with the page
again (422, the error next to its field), the backup codes shown once, or back to the page with a
toast (for HTMX, the changed block). Re-entered passwords count wrong answers in the sign-in
throttle, so a stolen session cannot be used to guess the password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, abort, url_for
from markupsafe import Markup

from portal.auth import mfa
from portal.auth.forms import ChangePasswordForm, MfaConfirmForm, PasswordConfirmForm
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor
from portal.forms import ActionForm, attach_error
from portal.passwords import verify_password
from portal.validation import InputError
from portal.web import (
    after_change,
    client_addr,
    render_page,
    request_session,
    see_other,
)

TOO_MANY_TRIES = "Too many wrong passwords. Wait a few minutes and try again."


@dataclass(frozen=True)
class AccountSecurity:
    """One site's "My account": the owner, their services, and the page with the forms.

    The page's template has the blocks "password_panel" and "mfa_panel"; `render(block, status=,
    **forms)` renders it with any of the forms given (`password_form`, `confirm_form`,
    `regenerate_form`, `disable_form`) in place of empty ones.
    """

    page: str  # endpoint of the page
    codes_template: str  # the page that shows new backup codes once
    render: Callable[..., Response]
    owner: Callable[..., Any]  # owner(lock=True): the signed-in account's row, else 404
    actor: Callable[[], Actor]
    throttle: Callable[[], SignInThrottle]
    mfa_required: Callable[[], bool]
    # The owner's services: (session, owner, form, *, actor) -> sessions ended; then the MFA ones
    # with the signatures of portal/auth/services.py.
    change_password: Callable[..., int]
    start_enrolment: Callable[..., str]
    confirm_enrolment: Callable[..., list[str]]
    regenerate_backup_codes: Callable[..., list[str]]
    disable_mfa: Callable[..., bool]

    def password_refused(self, owner, field) -> bool:
        """Check a re-entered password; a wrong one is counted like a failed sign-in."""
        throttle = self.throttle()
        if throttle.wait_seconds(owner.email, client_addr()):
            field.errors = [*field.errors, TOO_MANY_TRIES]
            return True
        if not verify_password(owner.password_hash, field.data or ""):
            throttle.failed(owner.email, client_addr())
            field.errors = [*field.errors, "That is not your password."]
            return True
        return False


def enrolment_setup(secret: str | None, *, account: str, issuer: str) -> dict | None:
    """The QR code and the typed key of an enrolment begun, for the MFA card."""
    if not secret:
        return None
    uri = mfa.provisioning_uri(secret, account=account, issuer=issuer)
    return {"qr": Markup(mfa.qr_svg(uri)), "key": mfa.format_secret(secret)}


def change_password(account: AccountSecurity) -> Response:
    """The current password and a new one; the service says which other sessions end."""
    owner = account.owner(lock=True)
    form = ChangePasswordForm()
    throttle = account.throttle()
    if form.validate_on_submit():
        if throttle.wait_seconds(owner.email, client_addr()):
            form.current_password.errors = [*form.current_password.errors, TOO_MANY_TRIES]
        else:
            try:
                ended = account.change_password(
                    request_session(), owner, form, actor=account.actor()
                )
            except InputError as error:
                if error.field == "current_password":
                    throttle.failed(owner.email, client_addr())
                attach_error(form, error, "new_password")
            else:
                toast = "Password changed"
                if ended:
                    toast += f" — signed out of {ended} other session{'' if ended == 1 else 's'}"
                return after_change(
                    url_for(account.page),
                    toast,
                    fragment=lambda: account.render("password_panel"),
                )
    return account.render("password_panel", status=422, password_form=form)


def start_mfa(account: AccountSecurity) -> Response:
    """A new key to scan (again, for "Start again"); nothing to do once MFA is on."""
    if not ActionForm().validate_on_submit():
        abort(400)
    owner = account.owner(lock=True)
    if owner.mfa_enabled:
        return see_other(url_for(account.page))
    account.start_enrolment(request_session(), owner)
    return after_change(
        url_for(account.page, _anchor="mfa"), fragment=lambda: account.render("mfa_panel")
    )


def confirm_mfa(account: AccountSecurity) -> Response:
    """MFA on once the app's code is right; the backup codes are shown this once."""
    owner = account.owner(lock=True)
    form = MfaConfirmForm()
    if form.validate_on_submit():
        try:
            codes = account.confirm_enrolment(
                request_session(), owner, form.code.data, actor=account.actor()
            )
        except InputError as error:
            attach_error(form, error, "code")
        else:
            return render_page(account.codes_template, codes=codes, enrolled=True)
    return account.render("mfa_panel", status=422, confirm_form=form)


def new_backup_codes(account: AccountSecurity) -> Response:
    """New backup codes (the old ones stop working), after re-entering the password."""
    owner = account.owner(lock=True)
    form = PasswordConfirmForm(prefix="regenerate")
    if form.validate_on_submit() and not account.password_refused(owner, form.password):
        try:
            codes = account.regenerate_backup_codes(request_session(), owner, actor=account.actor())
        except InputError as error:
            attach_error(form, error)
        else:
            return render_page(account.codes_template, codes=codes, enrolled=False)
    return account.render("mfa_panel", status=422, regenerate_form=form)


def turn_off_mfa(account: AccountSecurity) -> Response:
    """MFA off after re-entering the password, where it is not required."""
    owner = account.owner(lock=True)
    form = PasswordConfirmForm(prefix="disable")
    if form.validate_on_submit():
        throttle = account.throttle()
        if throttle.wait_seconds(owner.email, client_addr()):
            form.password.errors = [*form.password.errors, TOO_MANY_TRIES]
        else:
            try:
                account.disable_mfa(
                    request_session(),
                    owner,
                    password=form.password.data,
                    actor=account.actor(),
                    required=account.mfa_required(),
                )
            except InputError as error:
                if error.field == "password":
                    throttle.failed(owner.email, client_addr())
                attach_error(form, error)
            else:
                return after_change(
                    url_for(account.page, _anchor="mfa"),
                    "Two-factor authentication turned off",
                    fragment=lambda: account.render("mfa_panel"),
                )
    return account.render("mfa_panel", status=422, disable_form=form)
