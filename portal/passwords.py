"""Password hashing with Argon2id (argon2-cffi's RFC 9106 low-memory profile).

Passwords are hashed in their NFKC form, so the same password typed with another Unicode
composition (a ligature, a full-width digit, a precomposed accent) still verifies.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from portal.auth.password_policy import normalise

_hasher = PasswordHasher()  # Argon2id, t=3, m=64 MiB, p=4
# Verified against when the account does not exist, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("not a real password, used for constant-time misses")


def hash_password(password: str) -> str:
    return _hasher.hash(normalise(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; always spends one Argon2 verification.

    Hashes made before passwords were normalised hold the password as typed, so a miss on the
    normal form is retried with the typed form when the two differ. That second verification
    depends only on what was typed, not on whether the account exists.
    """
    normal = normalise(password)
    if _verify(password_hash, normal):
        return True
    return normal != password and _verify(password_hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
