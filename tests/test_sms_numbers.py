"""Test channels.sms.numbers: E.164 normalisation and masking."""

from __future__ import annotations

import pytest

from channels.sms.numbers import mask, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "+8613812345678"),
        ("138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("(138) 1234 5678", "+8613812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("+86-13812345678", "+8613812345678"),
        ("0086 13812345678", "+8613812345678"),
        ("8613812345678", "+8613812345678"),
        ("86 138 1234 5678", "+8613812345678"),
        ("013812345678", "+8613812345678"),
        ("１３８１２３４５６７８", "+8613812345678"),
        ("＋８６　１３８－１２３４－５６７８", "+8613812345678"),
        ("（１３８）１２３４５６７８", "+8613812345678"),
        ("  19912345678\n", "+8619912345678"),
        ("+852 9123 4567", "+85291234567"),
        ("00852-91234567", "+85291234567"),
        ("+1 (415) 555-2671", "+14155552671"),
    ],
)
def test_normalize_accepts(raw: str, expected: str) -> None:
    """Common and full-width spellings of a number normalise to the same E.164 string."""
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "default_country", "expected"),
    [
        ("030 1234567", "49", "+49301234567"),
        ("91234567", "852", "+85291234567"),
    ],
)
def test_normalize_other_default_country(raw: str, default_country: str, expected: str) -> None:
    """National numbers take the given default country, dropping a trunk 0."""
    assert normalize(raw, default_country) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("138abc45678", "letters"),
        ("CityAlert", "letters"),
        ("138*1234#5678", "unexpected"),
        ("+86+13812345678", "unexpected"),
        ("12345", "short code"),
        ("10086", "short code"),
        ("95588", "short code"),
        ("106901234567", "short code"),
        ("+86 12345678901", "short code"),
        ("1381234567", "too short"),
        ("+86 010 1234 5678", "not a mainland China mobile"),
        ("+86 23812345678", "not a mainland China mobile"),
        ("+86 138123456789", "not a mainland China mobile"),
        ("+861", "too short"),
        ("+12345", "too short"),
        ("+1234567890123456", "too long"),
        ("+0123456789", "country code"),
    ],
)
def test_normalize_rejects(raw: str, message: str) -> None:
    """Letters, wrong lengths, non-mobile mainland numbers and short codes raise ValueError."""
    with pytest.raises(ValueError, match=message):
        normalize(raw)


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+8613812345678", "+86138****5678"),
        ("+85291234567", "+852****4567"),
        ("+14155552671", "+141****2671"),
        ("+6831234", "+****1234"),
        ("not a number", "****er"),
        ("", "****"),
    ],
)
def test_mask(e164: str, expected: str) -> None:
    """Masking hides four middle digits and never raises, even on garbage."""
    assert mask(e164) == expected


def test_mask_hides_the_middle_of_a_normalized_number() -> None:
    """A normalised mainland number shows only its prefix and last four digits."""
    masked = mask(normalize("138 1234 5678"))
    assert masked == "+86138****5678"
    assert "1234" not in masked.replace("5678", "")
