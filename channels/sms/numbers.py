"""Normalise phone numbers to E.164 and mask them for logs.

Kannel treats spaces in ``to`` as recipient separators (``+86 138 0000 0001`` became four SMS),
so every number must be normalised here before it reaches the gateway.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["E164_RE", "mask", "normalize"]

#: What :func:`normalize` returns: ``+``, a country code not starting with 0, 7-15 digits in all.
E164_RE = re.compile(r"\+[1-9]\d{6,14}")
_CN_MOBILE_RE = re.compile(r"1[3-9]\d{9}")
# Mainland service, short and premium-rate prefixes (10086, 106xx SMS ports, 95xxx, 96xxx, 12xxx).
_CN_SERVICE_PREFIXES = ("10", "11", "12", "95", "96")
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212().]")


def normalize(number: str, default_country: str = "86") -> str:
    """Return ``number`` in E.164 form (``+8613812345678``) or raise ``ValueError``.

    Accepts spaces, dashes, dots, parentheses and full-width forms (NFKC), with ``+CC``, ``00CC``
    or, for the default country, a bare ``CC`` prefix (only ``86`` + 11 digits is recognised as
    such, since mainland mobiles never start with 86) or a national number with an optional
    trunk ``0``. Numbers in +86 must be mainland mobiles (``1[3-9]`` + 9 digits); short codes,
    service and premium-rate numbers, landlines and anything with letters are rejected. Trade-off:
    other countries only get a length check (7-15 digits), not a per-country numbering plan.
    """
    if not default_country.isdigit() or default_country.startswith("0"):
        raise ValueError(f"default_country must be a country calling code, got {default_country!r}")
    text = unicodedata.normalize("NFKC", number).strip()
    if not text:
        raise ValueError("phone number is empty")
    if any(ch.isalpha() for ch in text):
        raise ValueError(f"phone number {number!r} contains letters")
    compact = _SEPARATORS.sub("", text)
    if not re.fullmatch(r"\+?\d+", compact):
        raise ValueError(f"phone number {number!r} contains unexpected characters")

    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    elif default_country == "86" and compact.startswith("86") and len(compact) == 13:
        digits = compact
    else:
        digits = default_country + compact.removeprefix("0")

    if digits.startswith("0"):
        raise ValueError(f"phone number {number!r} has an invalid country code")
    if len(digits) < 7:
        raise ValueError(
            f"phone number {number!r} is too short (short codes cannot receive broadcasts)"
        )
    if len(digits) > 15:
        raise ValueError(f"phone number {number!r} is too long for E.164 (max 15 digits)")
    if digits.startswith("86"):
        national = digits[2:]
        if not _CN_MOBILE_RE.fullmatch(national):
            if national.startswith(_CN_SERVICE_PREFIXES):
                reason = "a short code, service or premium-rate number"
            elif len(national) < 11:
                reason = "too short for a mainland China mobile number"
            else:
                reason = "not a mainland China mobile number (expected 1[3-9] + 9 digits)"
            raise ValueError(f"phone number {number!r} is {reason}")
    return "+" + digits


def mask(e164: str) -> str:
    """Return ``e164`` with four middle digits hidden (``+86138****5678``) for logs and admin views.

    Never raises, because it runs in logging paths: anything that is not E.164 is masked
    entirely except its last two characters. Trade-off: the country code and operator prefix stay
    visible, which is useful for support and not enough to identify a resident.
    """
    if not E164_RE.fullmatch(e164):
        return "****" + e164[-2:] if len(e164) >= 6 else "****"
    return e164[: max(len(e164) - 8, 1)] + "****" + e164[-4:]
