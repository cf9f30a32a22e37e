"""Second factors: TOTP (RFC 6238, as authenticator apps use it) and one-time backup codes.

A TOTP code is accepted for the current 30-second step and one step either side (clock
drift), and only for a step later than the last one accepted for that account: the caller
stores the step `verify_totp` returns, so a code, once used, cannot be used again, and no
older code can follow it. Backup codes are random, stored only as hashes, and each used once
(the caller deletes the hash it matched).
"""

from __future__ import annotations

import hmac
import re
import secrets
import time

import pyotp
import segno

from portal import crypto

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps accepted either side of the current one
# No 0/o, 1/l/i: a code read from paper is typed back unambiguously. 31 symbols, 8 of them
# give 39.6 bits.
BACKUP_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
BACKUP_CODE_LENGTH = 8

_TOTP_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")
_BACKUP_CODE = re.compile(rf"[0-9a-z]{{{BACKUP_CODE_LENGTH}}}")
_SEPARATORS = re.compile(r"[\s-]+")


def new_secret() -> str:
    """A fresh TOTP secret: 32 base32 characters (160 bits)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str, *, title: str = "QR code to scan with your authenticator app") -> str:
    """The QR code as inline SVG markup: no XML declaration, no style attributes (CSP-safe).

    Black on white whatever the page's theme, since scanners need the contrast.
    """
    svg = segno.make(uri, error="m").svg_inline(
        scale=4, dark="#000000", light="#ffffff", title=title, svgclass="mfa-qr"
    )
    # With role="img" screen readers announce the <title> as the image's name.
    return svg.replace("<svg ", '<svg role="img" ', 1)


def format_secret(secret: str) -> str:
    """The secret in blocks of four for typing by hand: 'ABCD EFGH …'."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def verify_totp(
    secret: str, code: str, *, last_step: int | None, now: float | None = None
) -> int | None:
    """The time step `code` belongs to, if it is valid and later than `last_step`; else None.

    Spaces in `code` are ignored. Store the returned step as the account's new `last_step`.
    """
    code = "".join(code.split())
    if not _TOTP_CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    matched = None
    # Every candidate is compared, so the time taken does not depend on which one matches.
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            matched = step
    if matched is None or (last_step is not None and matched <= last_step):
        return None
    return matched


def generate_backup_codes(count: int = 10) -> list[str]:
    """`count` distinct codes like 'k7d2-9xq4', to show once and store as `backup_code_hash`."""
    codes: list[str] = []
    while len(codes) < count:
        raw = "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
        code = f"{raw[:4]}-{raw[4:]}"
        if code not in codes:
            codes.append(code)
    return codes


def normalise_backup_code(code: str) -> str:
    """Lowercase, without dashes or spaces: 'K7D2 9XQ4' and 'k7d2-9xq4' are the same code."""
    return _SEPARATORS.sub("", code).lower()


def backup_code_hash(code: str) -> str:
    """HMAC-SHA256 (hex, keyed from SECRET_KEY) of the normalised code, as stored: codes hold
    ~40 bits, which a plain hash would not protect in a leaked database."""
    return crypto.mac(normalise_backup_code(code), purpose="backup-code")


def looks_like_backup_code(code: str) -> bool:
    """True for eight letters and digits (a backup code), False for a six-digit TOTP code."""
    return bool(_BACKUP_CODE.fullmatch(normalise_backup_code(code)))
