"""Which passwords people may choose, after NIST SP 800-63B section 3.1.1.2: no composition rules.

A password is measured in Unicode code points after NFKC normalisation (the form it is hashed
in, see `portal.passwords`), may use any character including spaces and emoji, and is never
truncated. It is refused when it is too short or too long, when it is the account's email
address or that address's local part, when it is one character repeated, or when it is one of
the 100,000 most common passwords (portal/auth/data/SOURCE says where that list comes from).
"""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from importlib.resources import files

from portal.validation import InputError

MIN_LENGTH_RANGE = range(8, 65)  # what a caller may set as the minimum: 8 to 64
MAX_LENGTH = 1024  # bounds the hashing work per attempt; far above any real passphrase
_FIELD = "password"


def normalise(password: str) -> str:
    """The NFKC form, so one password typed with different Unicode compositions is one password."""
    return unicodedata.normalize("NFKC", password)


def check_password(password: str, *, email: str | None, min_length: int = 12) -> str:
    """Return `password` unchanged if it may be used, else raise `InputError` for the field."""
    if min_length not in MIN_LENGTH_RANGE:
        raise ValueError(f"min_length must be between 8 and 64, not {min_length}")
    normal = normalise(password)
    if not normal:
        raise InputError("Enter a password.", _FIELD)
    if len(normal) < min_length:
        raise InputError(f"Use at least {min_length} characters.", _FIELD)
    if len(normal) > MAX_LENGTH:
        raise InputError(f"Use at most {MAX_LENGTH:,} characters.", _FIELD)
    try:
        normal.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not text, and Argon2 could not hash them
        raise InputError(
            "This password contains characters that are not valid text.", _FIELD
        ) from None
    lowered = normal.lower()
    if email and lowered in _email_forms(email):
        raise InputError("Don't use your email address as your password.", _FIELD)
    if len(set(normal)) == 1:
        raise InputError("This password is one character repeated; choose another.", _FIELD)
    if lowered in _common_passwords():
        raise InputError(
            "This password is one of the 100,000 most common passwords; choose another.", _FIELD
        )
    return password


def _email_forms(email: str) -> set[str]:
    address = normalise(email).strip().lower()
    local = address.rpartition("@")[0]
    return {form for form in (address, local) if form}


@cache
def _common_passwords() -> frozenset[str]:
    """The common list, lowercased; read once per process, on first use (about 100k entries)."""
    data = (files("portal.auth") / "data" / "common-passwords.txt.gz").read_bytes()
    text = gzip.decompress(data).decode("utf-8")
    return frozenset(line.lower() for line in text.splitlines() if line)
