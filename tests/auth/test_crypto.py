"""Sealing secrets at rest: round trip, and every kind of tampering refused."""

from __future__ import annotations

import pytest

from portal import crypto

KEY = "test-secret-key-" + "x" * 32


@pytest.fixture(autouse=True)
def _configured():
    previous = crypto._secret_key
    crypto.configure(KEY)
    yield
    crypto._secret_key = previous


def test_a_sealed_value_unseals_to_the_original():
    token = crypto.seal("JBSWY3DPEHPK3PXP", purpose="totp")
    assert token.startswith("v1:")
    assert "JBSWY3DPEHPK3PXP" not in token
    assert crypto.unseal(token, purpose="totp") == "JBSWY3DPEHPK3PXP"


def test_unicode_and_empty_values_round_trip():
    for plaintext in ("", "Щука 🐙"):
        assert crypto.unseal(crypto.seal(plaintext, purpose="p"), purpose="p") == plaintext


def test_sealing_twice_gives_different_tokens():
    assert crypto.seal("same", purpose="totp") != crypto.seal("same", purpose="totp")


def test_every_changed_character_is_refused():
    token = crypto.seal("JBSWY3DPEHPK3PXP", purpose="totp")
    for index in range(len("v1:"), len(token)):
        replacement = "A" if token[index] != "A" else "B"
        tampered = token[:index] + replacement + token[index + 1 :]
        with pytest.raises(crypto.SealError):
            crypto.unseal(tampered, purpose="totp")


def test_a_truncated_or_extended_token_is_refused():
    token = crypto.seal("JBSWY3DPEHPK3PXP", purpose="totp")
    for tampered in (token[:-4], token + "AAAA", token[:10]):
        with pytest.raises(crypto.SealError):
            crypto.unseal(tampered, purpose="totp")


def test_a_token_sealed_for_another_purpose_is_refused():
    token = crypto.seal("JBSWY3DPEHPK3PXP", purpose="totp")
    with pytest.raises(crypto.SealError):
        crypto.unseal(token, purpose="webhook")


def test_a_token_sealed_under_another_key_is_refused():
    token = crypto.seal("JBSWY3DPEHPK3PXP", purpose="totp")
    crypto.configure("another-secret-key-" + "y" * 32)
    with pytest.raises(crypto.SealError):
        crypto.unseal(token, purpose="totp")


@pytest.mark.parametrize("token", ["", "v1:", "v2:AAAA", "JBSWY3DPEHPK3PXP", "v1:!!!!", "v1:AA"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(crypto.SealError):
        crypto.unseal(token, purpose="totp")


def test_sealing_before_configure_is_a_programming_error():
    crypto._secret_key = None
    with pytest.raises(RuntimeError):
        crypto.seal("x", purpose="totp")
