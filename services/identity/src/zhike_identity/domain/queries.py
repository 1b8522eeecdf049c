"""Reading parties: a party with its golden record, its history, and parties found by a value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from zhike_identity.domain.golden import golden_record
from zhike_identity.domain.matching.blocking import index_key
from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity.domain.model import HistoryEntry, PartyView, SourceRecordKey
from zhike_identity.domain.normalise import (
    Unusable,
    normalise_email,
    normalise_id,
    normalise_name,
    normalise_phone,
)
from zhike_identity.domain.parties import features_of, surviving_party
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.validation import validate_key
from zhike_runtime.errors import NotFound
from zhike_runtime.validation import Violations


@dataclass(frozen=True)
class PartyQuery:
    """One FindParties criterion; exactly one is set."""

    source_record: SourceRecordKey | None = None
    id_type: str = ""
    id_number: str = ""
    phone: str = ""
    email: str = ""
    full_name: str = ""
    birth_date: dt.date | None = None


class PartyQueries:
    """GetParty, GetPartyHistory and FindParties: reads, never writes."""

    def __init__(
        self,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        clock: Callable[[], dt.datetime],
        *,
        zone: dt.tzinfo,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._zone = zone  # the bank's: the date an ID number's birth date is checked against

    async def get_party(self, party_id: str) -> PartyView:
        _require_uuid("party_id", party_id)
        async with self._unit_of_work() as uow:
            surviving = await surviving_party(uow, party_id)
            state = await uow.parties.get(surviving)
            assert state is not None
            members = await uow.records.of_parties([surviving])
        ordered = tuple(
            sorted(
                members, key=lambda m: (m.evidence.at, m.key.source_system, m.key.source_record_id)
            )
        )
        golden = golden_record([(m, features_of(m)) for m in ordered])
        return PartyView(surviving, state.created_at, ordered, golden)

    async def party_history(self, party_id: str) -> list[HistoryEntry]:
        _require_uuid("party_id", party_id)
        async with self._unit_of_work() as uow:
            if await uow.parties.get(party_id) is None:
                raise NotFound("party", party_id)
            return await uow.history.of_party(party_id)

    async def find_parties(self, query: PartyQuery) -> list[str]:
        key, matches = _query_key(query, self._clock().astimezone(self._zone).date())
        async with self._unit_of_work() as uow:
            if query.source_record is not None:
                found = await uow.records.get(query.source_record)
                records = [found] if found else []
            else:
                records = await uow.records.with_blocking_keys([key], exclude=None)
            party_ids: list[str] = []
            for stored in records:
                if matches is not None and not matches(features_of(stored)):
                    continue
                surviving = await surviving_party(uow, stored.party_id)
                if surviving not in party_ids:
                    party_ids.append(surviving)
        return party_ids


def _require_uuid(field: str, value: str) -> None:
    v = Violations()
    v.uuid(field, value)
    v.raise_if_any()


# FindPartiesRequest's criteria as the request names them (the order of `given` below).
_CRITERIA = (
    "source_record",
    "id_number.id_number",
    "phone",
    "email",
    "name_and_birth_date.full_name",
)


def _query_key(
    query: PartyQuery, today: dt.date
) -> tuple[str, Callable[[RecordFeatures], bool] | None]:
    """The blocking key that finds a query's records, and a filter for the rest of it."""
    v = Violations()
    given = [
        bool(query.source_record),
        bool(query.id_number),
        bool(query.phone),
        bool(query.email),
        bool(query.full_name),
    ]
    if sum(given) != 1:
        v.add("by", "set exactly one criterion")
        v.raise_if_any()
    unusable = ""
    try:
        if query.source_record is not None:
            validate_key(v, "source_record", query.source_record)
            v.raise_if_any()
            return "", None
        if query.id_number:
            kind = query.id_type or "RESIDENT_ID"
            document = normalise_id(kind, query.id_number, today)
            if document.kind == "RESIDENT_ID" and not document.valid:
                v.add("id_number.id_number", "not a valid resident ID number (check character)")
                v.raise_if_any()
            return f"id:{document.kind}:{document.number}", None
        if query.phone:
            return index_key(f"ph:{normalise_phone(query.phone).e164}"), None
        if query.email:
            return index_key(f"em:{normalise_email(query.email)}"), None
        name = normalise_name(query.full_name)
    except Unusable as error:
        unusable = error.reason
    if unusable:
        # Raised outside the except block: the parser's error, which may quote the value,
        # stays out of the violation's chain (and so out of traces).
        field = next(f for f, on in zip(_CRITERIA, given, strict=True) if on)
        v.add(field, f"not usable: {unusable}")
        v.raise_if_any()
        raise AssertionError("unreachable: a violation was added")
    if query.birth_date is None:
        v.add("name_and_birth_date.birth_date", "is required with a name")
        v.raise_if_any()
    born = query.birth_date
    return index_key(f"nm:{name.full}"), lambda f: f.birth_date == born
