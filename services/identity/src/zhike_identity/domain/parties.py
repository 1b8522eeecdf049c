"""The party operations the use cases share: following a merged party to its survivor,
merging parties, moving records between parties, and publishing a party's golden record.
Each works inside the caller's unit of work and never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from zhike_identity.domain.golden import golden_record
from zhike_identity.domain.matching.features import RecordFeatures, extract_features
from zhike_identity.domain.model import (
    Decider,
    GoldenRecordChanged,
    HistoryEntry,
    LinkEvidence,
    PartiesMerged,
    PartyChange,
    PartyForwardingEnded,
    SourceRecordKey,
    SourceRecordMoved,
    StoredRecord,
)
from zhike_identity.domain.placement import raw_record
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_runtime.errors import NotFound


def features_of(stored: StoredRecord) -> RecordFeatures:
    """A stored record's features, normalised again (about 40 µs). Not cached: at a million
    records candidates rarely repeat, and a cache of a hundred thousand entries held ~900,000
    objects that each full garbage collection walked, pausing the service for half a second."""
    return extract_features(raw_record(stored.record))


def record_lock_name(key: SourceRecordKey) -> str:
    """The lock a change to this record holds (on PostgreSQL) until its transaction ends."""
    return f"record:{key.source_system}:{key.source_record_id}"


async def surviving_party(uow: IdentityUnitOfWork, party_id: str) -> str:
    """Follows merge forwarding to the party that holds the records today; a retired id whose
    forwarding a split ended (`forwarding_after_split`) is not found."""
    seen: set[str] = set()
    current = party_id
    while True:
        state = await uow.parties.get(current)
        if state is None or state.retired_into == current:
            raise NotFound("party", party_id)
        if state.retired_into is None:
            return current
        if current in seen:
            raise AssertionError(f"party forwarding loops at {current}")
        seen.add(current)
        current = state.retired_into


async def surviving_parties(uow: IdentityUnitOfWork, party_ids: Sequence[str]) -> dict[str, str]:
    """`surviving_party` of each party, in one query: a merge moves the records with it, so the
    party a record is read in has rarely been merged away since (one that has is followed)."""
    unique = list(dict.fromkeys(party_ids))
    states = await uow.parties.get_many(unique)
    survivors: dict[str, str] = {}
    for party_id in unique:
        state = states.get(party_id)
        if state is not None and state.retired_into is None:
            survivors[party_id] = party_id
        else:
            survivors[party_id] = await surviving_party(uow, party_id)
    return survivors


# The history entries that name the records a party held when it was retired (merged, emptied by
# moves) or that left it earlier.
_RECORDS_LEFT = frozenset(
    {PartyChange.MERGED_INTO, PartyChange.RECORD_MOVED_OUT, PartyChange.SPLIT}
)


def forwarding_after_split(
    held: set[SourceRecordKey], leaving: set[SourceRecordKey], kept: str, new_party: str
) -> str | None:
    """Where a retired id that led to a party being split leads afterwards, from the records it
    brought there (`held`, those still in the party before the split): to the new party if all
    of them leave, to the party kept if none does, and nowhere (None) if they part — then it
    names no one person any more, and leading to either could show a customer's data to
    another."""
    moving = held & leaving
    if not moving:
        return kept
    if moving == held:
        return new_party
    return None


async def reroute_forwarding(
    uow: IdentityUnitOfWork,
    split_party: str,
    new_party: str,
    members: set[SourceRecordKey],
    leaving: set[SourceRecordKey],
    now: dt.datetime,
    steward: str,
    reason: str,
) -> None:
    """After a split, every retired id that led to the split party (also along a chain of
    merges) leads where `forwarding_after_split` says, straight there: with history, and
    PartiesMerged (or PartyForwardingEnded) with its new forwarding version, so the consumers'
    forwarding follows identity's whatever order the events arrive in."""
    leads_to: dict[str, str | None] = {}  # each retired id found → where it leads now
    frontier, seen = [split_party], {split_party}
    while frontier:
        found = [
            state
            for state in await uow.parties.forwarding_into(frontier)
            if state.party_id not in seen and state.retired_into != state.party_id
        ]
        frontier = [state.party_id for state in found]
        seen.update(frontier)
        leads_to.update((state.party_id, state.retired_into) for state in found)
    for party_id, current in leads_to.items():
        held = {
            key
            for entry in await uow.history.of_party(party_id)
            if entry.change in _RECORDS_LEFT
            for key in entry.source_records
        } & members
        target = forwarding_after_split(held, leaving, split_party, new_party)
        if target == split_party and current == split_party:
            continue
        # None is stored as the party itself: retired, leading nowhere.
        forwarding = await uow.parties.retire(party_id, target or party_id, now)
        if target is None:
            uow.record(PartyForwardingEnded(party_id, now, forwarding, split_party))
        else:
            uow.record(PartiesMerged(target, (party_id,), now, (forwarding,)))
        note = (
            f"{reason} (its records left with the split)"
            if target == new_party
            else f"{reason} (forwarding ended: its records were split apart)"
            if target is None
            else reason
        )
        await uow.history.append(
            [
                HistoryEntry(
                    party_id,
                    PartyChange.MERGED_INTO if target else PartyChange.SPLIT,
                    now,
                    Decider.STEWARD,
                    "",
                    steward,
                    target or split_party,
                    tuple(sorted(held, key=lambda k: (k.source_system, k.source_record_id))),
                    note,
                )
            ]
        )


async def merge(
    uow: IdentityUnitOfWork,
    survivor: str,
    retired: Sequence[str],
    now: dt.datetime,
    decided_by: Decider,
    steward: str,
    version: str,
    reason: str,
) -> list[str]:
    """Moves the retired parties' records into the survivor and retires them (forwarding to it),
    with their history and PartiesMerged. The caller publishes the survivor's golden record."""
    if not retired:
        return []
    records = await uow.records.of_parties(list(retired))
    await uow.records.move([r.key for r in records], survivor, None)
    entries = []
    forwarding: list[int] = []
    for party_id in retired:
        forwarding.append(await uow.parties.retire(party_id, survivor, now))
        moved = tuple(r.key for r in records if r.party_id == party_id)
        entries.append(
            HistoryEntry(
                party_id,
                PartyChange.MERGED_INTO,
                now,
                decided_by,
                version,
                steward,
                survivor,
                moved,
                reason,
            )
        )
        entries.append(
            HistoryEntry(
                survivor,
                PartyChange.ABSORBED,
                now,
                decided_by,
                version,
                steward,
                party_id,
                moved,
                reason,
            )
        )
    await uow.history.append(entries)
    uow.record(PartiesMerged(survivor, tuple(retired), now, tuple(forwarding)))
    return list(retired)


async def move(
    uow: IdentityUnitOfWork,
    keys: Sequence[SourceRecordKey],
    source: str,
    target: str,
    now: dt.datetime,
    decided_by: Decider,
    steward: str,
    version: str,
    evidence: LinkEvidence | None,
) -> None:
    """Moves records from one party to another, each with SourceRecordMoved. An emptied party is
    retired into the target; otherwise its golden record is published again."""
    versions = await uow.records.move(keys, target, evidence)
    for key in keys:
        uow.record(SourceRecordMoved(key, source, target, now, versions.get(key, 0)))
    await uow.history.append(
        [
            HistoryEntry(
                source,
                PartyChange.RECORD_MOVED_OUT,
                now,
                decided_by,
                version,
                steward,
                target,
                tuple(keys),
            ),
            HistoryEntry(
                target,
                PartyChange.RECORD_MOVED_IN,
                now,
                decided_by,
                version,
                steward,
                source,
                tuple(keys),
            ),
        ]
    )
    if not await uow.records.of_parties([source]):
        # An emptied party forwards to where its last record went, for every consumer too.
        forwarding = await uow.parties.retire(source, target, now)
        uow.record(PartiesMerged(target, (source,), now, (forwarding,)))
        await uow.history.append(
            [
                HistoryEntry(
                    source,
                    PartyChange.MERGED_INTO,
                    now,
                    decided_by,
                    version,
                    steward,
                    target,
                    (),
                    "its last record moved",
                )
            ]
        )
    else:
        await publish_golden(uow, [source], now)


async def publish_golden(
    uow: IdentityUnitOfWork, party_ids: Iterable[str], now: dt.datetime
) -> None:
    """Recomputes each party's golden record from its records and stages GoldenRecordChanged."""
    for party_id in party_ids:
        members = await uow.records.of_parties([party_id])
        if members:
            golden = golden_record([(m, features_of(m)) for m in members])
            uow.record(GoldenRecordChanged(party_id, golden, now))
