"""PRC resident identity numbers (GB 11643-1999): check character, legacy 15-digit form.

18 characters: 6-digit region, 8-digit birth date, 3-digit sequence (odd = male), and an
ISO 7064 MOD 11-2 check character (0-9 or X). Numbers issued before 1999 have 15 digits (2-digit
year, no check character) and convert to 18.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# ASCII only: str.isdigit() also accepts "①", "²" and other digit-like characters.
_LEGACY = re.compile(r"[0-9]{15}")
_CURRENT = re.compile(r"[0-9]{17}[0-9X]")


@dataclass(frozen=True)
class ResidentId:
    number: str  # 18 characters, upper-case X
    birth_date: dt.date
    male: bool


class InvalidResidentId(ValueError):
    """The reason names what is wrong: length, characters, birth date or check character."""


def check_character(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def parse_resident_id(raw: str, today: dt.date | None = None) -> ResidentId:
    number = raw.replace(" ", "").replace("\u3000", "").upper()
    if len(number) == 15:
        if not _LEGACY.fullmatch(number):
            raise InvalidResidentId("a 15-digit number may hold digits only")
        first17 = number[:6] + "19" + number[6:]
        number = first17 + check_character(first17)
    if len(number) != 18:
        raise InvalidResidentId(f"must have 18 characters (or 15 legacy digits), got {len(number)}")
    first17, check = number[:17], number[17]
    if not _CURRENT.fullmatch(number):
        raise InvalidResidentId("must be 17 digits followed by a digit or X")
    if number[0] == "0":
        raise InvalidResidentId("region code cannot start with 0")
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidResidentId("birth date part is not a calendar date") from None
    today = today or dt.date.today()
    if birth > today or birth.year < today.year - 150:
        raise InvalidResidentId("birth date part is in the future or over 150 years ago")
    if check_character(first17) != check:
        raise InvalidResidentId("check character does not match (ISO 7064 MOD 11-2)")
    return ResidentId(number=number, birth_date=birth, male=int(number[16]) % 2 == 1)
