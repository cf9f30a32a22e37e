"""What the forms of both sites share: the button-only form that confirms an action, and a
service's error shown on the form it came from."""

from __future__ import annotations

from flask_wtf import FlaskForm

from portal.validation import InputError


class ActionForm(FlaskForm):
    """A button-only form ("Suspend", "Revoke", "Retry"): nothing but the CSRF token."""


def attach_error(form: FlaskForm, error: InputError, fallback: str | None = None) -> None:
    """Show a service's error next to the field it names (or `fallback`), else above the form."""
    field = getattr(form, error.field or "", None) or (
        getattr(form, fallback) if fallback else None
    )
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, str(error)]
    else:
        form.form_errors.append(str(error))
