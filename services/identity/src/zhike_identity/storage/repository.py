"""The unit of work over SQLAlchemy: one transaction over identity's repositories (records.py,
parties.py, decisions.py, history.py) and the outbox. Repositories never commit; the unit does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from zhike_identity.domain.model import DomainEvent
from zhike_identity.storage.decisions import SqlDecisionStore, SqlReviewStore
from zhike_identity.storage.history import SqlHistoryStore
from zhike_identity.storage.parties import SqlPartyStore
from zhike_identity.storage.protection import RecordProtection
from zhike_identity.storage.records import SqlRecordStore
from zhike_runtime.db import Database
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.unit_of_work import UnitOfWork


class SqlIdentityUnitOfWork(UnitOfWork):
    """The runtime's unit of work (state and outbox rows in one transaction, advisory locks,
    conflicts as ConcurrentUpdate) with identity's repositories and its event codec."""

    def __init__(
        self,
        database: Database,
        encode: Callable[[DomainEvent], OutgoingEvent],
        on_commit: Callable[[], None],
        protection: RecordProtection,
    ) -> None:
        super().__init__(database, on_commit=on_commit)
        self._encode = encode
        self._protection = protection

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        session, dialect = self.session, self.dialect
        self.records = SqlRecordStore(session, dialect, self._protection)
        self.parties = SqlPartyStore(session, self._protection)
        self.decisions = SqlDecisionStore(session, dialect)
        self.reviews = SqlReviewStore(session, dialect)
        self.history = SqlHistoryStore(session)
        return self

    def record(self, event: DomainEvent) -> None:
        self.stage(self._encode(event))
