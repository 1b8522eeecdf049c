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
    merged_party_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Party:
    party_id: str
    source_records: tuple[SourceRecordKey, ...]


@dataclass(frozen=True)
class PartyCreated:
    party_id: str
    at: dt.datetime


@dataclass(frozen=True)
class SourceRecordLinked:
    party_id: str
    source_record: SourceRecordKey
    at: dt.datetime
    # The record's link version (RecordStore.move): consumers order a record's links by it.
    link_version: int = 1


# --- Resolution: evidence, history, reviews, and the events they produce --------------------


class Decider(enum.StrEnum):
    MODEL = "model"
    STEWARD = "steward"
    SOURCE_KEY = "source_key"


@dataclass(frozen=True)
class LinkEvidence:
    """Why a record is in its party: who decided, the record it matched, the weight, the model."""

    decided_by: Decider
    matched: SourceRecordKey | None
    weight: float | None
    model_version: str
    at: dt.datetime
    steward: str = ""


@dataclass(frozen=True)
class StoredRecord:
    key: SourceRecordKey
    party_id: str
    record: SourceRecord
    evidence: LinkEvidence
    updated_at: dt.datetime


@dataclass(frozen=True)
class KeyCounts:
    """Per candidate-index key: the records holding it (what limits a block, as in the batch
    resolver), and the parties holding it (what term frequencies and shared-value rules count)."""

    records: dict[str, int]
    parties: dict[str, int]


@dataclass(frozen=True)
class PartyMember:
    """A record's place in its party, without its values: enough for guardrails."""

    key: SourceRecordKey
    party_id: str
    resident_id: str | None  # stored resident ID numbers were validated, so they are valid
    kept_apart: bool  # a steward's "never link" names this record


@dataclass(frozen=True)
class PartyState:
    party_id: str
    created_at: dt.datetime
    retired_into: str | None


class PartyChange(enum.StrEnum):
    CREATED = "created"
    RECORD_LINKED = "record_linked"
    RECORD_MOVED_IN = "record_moved_in"
    RECORD_MOVED_OUT = "record_moved_out"
    MERGED_INTO = "merged_into"
    ABSORBED = "absorbed"
    SPLIT = "split"


@dataclass(frozen=True)
class HistoryEntry:
    party_id: str
    change: PartyChange
    at: dt.datetime
    decided_by: Decider
    model_version: str
    steward: str = ""
    other_party_id: str | None = None
    source_records: tuple[SourceRecordKey, ...] = ()
    reason: str = ""


class ReviewStatus(enum.StrEnum):
    OPEN = "open"
    LINKED = "linked"
    KEPT_APART = "kept_apart"


@dataclass(frozen=True)
class LinkReview:
    review_id: str
    record_a: SourceRecordKey
    record_b: SourceRecordKey
    weight: float
    status: ReviewStatus
    created_at: dt.datetime


class LinkDecisionKind(enum.StrEnum):
    NEVER = "never"
    ALWAYS = "always"


@dataclass(frozen=True)
class GoldenValue:
    value: str  # masked where it is an identifier
    source: SourceRecordKey
    basis: str


@dataclass(frozen=True)
class GoldenRecord:
    full_name: GoldenValue | None
    birth_date: GoldenValue | None
    gender: GoldenValue | None
    id_number: GoldenValue | None
    phones: tuple[GoldenValue, ...]
    emails: tuple[GoldenValue, ...]
    address: GoldenValue | None


@dataclass(frozen=True)
class PartyView:
    party_id: str
    created_at: dt.datetime
    records: tuple[StoredRecord, ...]
    golden: GoldenRecord


@dataclass(frozen=True)
class SourceRecordMoved:
    source_record: SourceRecordKey
    from_party_id: str
    to_party_id: str
    at: dt.datetime
    link_version: int = 0


@dataclass(frozen=True)
class PartiesMerged:
    surviving_party_id: str
    retired_party_ids: tuple[str, ...]
    at: dt.datetime
    # One per retired party, in its order: where the id leads is versioned like a record's link.
    forwarding_versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class PartyForwardingEnded:
    """A retired id leads nowhere any more (a split parted the records it brought)."""

    party_id: str
    at: dt.datetime
    forwarding_version: int
    kept_party_id: str  # the split party: the id's records that stayed are there


@dataclass(frozen=True)
class PartySplit:
    party_id: str
    new_party_id: str
    source_records: tuple[SourceRecordKey, ...]
    at: dt.datetime
    link_versions: tuple[int, ...] = ()  # one per source record, in its order


@dataclass(frozen=True)
class GoldenRecordChanged:
    party_id: str
    golden: GoldenRecord
    at: dt.datetime


DomainEvent = (
    PartyCreated
    | SourceRecordLinked
    | SourceRecordMoved
    | PartiesMerged
    | PartyForwardingEnded
    | PartySplit
    | GoldenRecordChanged
)
