"""Database errors reach the logs without the values bound to them: an email in a failed
INSERT must not land in log files (issue 11 §6)."""

import io
import json
import logging

import pytest
from sqlalchemy.exc import IntegrityError

from portal.accounts.lifecycle import create_user
from portal.accounts.models import User
from portal.compliance.audit import Actor
from portal.db import db
from portal.observability import log_handler, redact_db_values

EMAIL = "private.person@example.org"


@pytest.fixture
def captured():
    """The portal's own log handler, writing to a buffer; yields (logger, buffer)."""
    buffer = io.StringIO()
    handler = log_handler(buffer)
    logger = logging.getLogger("portal.test_logging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def duplicate_email_error(tenant) -> IntegrityError:
    """A real IntegrityError from PostgreSQL: a second user with the same email."""
    with db.tenant_scope(tenant) as session:
        create_user(session, email=EMAIL, name="First", actor=Actor.system("test"))
    with pytest.raises(IntegrityError) as caught:
        with db.tenant_scope(tenant) as session:
            session.add(User(email=EMAIL.upper(), name="Second"))
            session.flush()
    return caught.value


def test_the_engines_hide_bound_parameters(app):
    assert db.engine.hide_parameters and db.owner_engine.hide_parameters


def test_a_forced_integrity_error_logged_with_its_traceback_does_not_carry_the_email(
    tenant, captured
):
    logger, buffer = captured
    error = duplicate_email_error(tenant)
    assert EMAIL in str(error).lower()  # PostgreSQL's DETAIL line names the value
    try:
        raise error
    except IntegrityError:
        logger.exception("unhandled error")
    logger.warning("insert failed: %s", error)
    logger.warning("insert failed", extra={"error": str(error)})
    output = buffer.getvalue()
    assert EMAIL not in output.lower() and "private.person" not in output.lower()
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 3
    # What helps debugging stays: the error class, the constraint, the statement.
    assert "UniqueViolation" in lines[0]["exc_info"]
    assert "uq_users_email_lower" in lines[0]["exc_info"]
    assert "INSERT INTO" in lines[0]["exc_info"]
    assert "DETAIL: [hidden]" in lines[1]["message"]


def test_values_quoted_in_postgresql_messages_are_hidden():
    text = (
        'invalid input syntax for type integer: "ada@example.com"\n'
        "DETAIL:  Failing row contains (1, ada@example.com).\n"
        "CONTEXT:  unnamed portal parameter $1 = 'ada@example.com'\n"
        "[SQL: SELECT 1]\n[parameters: {'email': 'ada@example.com'}]"
    )
    assert "ada@example.com" not in redact_db_values(text)
    assert "[SQL: SELECT 1]" in redact_db_values(text)
