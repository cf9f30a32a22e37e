"""The one error type for input a person can correct, shared by every area's services."""

from __future__ import annotations


class InputError(ValueError):
    """A message for a person; `field` names the form field it belongs to, if any.

    Views put it next to that field (422), the CLI prints it and exits 2.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field
