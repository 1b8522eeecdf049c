"""What the identity use cases need from storage, as Protocols (storage implements them)."""

from __future__ import annotations

import datetime as dt
from types import TracebackType
from typing import Protocol, Self

from zhike_identity.domain.model import DomainEvent, Party, PartyKey, SourceRecord, SourceRecordKey


class PartyRepository(Protocol):
    async def add(self, party_id: str, at: dt.datetime) -> None: ...
    async def get(self, party_id: str) -> Party | None: ...


class PartyKeyRepository(Protocol):
    async def find(self, key: PartyKey) -> str | None: ...
    async def claim(self, key: PartyKey, party_id: str) -> None:
        """Records that the key belongs to the party; raises ConcurrentUpdate if taken meanwhile."""
        ...


class SourceRecordRepository(Protocol):
    async def party_of(self, key: SourceRecordKey) -> str | None: ...
    async def add(self, record: SourceRecord, party_id: str, at: dt.datetime) -> None: ...
    async def update(self, record: SourceRecord, at: dt.datetime) -> None: ...


class IdentityUnitOfWork(Protocol):
    """One transaction: state changes and their events commit together or not at all."""

    @property
    def parties(self) -> PartyRepository: ...
    @property
    def party_keys(self) -> PartyKeyRepository: ...
    @property
    def source_records(self) -> SourceRecordRepository: ...

    def record(self, event: DomainEvent) -> None: ...
    async def commit(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
