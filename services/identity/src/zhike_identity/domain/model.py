"""The identity domain's vocabulary: source records, parties and the events they produce."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class IdType(enum.IntEnum):
    """Kinds of identity document. Values are the contract's numbers (zhike.identity.v1.IdType)."""

    RESIDENT_ID = 1
    PASSPORT = 2
    HK_MACAO_PERMIT = 3
    TAIWAN_PERMIT = 4
    FOREIGN_PERMANENT_RESIDENT = 5
    OTHER = 6


class Gender(enum.IntEnum):
    MALE = 1
    FEMALE = 2


@dataclass(frozen=True)
class SourceRecordKey:
    source_system: str
    source_record_id: str


@dataclass(frozen=True)
class SourceRecordInput:
    """A source record as a caller sent it, before validation (enums as raw numbers)."""

    source_system: str
    source_record_id: str
    full_name: str = ""
    id_type: int = 0
    id_number: str = ""
    phone: str = ""
    email: str = ""
    birth_date: tuple[int, int, int] | None = None  # (year, month, day) as sent
    gender: int = 0
    address: str = ""


@dataclass(frozen=True)
class SourceRecord:
    """A validated source record; `id_number` is normalised (no spaces, upper-case X)."""

    key: SourceRecordKey
    full_name: str
    id_type: IdType | None
    id_number: str
    phone: str
    email: str
    birth_date: dt.date | None
    gender: Gender | None
    address: str


@dataclass(frozen=True)
class LinkOutcome:
    party_id: str
    party_created: bool


@dataclass(frozen=True)
class Party:
    party_id: str
    source_records: tuple[SourceRecordKey, ...]


@dataclass(frozen=True)
class PartyKey:
    """An identifier that, on its own, proves two records are the same person."""

    kind: str
    value: str


@dataclass(frozen=True)
class PartyCreated:
    party_id: str
    at: dt.datetime


@dataclass(frozen=True)
class SourceRecordLinked:
    party_id: str
    source_record: SourceRecordKey
    at: dt.datetime


DomainEvent = PartyCreated | SourceRecordLinked
