"""The password policy, and hashing that neither truncates nor depends on Unicode composition."""

from __future__ import annotations

import pytest

from portal.password_policy import check_password, normalise
from portal.passwords import hash_password, verify_password
from portal.validation import InputError

EMAIL = "Ada.Lovelace@Example.com"
GOOD = "violet tugboat orchestra"


def refusal(password: str, *, email: str | None = EMAIL, min_length: int = 12) -> str:
    with pytest.raises(InputError) as caught:
        check_password(password, email=email, min_length=min_length)
    assert caught.value.field == "password"
    return str(caught.value)


def test_a_long_uncommon_password_is_returned_unchanged():
    assert check_password(GOOD, email=EMAIL) == GOOD


def test_a_common_password_is_refused_in_any_case():
    for password in ("password1234", "PASSWORD1234", "PassWord1234", "qwertyuiop123"):
        assert "100,000 most common" in refusal(password, min_length=8)


def test_a_password_one_character_short_is_refused():
    assert refusal("k3v!q9zr#m2w"[:11]) == "Use at least 12 characters."
    assert check_password("k3v!q9zr#m2w", email=EMAIL) == "k3v!q9zr#m2w"


def test_the_minimum_is_the_callers():
    assert refusal("k3v!q9zr#m2w", min_length=16) == "Use at least 16 characters."
    assert check_password("k3v!q9zr", email=EMAIL, min_length=8) == "k3v!q9zr"


def test_a_minimum_outside_8_to_64_is_a_programming_error():
    for min_length in (7, 65):
        with pytest.raises(ValueError):
            check_password(GOOD, email=EMAIL, min_length=min_length)


def test_an_empty_password_is_refused():
    assert refusal("") == "Enter a password."


def test_length_counts_code_points_after_nfkc():
    # Eleven characters as typed, but "ﬁ" is two characters ("fi") once normalised.
    assert len("ﬁzzy kettle") == 11
    assert check_password("ﬁzzy kettle!", email=EMAIL) == "ﬁzzy kettle!"
    assert check_password("ﬁzzy kettle", email=EMAIL) == "ﬁzzy kettle"
    # Emoji count as one character each (no byte or UTF-16 counting).
    assert refusal("🐙" * 6 + "abcde") == "Use at least 12 characters."


def test_long_and_non_latin_passwords_are_accepted_unchanged():
    for password in (
        "x7" * 32,
        "the quick brown fox jumps over the lazy dog " * 4 + "and then some more words",
        "🐙🦑🐠🐡🐬🐳🐋🦈🐊🐢🦎🐍",
        "Щука плыветь",
        "パスワードはとても長いです",
    ):
        assert check_password(password, email=EMAIL) == password


def test_a_password_over_1024_characters_is_refused():
    assert refusal("ab" * 513) == "Use at most 1,024 characters."
    assert check_password("ab" * 512, email=EMAIL) == "ab" * 512


def test_the_email_address_or_its_local_part_is_refused():
    for password in ("ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM", "Ada.Lovelace"):
        assert refusal(password, min_length=8) == "Don't use your email address as your password."
    assert refusal("ada.lovelace", email="  Ada.Lovelace@Example.com ", min_length=8).startswith(
        "Don't use your email"
    )


def test_without_an_email_only_the_other_rules_apply():
    assert check_password("ada.lovelace@example.com", email=None) == "ada.lovelace@example.com"


def test_one_repeated_character_is_refused():
    for password in ("a" * 12, "🐙" * 20, " " * 40):
        assert refusal(password) == "This password is one character repeated; choose another."


def test_lone_surrogates_are_refused_rather_than_failing_to_hash():
    assert "not valid text" in refusal("abcdefghijk\ud800")


def test_normalise_is_nfkc():
    assert normalise("ﬁve ①") == "five 1"
    assert normalise("e\u0301") == "é"


def test_a_long_password_is_never_truncated_when_hashed():
    password = "correct horse battery staple " * 7  # 203 characters
    stored = hash_password(password)
    assert verify_password(stored, password)
    assert not verify_password(stored, password + "x")
    assert not verify_password(stored, password[:-1])
    assert not verify_password(stored, password[:72])  # bcrypt's limit, for example


def test_a_100_character_password_verifies_only_with_the_whole_string():
    password = "".join(chr(ord("a") + i % 26) for i in range(100))
    stored = hash_password(password)
    assert verify_password(stored, password)
    for prefix in (64, 72, 99):
        assert not verify_password(stored, password[:prefix])


def test_a_password_and_one_more_character_hash_differently():
    password = "q" * 63 + "r"
    assert not verify_password(hash_password(password), password + "x")
    assert not verify_password(hash_password(password + "x"), password)


def test_a_ligature_password_verifies_when_typed_as_plain_letters():
    stored = hash_password("ﬁne ﬂour sifter")
    assert verify_password(stored, "fine flour sifter")
    assert verify_password(stored, "ﬁne ﬂour sifter")
    assert not verify_password(stored, "fine flour sifters")


def test_a_composed_accent_verifies_when_typed_decomposed():
    stored = hash_password("caf\u00e9 au lait s'il vous pla\u00eet")
    assert verify_password(stored, "cafe\u0301 au lait s'il vous plai\u0302t")


def test_a_hash_made_before_normalisation_still_verifies():
    from portal import passwords

    legacy = passwords._hasher.hash("ﬁne ﬂour sifter")  # stored as typed, not normalised
    assert verify_password(legacy, "ﬁne ﬂour sifter")
    assert not verify_password(legacy, "ﬁne ﬂour sifters")


def test_verify_without_a_hash_is_false():
    assert not verify_password(None, GOOD)
