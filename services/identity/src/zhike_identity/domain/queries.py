"""Reading parties: a party with its golden record, its history, and parties found by a value."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from zhike_identity.domain.golden import golden_record
from zhike_identity.domain.matching.blocking import (
    STRONG_PREFIXES,
    index_key,
    name_and_birth_date_keys,
)
from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity.domain.matching.resolver import BLOCK_LIMIT, STRONG_BLOCK_LIMIT
from zhike_identity.domain.model import HistoryEntry, PartyView, SourceRecordKey
from zhike_identity.domain.normalise import (
    Unusable,
    normalise_email,
    normalise_id,
    normalise_name,
    normalise_phone,
)
from zhike_identity.domain.parties import features_of, surviving_parties, surviving_party
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.validation import validate_key
from zhike_runtime.errors import FailedPrecondition, NotFound
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
        """The parties of the records the query finds, in the order of their records' keys.
        FailedPrecondition (naming the criterion, never its value) when more records hold it
        than a search reads: a list cut short would pass for the whole answer."""
        lookup = _lookup(query, self._clock().astimezone(self._zone).date())
        async with self._unit_of_work() as uow:
            if query.source_record is not None:
                found = await uow.records.get(query.source_record)
                records = [found] if found else []
            else:
                # One more than it may read: enough to tell that the value is held by more.
                records = await uow.records.with_every_key(lookup.keys, lookup.limit + 1)
                if len(records) > lookup.limit:
                    raise FailedPrecondition(
                        f"too many records match to list them all (more than {lookup.limit}): "
                        "search by another criterion, such as an ID number",
                        lookup.criterion,
                    )
            if lookup.matches is not None:
                records = [s for s in records if lookup.matches(features_of(s))]
            survivors = await surviving_parties(uow, [s.party_id for s in records])
        return list(dict.fromkeys(survivors[s.party_id] for s in records))


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


@dataclass(frozen=True)
class _Lookup:
    """How a query finds its records: those indexed under every one of `keys`, at most `limit`
    of them (as linking reads a block: a value held by more is too common to tell customers
    apart), then those `matches` keeps. `criterion` is the request's field, for errors."""

    criterion: str
    keys: list[str]
    limit: int
    matches: Callable[[RecordFeatures], bool] | None = None


def _limited(criterion: str, keys: list[str]) -> _Lookup:
    strong = all(k.startswith(STRONG_PREFIXES) for k in keys)
    return _Lookup(criterion, keys, STRONG_BLOCK_LIMIT if strong else BLOCK_LIMIT)


def _lookup(query: PartyQuery, today: dt.date) -> _Lookup:
    """The keys that find a query's records, and a filter for the rest of it."""
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
            return _Lookup("source_record", [], 1)
        if query.id_number:
            kind = query.id_type or "RESIDENT_ID"
            document = normalise_id(kind, query.id_number, today)
            if document.kind == "RESIDENT_ID" and not document.valid:
                v.add("id_number.id_number", "not a valid resident ID number (check character)")
                v.raise_if_any()
            return _limited("id_number", [f"id:{document.kind}:{document.number}"])
        if query.phone:
            return _limited("phone", [index_key(f"ph:{normalise_phone(query.phone).e164}")])
        if query.email:
            return _limited("email", [index_key(f"em:{normalise_email(query.email)}")])
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
    born = query.birth_date
    if born is None:
        v.add("name_and_birth_date.birth_date", "is required with a name")
        v.raise_if_any()
        raise AssertionError("unreachable: a violation was added")
    # By the name and the birth date together, not by the name alone: 王伟 may be tens of
    # thousands of records, 王伟 born on one day a handful.
    lookup = _limited("name_and_birth_date", name_and_birth_date_keys(name, born))
    return dataclasses.replace(lookup, matches=lambda f: f.birth_date == born)
