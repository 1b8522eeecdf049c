"""Validation of incoming source records: every offending field is named at once."""

from __future__ import annotations

import datetime as dt
import re
from typing import TypeVar

from zhike_identity.domain.model import (
    Gender,
    IdType,
    SourceRecord,
    SourceRecordInput,
    SourceRecordKey,
)
from zhike_identity.domain.normalise import is_placeholder
from zhike_identity.domain.resident_id import InvalidResidentId, parse_resident_id
from zhike_runtime.validation import Violations

E = TypeVar("E", IdType, Gender)

_PREFIX = "source_record"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_CHARS = re.compile(r"[0-9+\-() ]+")


def validate_source_record(
    candidate: SourceRecordInput, today: dt.date | None = None
) -> SourceRecord:
    today = today or dt.date.today()
    v = Violations()
    source_system = v.token(f"{_PREFIX}.key.source_system", candidate.source_system)
    source_record_id = v.text(
        f"{_PREFIX}.key.source_record_id", candidate.source_record_id, required=True, max_length=128
    )
    full_name = v.text(
        f"{_PREFIX}.full_name", _unless_placeholder(candidate.full_name), max_length=200
    )
    id_type = _enum(v, f"{_PREFIX}.id_type", IdType, candidate.id_type)
    # Case-mapped before the checks: "ß".upper() is "SS", and the limit holds for what is stored.
    id_number = v.text(
        f"{_PREFIX}.id_number", candidate.id_number.replace(" ", "").upper(), max_length=64
    )
    resident_birth: dt.date | None = None
    if id_number and candidate.id_type == 0:
        v.add(f"{_PREFIX}.id_type", "is required when id_number is given")
    if id_type is IdType.RESIDENT_ID and id_number:
        try:
            resident = parse_resident_id(id_number, today)
            id_number, resident_birth = resident.number, resident.birth_date
        except InvalidResidentId as error:
            v.add(f"{_PREFIX}.id_number", f"not a valid resident ID number: {error}")
    elif id_type is not None and not candidate.id_number.strip():
        v.add(f"{_PREFIX}.id_number", "is required when id_type is given")
    phone = v.text(f"{_PREFIX}.phone", _unless_placeholder(candidate.phone), max_length=32)
    if phone and not _PHONE_CHARS.fullmatch(phone):
        v.add(f"{_PREFIX}.phone", "may hold only digits, spaces, '+', '-' and parentheses")
    email = v.text(f"{_PREFIX}.email", _unless_placeholder(candidate.email).lower(), max_length=254)
    if email and not _EMAIL.fullmatch(email):
        v.add(f"{_PREFIX}.email", "is not an e-mail address")
    birth_date = _date(v, f"{_PREFIX}.birth_date", candidate.birth_date, today)
    if birth_date and resident_birth and birth_date != resident_birth:
        v.add(f"{_PREFIX}.birth_date", "differs from the birth date in the resident ID number")
    gender = _enum(v, f"{_PREFIX}.gender", Gender, candidate.gender)
    address = v.text(f"{_PREFIX}.address", _unless_placeholder(candidate.address), max_length=500)
    v.raise_if_any()
    return SourceRecord(
        key=SourceRecordKey(source_system, source_record_id),
        full_name=full_name,
        id_type=id_type,
        id_number=id_number,
        phone=phone,
        email=email,
        birth_date=birth_date,
        gender=gender,
        address=address,
    )


def _unless_placeholder(value: str) -> str:
    """Source systems fill blanks with "无", "N/A", "-": that is no value, not a bad one."""
    return "" if is_placeholder(value) else value


def _enum(v: Violations, field: str, kind: type[E], value: int) -> E | None:
    if value == 0:
        return None
    try:
        return kind(value)
    except ValueError:
        v.add(field, f"unknown value {value}")
        return None


def _date(
    v: Violations, field: str, value: tuple[int, int, int] | None, today: dt.date
) -> dt.date | None:
    if value is None:
        return None
    try:
        date = dt.date(*value)
    except ValueError:
        v.add(field, "is not a calendar date")  # never quoted: a birth date is personal
        return None
    if date > today or date.year < today.year - 150:
        v.add(field, "must not be in the future or more than 150 years ago")
        return None
    return date


def validate_key(v: Violations, field: str, key: SourceRecordKey) -> None:
    """Checks a source record key given in a request (for lookups and steward operations)."""
    v.token(f"{field}.source_system", key.source_system)
    v.text(f"{field}.source_record_id", key.source_record_id, required=True, max_length=128)
