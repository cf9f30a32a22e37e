"""Sealing small secrets at rest (TOTP secrets) with AES-256-GCM under a key from SECRET_KEY.

Each purpose gets its own key, derived with HKDF-SHA256 (info b"portal:" + purpose), and the
purpose is also the associated data, so a sealed value only opens for the purpose it was sealed
for. A token is "v1:" + urlsafe base64 of nonce (12 random bytes) + ciphertext + tag; the
version prefix leaves room for another scheme or key later. Changing SECRET_KEY makes every
sealed value unreadable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1:"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_secret_key: bytes | None = None


class SealError(ValueError):
    """A token that does not open: tampered with, sealed under another key or purpose, or not a
    token at all."""


def configure(secret_key: str) -> None:
    """Set the key material every later `seal` and `unseal` derives its keys from."""
    global _secret_key
    if not secret_key:
        raise ValueError("the secret key must not be empty")
    _secret_key = secret_key.encode("utf-8")


def seal(plaintext: str, *, purpose: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _aead(purpose).encrypt(nonce, plaintext.encode("utf-8"), purpose.encode("utf-8"))
    return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def unseal(token: str, *, purpose: str) -> str:
    """The plaintext `seal` was given; `SealError` if the token does not open for `purpose`."""
    aead = _aead(purpose)
    if not isinstance(token, str) or not token.startswith(_VERSION):
        raise SealError("not a sealed value")
    body = token[len(_VERSION) :]
    try:
        raw = base64.b64decode(body, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SealError("not a sealed value") from None
    # Base64 leaves spare bits in the last character; refuse any spelling but the canonical one
    # so that every change to the token is an error.
    if base64.urlsafe_b64encode(raw).decode("ascii") != body:
        raise SealError("not a sealed value")
    if len(raw) < _NONCE_BYTES + _TAG_BYTES:
        raise SealError("not a sealed value")
    nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
    try:
        return aead.decrypt(nonce, sealed, purpose.encode("utf-8")).decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        raise SealError("the sealed value does not open with this key and purpose") from None


def mac(value: str, *, purpose: str) -> str:
    """HMAC-SHA256 (hex) of `value` under the purpose's key: a lookup hash for short secrets
    (backup codes), useless to someone holding only a copy of the database."""
    return hmac.new(_key(purpose), value.encode("utf-8"), hashlib.sha256).hexdigest()


def _key(purpose: str) -> bytes:
    if _secret_key is None:
        raise RuntimeError("portal.crypto is not configured; call crypto.configure(secret_key)")
    if not purpose:
        raise ValueError("a purpose is required")
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"portal:" + purpose.encode("utf-8")
    ).derive(_secret_key)


def _aead(purpose: str) -> AESGCM:
    return AESGCM(_key(purpose))
