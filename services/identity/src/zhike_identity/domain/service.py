"""Identity use cases. Each owns its transaction: state and events commit once, together."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from zhike_identity.domain.model import (
    IdType,
    LinkOutcome,
    Party,
    PartyCreated,
    PartyKey,
    SourceRecord,
    SourceRecordInput,
    SourceRecordLinked,
)
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.validation import validate_source_record
from zhike_runtime.errors import ConcurrentUpdate, NotFound
from zhike_runtime.validation import Violations

# Two callers linking matching records at once: the loser of the unique-key race retries and then
# finds the winner's party.
_ATTEMPTS = 3


def resident_id_key(record: SourceRecord) -> PartyKey | None:
    """A valid resident ID number identifies one person; other documents are not trusted yet."""
    if record.id_type is IdType.RESIDENT_ID and record.id_number:
        return PartyKey("RESIDENT_ID", record.id_number)
    return None


class IdentityService:
    def __init__(
        self,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        new_party_id: Callable[[], str],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._unit_of_work = unit_of_work
        self._new_party_id = new_party_id
        self._clock = clock

    async def link_source_record(self, candidate: SourceRecordInput) -> LinkOutcome:
        """Stores the record and links it to a party: the one already holding the same source key
        or the same valid resident ID number, else a new one."""
        record = validate_source_record(candidate, self._clock().date())
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._link(record)
            except ConcurrentUpdate:
                if attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _link(self, record: SourceRecord) -> LinkOutcome:
        now = self._clock()
        async with self._unit_of_work() as uow:
            existing = await uow.source_records.party_of(record.key)
            if existing is not None:
                await uow.source_records.update(record, now)
                await uow.commit()
                return LinkOutcome(existing, party_created=False)
            key = resident_id_key(record)
            party_id = await uow.party_keys.find(key) if key else None
            created = party_id is None
            if party_id is None:
                party_id = self._new_party_id()
                await uow.parties.add(party_id, now)
                uow.record(PartyCreated(party_id, now))
                if key is not None:
                    await uow.party_keys.claim(key, party_id)
            await uow.source_records.add(record, party_id, now)
            uow.record(SourceRecordLinked(party_id, record.key, now))
            await uow.commit()
            return LinkOutcome(party_id, party_created=created)

    async def get_party(self, party_id: str) -> Party:
        v = Violations()
        v.uuid("party_id", party_id)
        v.raise_if_any()
        async with self._unit_of_work() as uow:
            party = await uow.parties.get(party_id)
        if party is None:
            raise NotFound("party", party_id)
        return party
