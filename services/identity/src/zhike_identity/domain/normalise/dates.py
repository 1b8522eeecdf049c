"""Birth dates and gender codes in the forms bank records really hold."""

from __future__ import annotations

import datetime as dt
import re

from zhike_identity.domain.model import Gender
from zhike_identity.domain.normalise.errors import Unusable
from zhike_identity.domain.normalise.text import clean, is_placeholder

MAX_AGE_YEARS = 150

# A trailing time of day, as exports from DATETIME columns carry it: "1980-05-03 00:00:00".
# ASCII digits only: NFKC has already folded full-width ones, and \d would also take Arabic-Indic.
_TIME_OF_DAY = re.compile(
    r"[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_SEPARATED = re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})")
_CHINESE = re.compile(r"([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})[日号]?")
_COMPACT = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
# Dates that systems write when the real one is unknown: 1900-01-01 (and Excel's epoch, which
# shows as 1899-12-30 or -31). A customer born on them would be over 120 years old.
_SENTINEL_DATES = frozenset({dt.date(1900, 1, 1), dt.date(1899, 12, 31), dt.date(1899, 12, 30)})

_GENDERS: dict[str, Gender | None] = {
    "m": Gender.MALE,
    "male": Gender.MALE,
    "男": Gender.MALE,
    "男性": Gender.MALE,
    "1": Gender.MALE,  # GB/T 2261.1-2003
    "f": Gender.FEMALE,
    "female": Gender.FEMALE,
    "女": Gender.FEMALE,
    "女性": Gender.FEMALE,
    "2": Gender.FEMALE,
    # GB/T 2261.1's "unknown" (0) and "not stated" (9), and the words for them: a known
    # absence of a value rather than a bad one.
    "0": None,
    "9": None,
    "未知": None,
    "不详": None,
    "未知的性别": None,
    "未说明": None,
    "未说明的性别": None,
    "unknown": None,
    "u": None,
    "x": None,  # ICAO passports' unspecified sex
}


def parse_date(raw: str, today: dt.date | None = None) -> dt.date:
    """A date written year first: 1980-05-03, 19800503, 1980/5/3, 1980.5.3, 1980年5月3日.

    Full-width digits and a trailing time of day are accepted; impossible dates, dates in the
    future or more than 150 years ago, and sentinels such as 1900-01-01 are not.
    """
    text = clean(raw)
    if not text:
        raise Unusable("empty")
    if is_placeholder(text):
        raise Unusable("placeholder")
    if len(text) > 40:
        raise Unusable("too_long", f"{len(text)} characters")
    text = _TIME_OF_DAY.sub("", text).replace(" ", "")
    match = _SEPARATED.fullmatch(text)
    if match:
        parts = (match[1], match[3], match[4])
    else:
        match = _CHINESE.fullmatch(text) or _COMPACT.fullmatch(text)
        if match is None:
            raise Unusable("unknown_format", "expected year, month and day, year first")
        parts = (match[1], match[2], match[3])
    if set("".join(parts)) == {"0"}:
        raise Unusable("placeholder")  # 0000-00-00
    try:
        date = dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        raise Unusable("bad_date", "not a calendar date") from None
    if date in _SENTINEL_DATES:
        raise Unusable("placeholder")
    today = today or dt.date.today()
    if date > today or date.year < today.year - MAX_AGE_YEARS:
        raise Unusable("out_of_range", "in the future or more than 150 years ago")
    return date


def parse_gender(raw: str) -> Gender | None:
    """Gender, or None for a code that says it is unknown; Unusable for any other text."""
    text = clean(raw).lower()
    if not text:
        raise Unusable("empty")
    if text.isascii() and text.isdigit():
        text = text.lstrip("0") or "0"  # "01" from zero-padded code columns
    if text in _GENDERS:
        return _GENDERS[text]
    if is_placeholder(text):
        raise Unusable("placeholder")
    if len(text) > 20:
        raise Unusable("too_long", f"{len(text)} characters")
    raise Unusable("unknown_format", "expected M/F, 男/女, 1/2 (GB/T 2261.1) or male/female")
