"""Forms of the tenant's admin pages (Flask-WTF: every form carries a CSRF token).

Forms check shape (required, length, range); the services check meaning (unique email, last
administrator, known role) and raise AccountError with the field it belongs to."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    ValidationError,
)

from portal.permissions import TENANT_PERMISSIONS
from portal.validation import WholeNumber


def whole_number(low: int, high: int) -> list:
    return [
        InputRequired(message=f"Enter a whole number from {low} to {high}."),
        WholeNumber(low, high, f"Enter a whole number from {low} to {high}."),
    ]


class InviteForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired(message="Enter an email address."), Length(max=320)]
    )
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    roles = SelectMultipleField(
        "Roles",
        description="Without a role they are a Member: they sign in and manage their own account.",
    )


class ProfileForm(FlaskForm):
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    email = EmailField(
        "Email",
        validators=[DataRequired(message="Enter an email address."), Length(max=320)],
        description="They sign in with this address.",
    )


class RolesForm(FlaskForm):
    roles = SelectMultipleField(
        "Roles",
        description="Without a role they are a Member: they sign in and manage their own account.",
    )


class SuspendForm(FlaskForm):
    reason = TextAreaField(
        "Reason",
        validators=[
            DataRequired(message="Say why; the reason goes in the audit trail."),
            Length(max=500),
        ],
        description="Recorded in the audit trail.",
    )


BULK_ACTION_CHOICES = [
    SelectChoice("", "Choose an action…"),
    SelectChoice("suspend", "Suspend"),
    SelectChoice("reactivate", "Reactivate"),
    SelectChoice("assign_role", "Assign a role"),
    SelectChoice("revoke_sessions", "Sign out everywhere"),
    SelectChoice("delete", "Delete"),
]


class BulkForm(FlaskForm):
    ids = SelectMultipleField("Users", coerce=int, validate_choice=False)
    action = SelectField(
        "Action",
        choices=BULK_ACTION_CHOICES,
        validators=[DataRequired(message="Choose an action.")],
    )
    role = SelectField("Role to assign", validate_choice=False)
    confirmed = HiddenField()
    next = HiddenField()


class RoleForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the role a name."), Length(max=100)],
    )
    description = TextAreaField(
        "Description",
        validators=[Optional(), Length(max=500)],
        description="What people with this role do, in a sentence.",
    )
    permissions = SelectMultipleField(
        "Permissions",
        choices=[SelectChoice(str(p), text) for p, text in TENANT_PERMISSIONS.items()],
    )

    def validate_name(self, field) -> None:
        # /roles/new is the creation page, so no role may be keyed "new".
        if "".join(c for c in (field.data or "").lower() if c.isalnum()) == "new":
            raise ValidationError("“New” is reserved; choose another name.")


MFA_POLICY_CHOICES = [
    SelectChoice("off", "Off — people choose for themselves"),
    SelectChoice("admins", "Required for administrators"),
    SelectChoice("everyone", "Required for everyone"),
]


class SecuritySettingsForm(FlaskForm):
    mfa_policy = RadioField(
        "Policy",
        choices=MFA_POLICY_CHOICES,
        validators=[InputRequired(message="Choose a policy.")],
    )
    mfa_grace_days = IntegerField(
        "Grace period (days)",
        validators=whole_number(0, 90),
        description="When the policy is tightened, people it newly binds may sign in without "
        "two-factor authentication for this many days, then must set it up.",
    )
    idle_timeout_minutes = IntegerField(
        "Idle timeout (minutes)",
        validators=whole_number(5, 1440),
        description="Sign a browser out after this long without activity (5 to 1440).",
    )
    absolute_timeout_minutes = IntegerField(
        "Absolute timeout (minutes)",
        validators=whole_number(15, 43200),
        description="Sign a browser out this long after sign-in, active or not (15 to 43200).",
    )
    password_min_length = IntegerField(
        "Minimum password length",
        validators=whole_number(8, 64),
        description="From 8 to 64 characters. Common and breached passwords are always refused.",
    )
    self_registration = BooleanField(
        "Allow self-registration",
        description="Anyone can create an account from the sign-in page; they confirm their "
        "email before signing in.",
    )
