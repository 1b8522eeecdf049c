"""Telephone numbers read with libphonenumber's metadata (the `phonenumbers` package): E.164,
whether the number is possible (its length) and valid (in a range a numbering plan allocates),
and its type (mobile, fixed line, toll-free, ...).

One reader for every service: identity normalises what source systems send, notifications reads
back the numbers identity holds. What a service accepts (valid only, which types) is its own
policy; this module only reads the number.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType, ValidationResult

# Numbers written without a country code are mainland Chinese.
DEFAULT_REGION = "CN"
# A mainland mobile with nothing but digits around it ("13912345678", "+8613912345678"): most
# numbers a bank holds. Its country code and national number are plain, so it skips the general
# parser (about three quarters of the time parse_phone takes) and goes straight to the metadata.
_MAINLAND_MOBILE = re.compile(r"(?:\+86|0086|86)?(1[3-9][0-9]{9})")


class PhoneKind(enum.StrEnum):
    MOBILE = "mobile"
    FIXED_LINE = "fixed_line"
    # Plans that do not tell the two apart (the North American plan).
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
    VOIP = "voip"
    PERSONAL_NUMBER = "personal_number"
    # Numbers a company answers, not a person: 400/800 numbers, premium rate and the like.
    SERVICE = "service"
    # Not in an allocated range.
    UNKNOWN = "unknown"


_KINDS = {
    PhoneNumberType.MOBILE: PhoneKind.MOBILE,
    PhoneNumberType.FIXED_LINE: PhoneKind.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: PhoneKind.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.VOIP: PhoneKind.VOIP,
    PhoneNumberType.PERSONAL_NUMBER: PhoneKind.PERSONAL_NUMBER,
    PhoneNumberType.TOLL_FREE: PhoneKind.SERVICE,
    PhoneNumberType.PREMIUM_RATE: PhoneKind.SERVICE,
    PhoneNumberType.SHARED_COST: PhoneKind.SERVICE,
    PhoneNumberType.UAN: PhoneKind.SERVICE,
    PhoneNumberType.VOICEMAIL: PhoneKind.SERVICE,
    PhoneNumberType.PAGER: PhoneKind.SERVICE,
}


class PhoneUnreadable(ValueError):
    """Not a telephone number at all, or one of an impossible length. `reason` is a short
    name ("bad_length", "unknown_country", "not_a_number"); the text never holds the number."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ParsedPhone:
    e164: str  # "+8613812345678"
    region: str  # "CN", "HK", ... ("ZZ" when the country code is not a region's)
    kind: PhoneKind  # UNKNOWN when not valid
    national: str  # the national significant number: "13812345678", "1062345678"
    area_code_length: int  # digits of `national` that are a geographical area code (0: none)

    @property
    def valid(self) -> bool:
        return self.kind is not PhoneKind.UNKNOWN


_LENGTH_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "no number of this length in its plan",
}


def parse_phone(dialled: str, region: str = DEFAULT_REGION) -> ParsedPhone:
    """Reads a dialled number ("+86 138 1234 5678", "010-62345678"). Raises PhoneUnreadable
    when it is no number or its length is impossible; an unallocated number comes back with
    kind UNKNOWN. Cached: the same number recurs on a customer's records."""
    mobile = _MAINLAND_MOBILE.fullmatch(dialled) if region == "CN" else None
    if mobile is not None:
        return _mainland_mobile(mobile[1])
    return _parse(dialled, region)


@functools.lru_cache(maxsize=1 << 16)
def _mainland_mobile(national: str) -> ParsedPhone:
    return _read(PhoneNumber(country_code=86, national_number=int(national)))


@functools.lru_cache(maxsize=1 << 16)
def _parse(dialled: str, region: str) -> ParsedPhone:
    try:
        number = phonenumbers.parse(dialled, region)
    except NumberParseException as error:
        if error.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            raise PhoneUnreadable("unknown_country") from None
        if error.error_type == NumberParseException.NOT_A_NUMBER:
            raise PhoneUnreadable("not_a_number") from None
        raise PhoneUnreadable("bad_length", "too short or too long") from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        raise PhoneUnreadable("unknown_country")
    if possible in _LENGTH_REASONS:
        raise PhoneUnreadable("bad_length", _LENGTH_REASONS[possible])
    return _read(number)


def _read(number: PhoneNumber) -> ParsedPhone:
    kind = _KINDS.get(phonenumbers.number_type(number), PhoneKind.UNKNOWN)
    return ParsedPhone(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(number) or "ZZ",
        kind=kind,
        national=phonenumbers.national_significant_number(number),
        # Only a fixed line has one (and working it out checks the number once more).
        area_code_length=phonenumbers.length_of_geographical_area_code(number)
        if kind in (PhoneKind.FIXED_LINE, PhoneKind.FIXED_LINE_OR_MOBILE)
        else 0,
    )
