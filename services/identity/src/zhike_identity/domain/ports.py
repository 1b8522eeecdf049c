"""What the identity use cases need from storage, as Protocols (storage implements them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self

from zhike_identity.domain.model import (
    DomainEvent,
    HistoryEntry,
    KeyCounts,
    LinkDecisionKind,
    LinkEvidence,
    LinkReview,
    PartyMember,
    PartyState,
    ReviewStatus,
    SourceRecord,
    SourceRecordKey,
    StoredRecord,
)
from zhike_identity.domain.placement import StoredCandidate


class RecordStore(Protocol):
    async def get(self, key: SourceRecordKey) -> StoredRecord | None: ...
    async def add(
        self,
        record: SourceRecord,
        party_id: str,
        evidence: LinkEvidence,
        at: dt.datetime,
        blocking: Sequence[str] = (),
    ) -> None:
        """Stores a new record, indexed under its `blocking` keys (as `set_blocking_keys`)."""
        ...

    async def update(self, record: SourceRecord, at: dt.datetime) -> None: ...
    async def move(
        self, keys: Sequence[SourceRecordKey], party_id: str, evidence: LinkEvidence | None
    ) -> dict[SourceRecordKey, int]:
        """Puts the records in the party (keeping their evidence unless new evidence is given)
        and returns each one's new link version: one more than before, so a record's versions
        follow the order in which its party changes commit (a record starts at 1)."""
        ...

    async def of_parties(self, party_ids: Sequence[str]) -> list[StoredRecord]: ...
    async def with_every_key(self, keys: Sequence[str], limit: int) -> list[StoredRecord]:
        """The records indexed under every one of `keys`, in key order, at most `limit` of them:
        the work grows with what the narrowest key holds, never with a common value's block."""
        ...

    async def with_candidates(
        self, key: SourceRecordKey, keys: Sequence[str]
    ) -> tuple[StoredRecord | None, list[StoredCandidate]]:
        """The record stored under `key` (None if new) and the other records indexed under any
        of `keys`: one query where a link needs both.
        The candidates come as the matcher reads them, not as whole StoredRecords: a link
        reads dozens (about 20 at a million records, 50 at 20,000), and building each record
        with its evidence and enums cost more than comparing it."""
        ...

    async def set_blocking_keys(
        self, key: SourceRecordKey, blocking: Sequence[str], *, replacing: bool
    ) -> None:
        """Indexes the record under its keys; `replacing` drops its old keys first."""
        ...

    async def key_counts(self, keys: Sequence[str], by_party: Sequence[str] = ()) -> KeyCounts: ...
    async def keys_after(self, after: SourceRecordKey | None, limit: int) -> list[SourceRecordKey]:
        """The next `limit` record keys in key order (for walking the whole store)."""
        ...

    async def get_many(self, keys: Sequence[SourceRecordKey]) -> list[StoredRecord]: ...
    async def replace_blocking_keys(self, index: Mapping[SourceRecordKey, Sequence[str]]) -> int:
        """Re-indexes these records under exactly these keys; returns how many rows it dropped."""
        ...

    async def estimated_total(self) -> int: ...


class PartyStore(Protocol):
    async def add(self, party_id: str, at: dt.datetime) -> None: ...
    async def get(self, party_id: str) -> PartyState | None: ...
    async def get_many(self, party_ids: Sequence[str]) -> dict[str, PartyState]: ...
    async def with_members(
        self, party_ids: Sequence[str]
    ) -> tuple[dict[str, PartyState], list[PartyMember]]:
        """The parties and their records (keys, resident ID numbers, whether a steward's
        "never link" names them), in one query."""
        ...

    async def retire(self, party_id: str, into: str, at: dt.datetime) -> int:
        """`party_id` leads to `into` (itself: nowhere) from now on; returns its forwarding
        version, one more than before."""
        ...

    async def forwarding_into(self, party_ids: Sequence[str]) -> list[PartyState]:
        """The parties retired straight into one of these."""
        ...


class DecisionStore(Protocol):
    async def for_record(self, key: SourceRecordKey) -> dict[SourceRecordKey, LinkDecisionKind]: ...
    async def never_among(
        self, party_ids: Sequence[str]
    ) -> list[tuple[SourceRecordKey, SourceRecordKey]]:
        """The "never link" pairs with both records in these parties."""
        ...

    async def record(
        self,
        a: SourceRecordKey,
        b: SourceRecordKey,
        kind: LinkDecisionKind,
        steward: str,
        reason: str,
        at: dt.datetime,
    ) -> None: ...


class ReviewStore(Protocol):
    async def open(
        self, a: SourceRecordKey, b: SourceRecordKey, weight: float, at: dt.datetime
    ) -> None:
        """Queues a possible match unless that pair already has a review."""
        ...

    async def get(self, review_id: str) -> LinkReview | None: ...
    async def list_open(
        self, limit: int, after: tuple[dt.datetime, str] | None
    ) -> list[LinkReview]: ...
    async def close(
        self, review_id: str, status: ReviewStatus, steward: str, at: dt.datetime
    ) -> None: ...


class HistoryStore(Protocol):
    async def append(self, entries: Sequence[HistoryEntry]) -> None: ...
    async def of_party(self, party_id: str) -> list[HistoryEntry]: ...


class IdentityUnitOfWork(Protocol):
    """One transaction: state changes and their events commit together or not at all."""

    @property
    def records(self) -> RecordStore: ...
    @property
    def parties(self) -> PartyStore: ...
    @property
    def decisions(self) -> DecisionStore: ...
    @property
    def reviews(self) -> ReviewStore: ...
    @property
    def history(self) -> HistoryStore: ...

    async def lock(self, names: Sequence[str]) -> None:
        """Serialises writers touching the same blocking keys or parties (no-op where the store
        already serialises all writers)."""
        ...

    def record(self, event: DomainEvent) -> None: ...
    async def commit(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
