"""Telephone numbers to E.164, with their type, read by libphonenumber (zhike_runtime.phones).

Accepts the forms bank records hold: "+86 138 1234 5678", "0086-13812345678", "86-138…",
"(010) 6234-5678", "0755-12345678 转 801" (the extension is dropped), full-width digits, and
any country's numbers with their country code. What is kept is a person's number: valid (in a
range a numbering plan allocates, so "120 1234 5678" is dropped as "unallocated"; a 7-digit
landline from before its area moved to 8 digits is kept) and a mobile, fixed-line or personal number, not a company's 400/800 service
number. Placeholders clerks type (13800000000, 010-88888888, 12345678901) are dropped as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zhike_identity.domain.normalise.errors import Unusable
from zhike_identity.domain.normalise.text import clean, is_placeholder
from zhike_runtime.phones import PhoneKind, PhoneUnreadable, parse_phone

MAX_PHONE_LENGTH = 40

_EXTENSION = re.compile(r"(?:转|分机|ext\.?|x|#).*$", re.IGNORECASE)
# Several numbers in one field ("13812345678/13912345678"): the first one is taken.
_LIST_SEPARATOR = re.compile(r"[/、;,，；]")
_FORMATTING = str.maketrans("", "", " -‐‑‒–—().")
_DIALLED = re.compile(r"\+?[0-9]+")
# A mainland number written without its area code: 7 or 8 digits that are not a mobile's.
_LOCAL_ONLY = re.compile(r"[2-9][0-9]{6,7}")
# A mainland area code (2 or 3 digits without its 0) and a 7-digit local number.
_OLDER_FIXED_LINE = re.compile(r"[2-9][0-9]{1,2}[2-9][0-9]{6}")
_SERVICE_NUMBERS = frozenset({"+8613800138000"})  # China Mobile's service centre, a classic filler
_ASCENDING = "01234567890123456789"
_DESCENDING = _ASCENDING[::-1]


@dataclass(frozen=True)
class Phone:
    e164: str  # "+8613812345678", "+861062345678"
    kind: PhoneKind  # MOBILE, FIXED_LINE, FIXED_LINE_OR_MOBILE, VOIP or PERSONAL_NUMBER

    @property
    def mobile(self) -> bool:
        return self.kind is PhoneKind.MOBILE


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
    if _is_filler(text.lstrip("+")):
        raise Unusable("placeholder")
    if _LOCAL_ONLY.fullmatch(text):
        raise Unusable("no_area_code", "a local number without its area code")
    try:
        parsed = parse_phone(text)
    except PhoneUnreadable as error:
        reason = "bad_characters" if error.reason == "not_a_number" else error.reason
        raise Unusable(reason, error.detail) from None
    # 1…, not 10… (Beijing's area code): a mainland mobile with a digit too many or too few.
    mobile_like = parsed.national[:1] == "1" and not parsed.national.startswith("10")
    if parsed.region == "CN" and mobile_like and len(parsed.national) != 11:
        raise Unusable("bad_length", "mainland mobile numbers have 11 digits")
    kind = parsed.kind
    prefix = 3 if kind is PhoneKind.MOBILE else parsed.area_code_length
    if kind is PhoneKind.UNKNOWN:
        if parsed.region != "CN" or mobile_like or not _OLDER_FIXED_LINE.fullmatch(parsed.national):
            raise Unusable("unallocated", "not in a range its numbering plan allocates")
        # A 7-digit number after an area code that dials 8 digits today: a landline from before
        # the area moved to 8 digits (Shanghai 1995, Hangzhou 2002…). It no longer rings, but an
        # old passbook's number still identifies its holder, so it stays evidence.
        kind, prefix = PhoneKind.FIXED_LINE, len(parsed.national) - 7
    if kind is PhoneKind.SERVICE:
        raise Unusable("service_number", "a company's toll-free, shared-cost or premium number")
    # The subscriber part after the mobile prefix or the area code: one digit repeated there
    # (13800000000, 010-88888888) is a filler, not a customer's number.
    if (prefix and _is_run(parsed.national[prefix:])) or parsed.e164 in _SERVICE_NUMBERS:
        raise Unusable("placeholder")
    return Phone(parsed.e164, kind)


def _is_filler(digits: str) -> bool:
    """A whole number that is one digit repeated (00000000000) or counted (12345678901)."""
    return len(digits) >= 7 and (_is_run(digits) or digits in _ASCENDING or digits in _DESCENDING)


def _is_run(digits: str) -> bool:
    """One digit repeated: the subscriber part of 13800000000 or 010-88888888. (A counted tail
    such as 13812345678 is left alone: it is a real, if popular, number.)"""
    return len(set(digits)) == 1
