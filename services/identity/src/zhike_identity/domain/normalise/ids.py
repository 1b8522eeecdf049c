"""Identity document numbers: one normal form per kind, and whether the format checks out.

A resident ID number that fails only its check character (one mistyped digit) is kept with
`valid=False`: it is still evidence, of lower weight, but never a key. Anything that cannot be an
ID number of its kind at all is rejected with a reason.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from zhike_identity.domain.normalise.errors import Unusable
from zhike_identity.domain.normalise.text import clean, is_placeholder
from zhike_identity.domain.resident_id import (
    InvalidResidentId,
    check_character,
    parse_resident_id,
)

KINDS = (
    "RESIDENT_ID",
    "PASSPORT",
    "HK_MACAO_PERMIT",
    "TAIWAN_PERMIT",
    "FOREIGN_PERMANENT_RESIDENT",
    "OTHER",
)
MAX_NUMBER_LENGTH = 32

_SEPARATORS = str.maketrans("", "", " -‐‑‒–—")
_ALPHANUMERIC = re.compile(r"[0-9A-Z]+")
# Region codes start 1-8; 9 is the 2023 foreign permanent resident card, which shares the shape
# (accepted under RESIDENT_ID when it carries a good check character, never inferred as one).
_RESIDENT_SHAPE = re.compile(r"[1-9][0-9]{14}|[1-9][0-9]{16}[0-9X]")
_ASCENDING = "01234567890123456789"
_DESCENDING = _ASCENDING[::-1]
# Chinese ordinary passports: E + 8 digits or E + letter + 7 digits (older G/D/S/P series too);
# foreign passports are 5-9 letters and digits (the ICAO machine-readable zone holds 9).
_PASSPORT = re.compile(r"(?=[A-Z]*[0-9])[0-9A-Z]{5,9}")
# Mainland Travel Permit for Hong Kong and Macao Residents (回乡证): H or M, then the holder's
# permanent 8-digit number; the older cards add 2 digits counting renewals.
_HK_MACAO = re.compile(r"([HM][0-9]{8})([0-9]{2})?")
_TAIWAN = re.compile(r"[0-9]{8}")
# Foreign Permanent Resident ID: the 2004 card has 3 letters (nationality) + 12 digits; the 2023
# card has 18 characters shaped like a resident ID number, starting with 9, with the same
# GB 11643 check character.
_FOREIGN_OLD = re.compile(r"[A-Z]{3}[0-9]{12}")
_FOREIGN_NEW = re.compile(r"9[0-9]{16}[0-9X]")
_OTHER = re.compile(r"[0-9A-Z]{4,32}")


@dataclass(frozen=True)
class IdentityDocument:
    kind: str  # one of KINDS
    number: str  # no spaces or hyphens, upper-case; a resident ID in its 18-character form
    valid: bool  # format (and check character where there is one) verified for the kind
    birth_date: dt.date | None  # from a resident ID number whose date is real
    male: bool | None  # from a resident ID number's sequence digit (odd = male)


def normalise_id(kind: str, raw: str, today: dt.date | None = None) -> IdentityDocument:
    """Normalise `raw` as a document of `kind` (an IdType name; "" means infer it, else OTHER)."""
    kind = kind.strip().upper()
    if kind and kind not in KINDS:
        raise Unusable("unknown_kind", kind[:40])
    number = clean(raw).translate(_SEPARATORS).upper()
    if not number:
        raise Unusable("empty")
    if len(number) > MAX_NUMBER_LENGTH:
        raise Unusable("too_long", f"{len(number)} characters")
    if is_placeholder(number) or _is_junk_number(number):
        raise Unusable("placeholder")
    if not _ALPHANUMERIC.fullmatch(number):
        raise Unusable("bad_characters", "an ID number holds only letters and digits")
    if not kind:
        kind = infer_id_kind(number) or "OTHER"
    if kind == "RESIDENT_ID":
        return _resident_id(number, today or dt.date.today())
    if kind == "HK_MACAO_PERMIT":
        permit = _HK_MACAO.fullmatch(number)
        if permit:
            # Renewals change the last two digits of an old card; the 9 before them identify the
            # holder for life, so that is the number two records must share.
            return IdentityDocument(kind, permit[1], True, None, None)
        return _checked_by_format(kind, number, None)
    if kind == "FOREIGN_PERMANENT_RESIDENT":
        valid = bool(_FOREIGN_OLD.fullmatch(number)) or (
            bool(_FOREIGN_NEW.fullmatch(number)) and check_character(number[:17]) == number[17]
        )
        return _checked_by_format(kind, number, valid)
    pattern = {"PASSPORT": _PASSPORT, "TAIWAN_PERMIT": _TAIWAN}.get(kind, _OTHER)
    return _checked_by_format(kind, number, bool(pattern.fullmatch(number)))


def infer_id_kind(raw: str) -> str | None:
    """RESIDENT_ID for a 15- or 18-character number shaped like one with a real date, else None."""
    try:
        number = clean(raw).translate(_SEPARATORS).upper()
    except Unusable:
        return None
    if not _RESIDENT_SHAPE.fullmatch(number) or number[0] == "9":
        return None
    return "RESIDENT_ID" if _birth_date(_to_18(number)) is not None else None


def _checked_by_format(kind: str, number: str, valid: bool | None) -> IdentityDocument:
    if len(number) < 4:
        raise Unusable("bad_length", f"{len(number)} characters")
    return IdentityDocument(kind, number, bool(valid), None, None)


def _resident_id(number: str, today: dt.date) -> IdentityDocument:
    try:
        parsed = parse_resident_id(number, today)
    except InvalidResidentId:
        pass  # not valid; the checks below say whether it is still usable evidence, and why not
    else:
        return IdentityDocument("RESIDENT_ID", parsed.number, True, parsed.birth_date, parsed.male)
    if len(number) not in (15, 18):
        raise Unusable("bad_length", f"{len(number)} characters, expected 18 (or 15)")
    if not _RESIDENT_SHAPE.fullmatch(number):
        raise Unusable("unknown_format", "expected 17 digits and a digit or X")
    number = _to_18(number)
    birth = _birth_date(number)
    if birth is None:
        raise Unusable("bad_date", "the birth date part is not a calendar date")
    if birth > today or birth.year < today.year - 150:
        raise Unusable("out_of_range", "the birth date part is in the future or over 150 years ago")
    # Only the check character is wrong: most likely one mistyped digit elsewhere. Keep it as
    # weak evidence; the birth date and sex it states are still worth comparing.
    return IdentityDocument("RESIDENT_ID", number, False, birth, int(number[16]) % 2 == 1)


def _to_18(number: str) -> str:
    if len(number) == 15:
        first17 = number[:6] + "19" + number[6:]
        return first17 + check_character(first17)
    return number


def _birth_date(number18: str) -> dt.date | None:
    try:
        return dt.date(int(number18[6:10]), int(number18[10:12]), int(number18[12:14]))
    except ValueError:
        return None


def _is_junk_number(number: str) -> bool:
    """One character repeated (000000000000000000) or a run like 123456789012345678."""
    return len(number) >= 4 and (
        len(set(number)) == 1 or number in _ASCENDING or number in _DESCENDING
    )
