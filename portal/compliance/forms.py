"""Forms of the consent pages (Flask-WTF: every form carries a CSRF token). Forms check shape;
`portal.compliance.consent` checks meaning and names the field it refuses."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from portal.compliance.consent import LAWFUL_BASIS_LABELS, MAX_DESCRIPTION


class PurposeForm(FlaskForm):
    key = StringField(
        "Key",
        validators=[Optional(), Length(max=63)],
        description="How the portal, the API and the CLI name it: lower-case letters, digits "
        "and underscores, e.g. product_analytics. It cannot be changed later.",
    )
    title = StringField(
        "Title",
        validators=[DataRequired(message="Give the purpose a title."), Length(max=200)],
    )
    description = TextAreaField(
        "What users agree to",
        validators=[
            DataRequired(message="Describe what the purpose covers."),
            Length(max=MAX_DESCRIPTION),
        ],
        description="Users read this before they answer. Changing it, the title or the lawful "
        "basis makes a new version, and everyone is asked again at their next sign-in.",
    )
    lawful_basis = SelectField(
        "Lawful basis",
        choices=[SelectChoice(str(k), v) for k, v in LAWFUL_BASIS_LABELS.items()],
        description="The ground for this processing under GDPR Art. 6(1).",
    )
    required = BooleanField(
        "Required to use the portal",
        description="Users who have not agreed to a required purpose cannot go on past the "
        "consent page. Optional purposes can be declined.",
    )


class AnswerForm(FlaskForm):
    """A grant or withdrawal: the version of the text the person was shown."""

    version = IntegerField(
        validators=[InputRequired(), NumberRange(min=1, max=2**31 - 1)],
    )
