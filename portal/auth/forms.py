"""Forms of the tenant user's own flows: sign-in, password reset, invitation, registration and
the My account pages (Flask-WTF: every form carries a CSRF token).

Password fields are only length-bounded here; the password policy is applied by the services
(portal/password_policy.py), whose errors the views put next to the field they name.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

PASSWORD_MAX = 1024


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])


class SecondFactorForm(FlaskForm):
    # Not required: an empty code is checked (and counted) like a wrong one.
    code = StringField(
        "Authentication code",
        validators=[Length(max=64)],
        description="The 6-digit code from your authenticator app, or one of your backup codes.",
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[DataRequired(message="Enter your email address."), Length(max=320)],
        description="The address you sign in with.",
    )


class NewPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[
            DataRequired(message="Choose a password."),
            Length(max=PASSWORD_MAX, message="Use at most 1,024 characters."),
        ],
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[
            DataRequired(message="Type the password again."),
            EqualTo("password", message="The two passwords are not the same."),
        ],
    )


class InvitationForm(NewPasswordForm):
    name = StringField(
        "Your name",
        validators=[Optional(), Length(max=200)],
        description="How others in your organisation see you.",
    )


class RegisterForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[DataRequired(message="Enter your email address."), Length(max=320)],
        description="We send a link to this address to set your password.",
    )
    name = StringField("Your name", validators=[Optional(), Length(max=200)])


class ProfileForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[Optional(), Length(max=200, message="Use at most 200 characters.")],
        description="How others in your organisation see you.",
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password",
        validators=[
            DataRequired(message="Enter your current password."),
            Length(max=PASSWORD_MAX),
        ],
    )
    new_password = PasswordField(
        "New password",
        validators=[
            DataRequired(message="Choose a new password."),
            Length(max=PASSWORD_MAX, message="Use at most 1,024 characters."),
        ],
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[
            DataRequired(message="Type the new password again."),
            EqualTo("new_password", message="The two passwords are not the same."),
        ],
    )
    sign_out_others = BooleanField("Sign out my other sessions", default=True)


class MfaConfirmForm(FlaskForm):
    code = StringField(
        "Code from your app",
        validators=[DataRequired(message="Enter the 6-digit code your app shows."), Length(max=16)],
    )


class PasswordConfirmForm(FlaskForm):
    """Re-entering the password before a sensitive change (backup codes, turning MFA off)."""

    password = PasswordField(
        "Your password",
        validators=[DataRequired(message="Enter your password."), Length(max=PASSWORD_MAX)],
    )
