"""The markup helpers of portal/web.py produce valid HTML (issue 11 §8)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from portal.web import first_focus, when


def test_time_datetime_has_at_most_three_fraction_digits_in_utc():
    value = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    html = when(value)
    assert 'datetime="2026-03-01T07:30:15.123Z"' in html
    assert not re.search(r"\.\d{4,}", html)


def test_naive_times_are_taken_as_utc():
    assert 'datetime="2026-03-01T09:30:15.000Z"' in when(datetime(2026, 3, 1, 9, 30, 15))


def test_first_focus_is_given_once_per_request(app):
    with app.test_request_context():
        assert [first_focus(), first_focus(), first_focus()] == [True, False, False]
    with app.test_request_context():
        assert first_focus() is True


def test_a_form_with_two_errors_autofocuses_only_the_first(app):
    from flask import render_template_string
    from flask_wtf import FlaskForm
    from wtforms import StringField
    from wtforms.validators import DataRequired

    class TwoFields(FlaskForm):
        first = StringField("First", validators=[DataRequired()])
        second = StringField("Second", validators=[DataRequired()])

    page = '{% from "_forms.html" import field %}{{ field(form.first) }}{{ field(form.second) }}'
    with app.test_request_context(method="POST", data={}):
        app.config["WTF_CSRF_ENABLED"] = False
        form = TwoFields()
        assert not form.validate()
        html = render_template_string(page, form=form)
    assert html.count("autofocus") == 1
    assert html.index("autofocus") < html.index('id="second"')


def test_now_is_relative_text_inside_the_time_element():
    assert ">just now</time>" in when(datetime.now(UTC))
