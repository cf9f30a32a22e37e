"""Input a person can correct: the one error type, shared by every area's services, and the
limits on how many rows one request may name."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter


class InputError(ValueError):
    """A message for a person; `field` names the form field it belongs to, if any.

    Views put it next to that field (422), the CLI prints it and exits 2.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


MAX_INT4 = 2**31 - 1  # ids are PostgreSQL integers; a larger one cannot exist
# One bulk request names at most this many rows: a list page selects at most its own page
# (50 rows), and PostgreSQL binds at most 65,535 parameters in one statement.
MAX_BULK_IDS = 1_000


def check_selection_size(
    values: list | None, *, noun: str, field: str = "ids", limit: int = MAX_BULK_IDS
) -> None:
    """Refuse (InputError on `field`) a selection of more than `limit` values, before any of
    them reaches the database."""
    if values and len(values) > limit:
        raise InputError(
            f"Select at most {limit:,} {noun}s at a time ({len(values):,} were sent).", field
        )


def selected_ids(values: list[int] | None, *, noun: str) -> list[int]:
    """The distinct ids of a bulk selection that can exist (1 to MAX_INT4), in order; more
    than MAX_BULK_IDS values is refused whole (InputError on the field "ids")."""
    check_selection_size(values, noun=noun)
    return sorted({i for i in values or () if 0 < i <= MAX_INT4})


class IdConverter(IntegerConverter):
    """`<int:…>` in a route: an id of a PostgreSQL integer column. A number past MAX_INT4 can
    name nothing, so the URL matches no route (404) instead of reaching SQL as an
    out-of-range value (a 500). Installed as the `int` converter of both sites."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_INT4, signed=False):  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


MAX_INT8 = 2**63 - 1


class WholeNumber:
    """A form validator: an integer from `low` to `high` (by default what a PostgreSQL integer
    column holds). WTForms' own NumberRange fails with OverflowError (a 500) on an integer too
    large for a float, such as 400 nines, and without `high` lets through a number the column
    cannot store."""

    def __init__(self, low: int = 0, high: int = MAX_INT4, message: str | None = None):
        self.low, self.high = low, high
        self.message = message or f"Enter a whole number from {low:,} to {high:,}."

    def __call__(self, form, field) -> None:
        from wtforms.validators import StopValidation

        data = field.data  # None when what was sent is not a number
        if not isinstance(data, int) or isinstance(data, bool) or not self.low <= data <= self.high:
            raise StopValidation(self.message)
