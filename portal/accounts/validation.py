"""Account input checks, and the errors a person can correct (AccountError, QuotaExceeded)."""

from __future__ import annotations

import re
import unicodedata

from portal.validation import InputError

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class AccountError(InputError):
    """An account change a person can correct."""


class QuotaExceeded(AccountError):
    pass


def validate_email(email: str | None) -> str:
    """`email`, stripped, if it is an address that can be stored and found again.

    Addresses are compared without regard to case: Python's lower case of what is typed
    against PostgreSQL's lower(email) of what is stored (the unique index). The two agree
    letter for letter except where Python's lower case is not one letter for one: "İ"
    (U+0130) becomes "i̇" (two code points) in Python but "i" in PostgreSQL, and a word-final
    "Σ" becomes "ς" in Python but "σ" in PostgreSQL. Such an address could never be found
    again, and its twin ("İnci@…" beside "inci@…") passed the duplicate check and then hit
    the unique index (a 500). They are refused, asking for the address in lower case, on
    which both sides agree. Control characters and lone surrogates cannot be stored at all.
    """
    email = (email or "").strip()
    if (
        len(email) > 320
        or not EMAIL_RE.match(email)
        or any(unicodedata.category(c) in ("Cc", "Cs") for c in email)
    ):
        raise AccountError("Enter a valid email address.", "email")
    lowered = email.lower()
    if len(lowered) != len(email) or lowered != "".join(c.lower() for c in email):
        odd = next((c for c in email if len(c.lower()) != 1), "Σ")
        raise AccountError(
            f"Type the address in lower case: “{odd}” has more than one lower-case form, "
            "so the address could not be matched reliably.",
            "email",
        )
    return email


def validate_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if len(name) > 200:
        raise AccountError("Use at most 200 characters.", "name")
    return name
