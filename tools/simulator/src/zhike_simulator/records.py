"""A generated record (text, as a source system holds it) → the SourceRecord a source system's
adapter sends to identity's LinkSourceRecord.

The generator's records are messy on purpose (1980年5月3日, 男/女/M/F/1/2, a legacy 15-digit ID):
dates and genders are parsed the way identity's batch resolver reads the same text, and a value
that cannot be read is left out, as an adapter would leave it out. The service may still refuse
a field (an ID number with a bad check character): the sender then links the record without it.
"""

from __future__ import annotations

import datetime as dt

from google.type import date_pb2

from zhike.identity.v1 import party_pb2
from zhike_identity.domain.model import Gender
from zhike_identity.domain.normalise import Unusable, infer_id_kind, parse_date, parse_gender
from zhike_identity.evaluation.dataset import InputRow

_ID_TYPES = frozenset(party_pb2.IdType.keys())


def source_record(row: InputRow) -> party_pb2.SourceRecord:
    message = party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(source_system=row.source, source_record_id=row.source_id),
        full_name=row.full_name,
        phone=row.phone,
        email=row.email,
        address=row.address,
    )
    if row.id_number:
        kind = row.id_type.upper() or infer_id_kind(row.id_number) or "OTHER"
        name = f"ID_TYPE_{kind}"
        message.id_type = (
            party_pb2.IdType.Value(name) if name in _ID_TYPES else party_pb2.ID_TYPE_OTHER
        )
        message.id_number = row.id_number
    born = _birth_date(row.birth_date)
    if born is not None:
        message.birth_date.CopyFrom(date_pb2.Date(year=born.year, month=born.month, day=born.day))
    gender = _gender(row.gender)
    if gender is not None:
        message.gender = party_pb2.GENDER_MALE if gender is Gender.MALE else party_pb2.GENDER_FEMALE
    return message


def _birth_date(text: str) -> dt.date | None:
    """The date, or None when there is none or it cannot be read (then it is not sent)."""
    if not text:
        return None
    try:
        return parse_date(text)
    except Unusable:
        return None


def _gender(text: str) -> Gender | None:
    if not text:
        return None
    try:
        return parse_gender(text)
    except Unusable:
        return None
