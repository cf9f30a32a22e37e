"""TOTP verification with replay protection, the QR code, and backup codes."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from portal import crypto
from portal.auth import mfa


@pytest.fixture(autouse=True)
def _crypto_key():
    """Backup-code hashes are keyed from SECRET_KEY; the tests' key is restored afterwards."""
    crypto.configure("test-secret-key-" + "x" * 32)
    yield
    crypto.configure("test-secret-key-" + "x" * 32)


SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_750_000_015.0  # 15 s into a step
STEP = int(NOW // 30)


def code_at(step: int) -> str:
    return pyotp.TOTP(SECRET).generate_otp(step)


def test_new_secret_is_32_base32_characters_and_fresh_each_time():
    secret = mfa.new_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert secret != mfa.new_secret()


def test_provisioning_uri_names_account_and_issuer():
    uri = mfa.provisioning_uri(SECRET, account="ada@example.com", issuer="MSP Portal")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["MSP Portal"]
    assert "ada%40example.com" in parts.path


def test_qr_svg_is_inline_markup_a_strict_csp_allows():
    svg = mfa.qr_svg(mfa.provisioning_uri(SECRET, account="a@example.com", issuer="X"))
    assert svg.startswith('<svg role="img" ')
    assert svg.endswith("</svg>")
    assert "<?xml" not in svg
    assert "style" not in svg
    assert "<script" not in svg
    assert "<title>QR code to scan with your authenticator app</title>" in svg


def test_qr_svg_escapes_its_title():
    assert "<title>&lt;b&gt;</title>" in mfa.qr_svg("otpauth://totp/x", title="<b>")


def test_format_secret_groups_by_four():
    assert mfa.format_secret("ABCDEFGHIJ") == "ABCD EFGH IJ"
    assert mfa.format_secret(SECRET).replace(" ", "") == SECRET
    assert len(mfa.format_secret(SECRET).split()) == 8


def test_current_code_is_accepted_and_returns_its_step():
    assert mfa.verify_totp(SECRET, code_at(STEP), last_step=None, now=NOW) == STEP


def test_the_same_code_is_refused_the_second_time():
    step = mfa.verify_totp(SECRET, code_at(STEP), last_step=None, now=NOW)
    assert mfa.verify_totp(SECRET, code_at(STEP), last_step=step, now=NOW) is None
    assert mfa.verify_totp(SECRET, code_at(STEP), last_step=step, now=NOW + 20) is None


def test_an_older_code_is_refused_after_a_newer_one_was_used():
    assert mfa.verify_totp(SECRET, code_at(STEP - 1), last_step=STEP, now=NOW) is None


def test_the_previous_steps_code_is_accepted():
    assert mfa.verify_totp(SECRET, code_at(STEP - 1), last_step=None, now=NOW) == STEP - 1


def test_a_code_two_steps_old_is_refused():
    assert mfa.verify_totp(SECRET, code_at(STEP - 2), last_step=None, now=NOW) is None


def test_the_next_steps_code_is_accepted_for_clock_drift():
    assert mfa.verify_totp(SECRET, code_at(STEP + 1), last_step=None, now=NOW) == STEP + 1
    assert mfa.verify_totp(SECRET, code_at(STEP + 2), last_step=None, now=NOW) is None


def test_a_wrong_code_is_refused():
    valid = {code_at(step) for step in range(STEP - 1, STEP + 2)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)
    assert mfa.verify_totp(SECRET, wrong, last_step=None, now=NOW) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12-345"])
def test_malformed_codes_are_refused(code):
    assert mfa.verify_totp(SECRET, code, last_step=None, now=NOW) is None


def test_a_code_typed_with_spaces_is_accepted():
    code = code_at(STEP)
    typed = f" {code[:3]} {code[3:]} "
    assert mfa.verify_totp(SECRET, typed, last_step=None, now=NOW) == STEP


def test_verify_totp_uses_the_clock_by_default():
    assert mfa.verify_totp(SECRET, pyotp.TOTP(SECRET).now(), last_step=None) is not None


def test_ten_distinct_backup_codes_in_the_readable_shape():
    codes = mfa.generate_backup_codes()
    assert len(codes) == 10 == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}", code)
        assert mfa.looks_like_backup_code(code)
    assert len(mfa.generate_backup_codes(3)) == 3


def test_backup_code_hash_ignores_case_dashes_and_spaces():
    stored = mfa.backup_code_hash("k7d2-9xq4")
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    for typed in ("k7d29xq4", "K7D2-9XQ4", " k7d2 9xq4 ", "k7d2 - 9xq4"):
        assert mfa.normalise_backup_code(typed) == "k7d29xq4"
        assert mfa.backup_code_hash(typed) == stored
    assert mfa.backup_code_hash("k7d2-9xq5") != stored


def test_backup_code_hash_depends_on_the_secret_key():
    stored = mfa.backup_code_hash("k7d2-9xq4")
    crypto.configure("another-secret-key-" + "y" * 32)
    assert mfa.backup_code_hash("k7d2-9xq4") != stored


def test_a_backup_code_is_told_apart_from_a_totp_code():
    assert mfa.looks_like_backup_code("K7D2-9XQ4")
    assert not mfa.looks_like_backup_code("123456")
    assert not mfa.looks_like_backup_code("123 456")
    assert not mfa.looks_like_backup_code("k7d2-9xq")
    assert not mfa.looks_like_backup_code("k7d2-9xq4!")
