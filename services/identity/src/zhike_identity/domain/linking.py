"""Linking a source record: stored, scored against its candidates and placed in a party."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence

from zhike_identity.domain.golden import golden_record
from zhike_identity.domain.matching.blocking import STRONG_PREFIXES, blocking_keys, counting_keys
from zhike_identity.domain.matching.comparison import Frequencies
from zhike_identity.domain.matching.features import RawRecord, RecordFeatures, extract_features
from zhike_identity.domain.matching.model import MatchModel
from zhike_identity.domain.matching.resolver import BLOCK_LIMIT, SHARED_VALUE_LIMIT
from zhike_identity.domain.model import (
    Decider,
    GoldenRecordChanged,
    HistoryEntry,
    LinkDecisionKind,
    LinkEvidence,
    LinkOutcome,
    PartyChange,
    PartyCreated,
    SourceRecord,
    SourceRecordInput,
    SourceRecordKey,
    SourceRecordLinked,
    StoredRecord,
)
from zhike_identity.domain.parties import (
    features_of,
    merge,
    move,
    record_lock_name,
    surviving_party,
)
from zhike_identity.domain.placement import (
    Candidate,
    CandidateParty,
    place,
    raw_record,
    score_candidates,
)
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.term_frequencies import (
    StoreSize,
    frequency_counts,
    shared_value_keys,
    store_total,
)
from zhike_identity.domain.validation import validate_source_record
from zhike_runtime.errors import ConcurrentUpdate

# The loser of a race on the same keys retries, and then sees the winner's rows.
_ATTEMPTS = 3


class Linking:
    """LinkSourceRecord: a record stored and resolved to its party, in one transaction."""

    def __init__(
        self,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        new_party_id: Callable[[], str],
        clock: Callable[[], dt.datetime],
        model: MatchModel,
        *,
        zone: dt.tzinfo,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._new_party_id = new_party_id
        self._clock = clock
        self._zone = zone
        self._model = model
        self._store_size = StoreSize()

    async def link_source_record(self, candidate: SourceRecordInput) -> LinkOutcome:
        """Stores the record and resolves it: to the party it matches, merging the parties it
        bridges, or to a new party. An update of a known record is re-resolved and may move."""
        # Today is the bank's: a child born this morning in Shanghai is not born in the
        # future because it is still yesterday in UTC.
        today = self._clock().astimezone(self._zone).date()
        record = validate_source_record(candidate, today)
        raw = raw_record(record)
        features = extract_features(raw, today)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._link(record.key, record, raw, features)
            except ConcurrentUpdate:
                if attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _link(
        self, key: SourceRecordKey, record: SourceRecord, raw: RawRecord, features: RecordFeatures
    ) -> LinkOutcome:
        version = self._model.version
        keys = blocking_keys(features)
        async with self._unit_of_work() as uow:
            await uow.lock([record_lock_name(key), *keys])
            counts = await uow.records.key_counts(
                [*keys, *counting_keys(features)], by_party=shared_value_keys(features)
            )
            # Blocks are limited by their records, as in the batch resolver: a value held by more
            # records than BLOCK_LIMIT is rarer evidence than what the other keys bring.
            usable = [
                k
                for k in keys
                if k.startswith(STRONG_PREFIXES) or counts.records.get(k, 0) <= BLOCK_LIMIT
            ]
            existing, stored = await uow.records.with_candidates(key, usable)
            held = None
            if existing is not None:
                held = features if existing.record == record else features_of(existing)
            frequencies = Frequencies(
                frequency_counts(features, counts, held),
                store_total(await self._store_size.read(uow), held),
                SHARED_VALUE_LIMIT,
            )
            candidates = [Candidate(s.key, s.party_id, extract_features(s.raw)) for s in stored]
            # What was normalised stays at hand for the golden record: most of the party's
            # records were candidates, and normalising costs more than anything else here.
            known = {s.key: (s.raw, c.features) for s, c in zip(stored, candidates, strict=True)}
            known[key] = (raw, features)
            scored = score_candidates(self._model, features, candidates, frequencies)
            # Records are never deleted and a steward decides only about stored records, so a
            # record seen for the first time has no decisions: one query fewer on most links.
            decisions = await uow.decisions.for_record(key) if existing is not None else {}
            # Only the parties the record may join, be reviewed against or is kept from are read
            # and locked; a common name brings dozens of candidates that score far too low.
            counted = [
                (s.candidate.key, s.candidate.party_id)
                for s in scored
                if s.weight >= self._model.review_weight or s.candidate.key in decisions
            ]
            # The known record's own party is locked too: a steward's merge or split of it must
            # not land between this read and the record's move out of it.
            held_in = existing.party_id if existing else None
            if existing is not None:
                counted.append((key, existing.party_id))
            parties, forward, apart = await self._candidate_parties(uow, counted)
            # Read once the parties are locked, so that their changes are stamped in the order
            # they commit: the profile keeps the golden record with the latest time, and one
            # stamped before a lock it waited for would lose to the older one committed meanwhile.
            now = self._clock()
            if forward:
                scored = [
                    dataclasses.replace(
                        s,
                        candidate=dataclasses.replace(
                            s.candidate,
                            party_id=forward.get(s.candidate.party_id, s.candidate.party_id),
                        ),
                    )
                    for s in scored
                ]
            placement = place(
                self._model,
                features,
                scored,
                parties,
                never=frozenset(k for k, d in decisions.items() if d is LinkDecisionKind.NEVER),
                always=frozenset(k for k, d in decisions.items() if d is LinkDecisionKind.ALWAYS),
                apart=apart,
            )
            evidence = LinkEvidence(
                decided_by=Decider.MODEL,
                matched=placement.best.candidate.key if placement.best else None,
                weight=placement.best.weight if placement.best else None,
                model_version=version,
                at=now,
            )
            old_party = forward.get(held_in, held_in) if held_in else None
            target = placement.party_id
            created = False
            history: list[HistoryEntry] = []
            # A known record that matches nothing keeps its party if it is alone in it.
            if (
                target is None
                and old_party is not None
                and len(await uow.records.of_parties([old_party])) == 1
            ):
                target = old_party
            if target is None:
                target = self._new_party_id()
                created = True
                await uow.parties.add(target, now)
                uow.record(PartyCreated(target, now))
                history.append(
                    HistoryEntry(
                        target,
                        PartyChange.CREATED,
                        now,
                        Decider.MODEL,
                        version,
                        source_records=(key,),
                    )
                )
            merged = await merge(
                uow,
                target,
                placement.merge,
                now,
                Decider.MODEL,
                "",
                version,
                "bridged by a matching record",
            )
            indexed = [*keys, *counting_keys(features)]
            if existing is None:
                await uow.records.add(record, target, evidence, now, blocking=indexed)
                uow.record(SourceRecordLinked(target, key, now))
                history.append(
                    HistoryEntry(
                        target,
                        PartyChange.RECORD_LINKED,
                        now,
                        Decider.MODEL,
                        version,
                        source_records=(key,),
                    )
                )
            else:
                if existing.record != record:
                    # The same values sent again change nothing stored (not even `updated_at`,
                    # which orders the golden record's sources).
                    await uow.records.update(record, now)
                # Re-resolved: it stays, went along with a merge, or moves to its new match.
                if old_party is not None and old_party != target and old_party not in merged:
                    await move(
                        uow, [key], old_party, target, now, Decider.MODEL, "", version, evidence
                    )
            if existing is not None and existing.record != record:
                # (Keys of unchanged values are as stored; `zhike identity reindex` rebuilds them
                # after a release that changes how keys are made.)
                await uow.records.set_blocking_keys(key, indexed, replacing=True)
            await uow.history.append(history)
            for review in placement.reviews:
                await uow.reviews.open(key, review.candidate.key, review.weight, now)
            if created and not merged:
                # The new party holds this record alone: its golden record needs no query.
                alone = StoredRecord(key, target, record, evidence, now)
                uow.record(GoldenRecordChanged(target, golden_record([(alone, features)]), now))
            else:
                await _publish_golden_if_changed(
                    uow, target, existing, record, bool(merged), known, now
                )
            await uow.commit()
        return LinkOutcome(target, party_created=created, merged_party_ids=tuple(merged))

    async def _candidate_parties(
        self,
        uow: IdentityUnitOfWork,
        read: Sequence[tuple[SourceRecordKey, str]],
    ) -> tuple[dict[str, CandidateParty], dict[str, str], frozenset[frozenset[str]]]:
        """The parties of the records `read` (the candidates that count, and the record itself
        when it is stored, each with the party it was read in), locked, with their valid
        resident IDs; a map from any party merged away since the read to its survivor; and the
        pairs of these parties a steward has kept apart. ConcurrentUpdate (the link starts
        again) if a split or another link moved one of the records out meanwhile: the record
        would otherwise join the party its match just left, or leave one it is no longer in."""
        party_ids = sorted({party_id for _, party_id in read})
        if not party_ids:
            return {}, {}, frozenset()
        await uow.lock([f"party:{p}" for p in party_ids])
        states, members = await uow.parties.with_members(party_ids)
        forward = {
            p: p
            if p in states and states[p].retired_into is None
            else await surviving_party(uow, p)
            for p in party_ids
        }
        survivors = sorted(set(forward.values()))
        if set(survivors) != set(party_ids):
            await uow.lock([f"party:{p}" for p in survivors])
            states, members = await uow.parties.with_members(survivors)
        resident: dict[str, set[str]] = {p: set() for p in survivors}
        for member in members:
            if member.resident_id is not None:
                resident[member.party_id].add(member.resident_id)
        parties = {
            p: CandidateParty(p, states[p].created_at, frozenset(resident[p])) for p in survivors
        }
        party_of = {m.key: m.party_id for m in members}
        for key, read_in in read:
            if party_of.get(key) != forward.get(read_in, read_in):
                raise ConcurrentUpdate("a record moved to another party while it was linked")
        kept_apart = any(m.kept_apart for m in members)
        apart = frozenset(
            frozenset((party_of[a], party_of[b]))
            for a, b in (await uow.decisions.never_among(survivors) if kept_apart else [])
            if party_of[a] != party_of[b]
        )
        return parties, {p: s for p, s in forward.items() if p != s}, apart


async def _publish_golden_if_changed(
    uow: IdentityUnitOfWork,
    party_id: str,
    existing: StoredRecord | None,
    record: SourceRecord,
    merged: bool,
    known: Mapping[SourceRecordKey, tuple[RawRecord, RecordFeatures]],
    now: dt.datetime,
) -> None:
    """Stages GoldenRecordChanged for the party the record is now in, unless its golden record
    is what it was before this link: the same values sent again, or a change that no attribute
    of the golden record picks (consumers would only receive what they hold). A party that
    absorbed others always publishes: its records changed. `known` holds features already
    normalised in this link, by record key and the values they came from."""

    def with_features(stored: StoredRecord) -> tuple[StoredRecord, RecordFeatures]:
        raw = raw_record(stored.record)
        hit = known.get(stored.key)
        # Features are a function of the raw values: the same values, the same features.
        return stored, hit[1] if hit is not None and hit[0] == raw else extract_features(raw)

    members = [with_features(m) for m in await uow.records.of_parties([party_id])]
    if not members:
        return
    golden = golden_record(members)
    if not merged:
        # The party as it was: the linked record's old version if it was already here, else
        # without it (the order of_parties gives, so ties in `updated_at` break the same way).
        before = []
        for stored, features in members:
            if stored.key != record.key:
                before.append((stored, features))
            elif existing is not None and existing.party_id == party_id:
                before.append(with_features(existing))
        if before and golden_record(before) == golden:
            return
    uow.record(GoldenRecordChanged(party_id, golden, now))
