"""Telephone numbers to E.164, mainland mobile versus landline.

Accepts the forms bank records hold: "+86 138 1234 5678", "0086-13812345678", "86-138…",
"(010) 6234-5678", "0755-12345678 转 801" (the extension is dropped), full-width digits. Hong Kong,
Macau and Taiwan numbers are recognised by their country codes; other international numbers are
kept as E.164 when their length is plausible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zhike_identity.domain.normalise.errors import Unusable
from zhike_identity.domain.normalise.text import clean, is_placeholder

MAX_PHONE_LENGTH = 40

_EXTENSION = re.compile(r"(?:转|分机|ext\.?|x|#).*$", re.IGNORECASE)
# Several numbers in one field ("13812345678/13912345678"): the first one is taken.
_LIST_SEPARATOR = re.compile(r"[/、;,，；]")
_FORMATTING = str.maketrans("", "", " -‐‑‒–—().")
_DIALLED = re.compile(r"\+?[0-9]+")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_SERVICE_NUMBERS = frozenset({"13800138000"})  # China Mobile's service centre, a classic filler
_ASCENDING = "01234567890123456789"
_DESCENDING = _ASCENDING[::-1]


@dataclass(frozen=True)
class Phone:
    e164: str  # "+8613812345678", "+861062345678"
    mobile: bool  # a mobile number (mainland 1[3-9]…, or a Hong Kong/Macau/Taiwan mobile)


def normalise_phone(raw: str) -> Phone:
    text = clean(raw)
    if not text:
        raise Unusable("empty")
    if len(text) > MAX_PHONE_LENGTH:
        raise Unusable("too_long", f"{len(text)} characters")
    if is_placeholder(text):
        raise Unusable("placeholder")
    text = _LIST_SEPARATOR.split(text, maxsplit=1)[0]
    text = _EXTENSION.sub("", text).translate(_FORMATTING)
    if not _DIALLED.fullmatch(text):
        raise Unusable("bad_characters", "a phone number holds digits, spaces, + - ( ) only")
    digits = text.lstrip("+")
    if _is_filler(digits):
        raise Unusable("placeholder")
    if text.startswith("+"):
        return _international(digits)
    if digits.startswith("00"):
        return _international(digits[2:])
    if len(digits) in (12, 13) and digits.startswith("86") and digits[2] != "0":
        return _mainland(digits[2:], with_country_code=True)  # "86-13812345678", "86 10 6234…"
    if len(digits) in (13, 14) and digits.startswith("860"):
        return _mainland(digits[2:], with_country_code=True)  # "86 010 6234 5678"
    return _mainland(digits, with_country_code=False)


def _international(digits: str) -> Phone:
    if digits.startswith("86"):
        return _mainland(digits[2:], with_country_code=True)
    if digits.startswith("852") or digits.startswith("853"):
        local = digits[3:]
        if len(local) != 8:
            raise Unusable("bad_length", "Hong Kong and Macau numbers have 8 digits")
        # Hong Kong mobiles start 4-9 (landlines 2-3); Macau mobiles start 6 (landlines 2-8).
        mobile = local[0] in "456789" if digits.startswith("852") else local[0] == "6"
        return Phone("+" + digits, mobile)
    if digits.startswith("886"):
        local = digits[3:].removeprefix("0")
        if not 8 <= len(local) <= 9:
            raise Unusable("bad_length", "Taiwan numbers have 8 or 9 digits")
        return Phone("+886" + local, local.startswith("9") and len(local) == 9)
    if not 8 <= len(digits) <= 15 or digits[0] == "0":
        raise Unusable("bad_length", "an international number has 8-15 digits")
    return Phone("+" + digits, False)


def _mainland(national: str, *, with_country_code: bool) -> Phone:
    if with_country_code and not national.startswith("1"):
        # "+86 (0)10 …": the trunk 0 is sometimes written after the country code.
        national = national.removeprefix("0")
    elif not with_country_code:
        if len(national) == 11 and national.startswith("1"):
            pass  # a mobile, checked below
        elif national.startswith("0"):
            national = national[1:]
        elif 7 <= len(national) <= 8:
            raise Unusable("no_area_code", "a local number without its area code")
        else:
            raise Unusable("bad_length", f"{len(national)} digits")
    if len(national) == 11 and national.startswith("1"):
        if not _MOBILE.fullmatch(national):
            raise Unusable("unknown_format", "mobile numbers start 13-19")
        if _is_run(national[3:]) or national in _SERVICE_NUMBERS:
            raise Unusable("placeholder")
        return Phone("+86" + national, True)
    # Area codes: 10 (Beijing) and 20-29 have two digits and 8-digit subscriber numbers; the
    # others have three digits and 7- or 8-digit subscriber numbers, which never start with 0 or 1.
    if national[:1] == "1" and not national.startswith("10"):
        raise Unusable("bad_length", f"{len(national)} digits")
    area_length = 2 if national[:1] in ("1", "2") else 3
    subscriber = national[area_length:]
    lengths = (8,) if area_length == 2 else (7, 8)
    if len(subscriber) not in lengths or national[:1] == "0":
        raise Unusable("bad_length", f"{len(national)} digits after the trunk 0")
    if subscriber[0] in "01":
        raise Unusable("unknown_format", "a subscriber number never starts with 0 or 1")
    if _is_run(subscriber):
        raise Unusable("placeholder")
    return Phone("+86" + national, False)


def _is_filler(digits: str) -> bool:
    """A whole number that is one digit repeated (00000000000) or counted (12345678901)."""
    return len(digits) >= 7 and (_is_run(digits) or digits in _ASCENDING or digits in _DESCENDING)


def _is_run(digits: str) -> bool:
    """One digit repeated: the subscriber part of 13800000000 or 010-88888888. (A counted tail
    such as 13812345678 is left alone: it is a real, if popular, number.)"""
    return len(set(digits)) == 1
