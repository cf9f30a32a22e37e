"""Console forms (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from portal.validation import MAX_INT4, MAX_INT8, WholeNumber

# Limits fit their columns (integer; storage bigint): a larger number is an error, not a 500.
OPTIONAL_LIMIT = [Optional(), WholeNumber(0, MAX_INT4, "Enter 0 or more, or leave empty.")]
OPTIONAL_BIG_LIMIT = [Optional(), WholeNumber(0, MAX_INT8, "Enter 0 or more, or leave empty.")]


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class TenantCreateForm(FlaskForm):
    slug = StringField(
        "Slug",
        validators=[DataRequired(message="Choose a slug."), Length(max=40)],
        description="Lower-case letters, digits and hyphens, 3–40 characters. Used in the "
        "tenant's address and schema name; it cannot be changed later.",
    )
    name = StringField(
        "Organisation name",
        validators=[DataRequired(message="Give the organisation a name."), Length(max=200)],
    )
    domains = TextAreaField(
        "Custom domains",
        validators=[Optional(), Length(max=2000)],
        description="Optional, one per line (e.g. portal.acme.com).",
    )
    max_users = IntegerField(
        "Max users", validators=OPTIONAL_LIMIT, description="Empty means unlimited."
    )


class LimitsForm(FlaskForm):
    max_users = IntegerField(
        "Max users", validators=OPTIONAL_LIMIT, description="Empty means unlimited."
    )
    max_storage_bytes = IntegerField(
        "Storage (bytes)", validators=OPTIONAL_BIG_LIMIT, description="Empty means unlimited."
    )
    api_requests_per_minute = IntegerField(
        "API requests/min", validators=OPTIONAL_LIMIT, description="Empty means unlimited."
    )


class RenameForm(FlaskForm):
    name = StringField(
        "Organisation name",
        validators=[DataRequired(message="Give the organisation a name."), Length(max=200)],
    )


class DomainForm(FlaskForm):
    domain = StringField(
        "Add a domain", validators=[DataRequired(message="Enter a domain."), Length(max=253)]
    )


class RemoveDomainForm(FlaskForm):
    domain = StringField("Domain", validators=[DataRequired()])


class SuspendForm(FlaskForm):
    reason = TextAreaField(
        "Reason",
        validators=[
            DataRequired(message="Say why; the reason goes in the audit trail."),
            Length(max=500),
        ],
        description="Recorded in the audit trail and shown to the tenant's users.",
    )


class DeleteForm(FlaskForm):
    confirm_slug = StringField("Type the tenant's slug to confirm", validators=[DataRequired()])


STAFF_ROLES = [
    SelectChoice("platform_admin", "Platform admin — everything"),
    SelectChoice("support", "Support — read tenants, audit and jobs"),
    SelectChoice("compliance", "Compliance — read tenants, audit; verify the trail"),
]


class StaffCreateForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired(message="Enter an email address."), Length(max=320)]
    )
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices=STAFF_ROLES)
    password = PasswordField(
        "Initial password",
        validators=[DataRequired(message="Set an initial password."), Length(max=1024)],
        description="At least 12 characters. Share it with them privately.",
    )


class StaffRoleForm(FlaskForm):
    role = SelectField("Role", choices=STAFF_ROLES)


class StaffTenantsForm(FlaskForm):
    """Which tenants a support or compliance member sees. The view fills `tenant_ids.choices`;
    the service checks that the chosen tenants exist."""

    scope = RadioField(
        "Tenants this member sees",
        choices=[SelectChoice("all", "All tenants"), SelectChoice("some", "Only these tenants")],
        validators=[InputRequired(message="Choose All tenants or Only these tenants.")],
    )
    tenant_ids = SelectMultipleField(
        "Tenants",
        coerce=int,
        validate_choice=False,
        description="Used with “Only these tenants”. Hold Ctrl (⌘ on a Mac) to choose several.",
    )
