"""Identity use cases. Each owns its transaction: state and events commit once, together."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from zhike_identity.domain.golden import golden_record
from zhike_identity.domain.matching.blocking import (
    STRONG_PREFIXES,
    blocking_keys,
    counting_keys,
    index_key,
)
from zhike_identity.domain.matching.comparison import FIELDS, Frequencies, compare, veto
from zhike_identity.domain.matching.features import RecordFeatures, extract_features
from zhike_identity.domain.matching.model import MatchModel, match_probability
from zhike_identity.domain.matching.resolver import BLOCK_LIMIT, SHARED_VALUE_LIMIT, pair_weight
from zhike_identity.domain.model import (
    Decider,
    GoldenRecordChanged,
    HistoryEntry,
    KeyCounts,
    LinkDecisionKind,
    LinkEvidence,
    LinkOutcome,
    LinkReview,
    PartiesMerged,
    PartyChange,
    PartyCreated,
    PartySplit,
    PartyView,
    ReviewStatus,
    SourceRecord,
    SourceRecordInput,
    SourceRecordKey,
    SourceRecordLinked,
    SourceRecordMoved,
    StoredRecord,
)
from zhike_identity.domain.normalise import (
    Unusable,
    normalise_email,
    normalise_id,
    normalise_name,
    normalise_phone,
)
from zhike_identity.domain.placement import (
    Candidate,
    CandidateParty,
    place,
    raw_record,
    score_candidates,
)
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.validation import validate_key, validate_source_record
from zhike_runtime.errors import ConcurrentUpdate, FailedPrecondition, NotFound
from zhike_runtime.masking import mask_email, mask_id_number, mask_phone
from zhike_runtime.paging import PageTokens, page_size
from zhike_runtime.validation import Violations

# The loser of a race on the same keys retries, and then sees the winner's rows.
_ATTEMPTS = 3


@dataclass(frozen=True)
class FieldExplanation:
    field: str
    value_a: str
    value_b: str
    level: str
    weight: float


@dataclass(frozen=True)
class Explanation:
    fields: tuple[FieldExplanation, ...]
    prior_weight: float
    total_weight: float
    match_probability: float
    link_weight: float
    review_weight: float
    decision: str
    guardrail: str | None
    model_version: str
    same_party_now: bool


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


def features_of(stored: StoredRecord) -> RecordFeatures:
    """A stored record's features, normalised again (about 40 µs). Not cached: at a million
    records candidates rarely repeat, and a cache of a hundred thousand entries held ~900,000
    objects that each full garbage collection walked, pausing the service for half a second."""
    return extract_features(raw_record(stored.record))


class IdentityService:
    def __init__(
        self,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        new_party_id: Callable[[], str],
        clock: Callable[[], dt.datetime],
        model: MatchModel,
        page_tokens: PageTokens | None = None,
        max_page_size: int = 200,
    ) -> None:
        self._page_tokens = page_tokens or PageTokens()
        self._max_page_size = max_page_size
        self._total: tuple[float, int] | None = None  # (when read, how many records)
        self._unit_of_work = unit_of_work
        self._new_party_id = new_party_id
        self._clock = clock
        self._model = model

    # --- linking ------------------------------------------------------------------------------

    async def link_source_record(self, candidate: SourceRecordInput) -> LinkOutcome:
        """Stores the record and resolves it: to the party it matches, merging the parties it
        bridges, or to a new party. An update of a known record is re-resolved and may move."""
        record = validate_source_record(candidate, self._clock().date())
        features = extract_features(raw_record(record))
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._link(record.key, record, features)
            except ConcurrentUpdate:
                if attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _link(
        self, key: SourceRecordKey, record: SourceRecord, features: RecordFeatures
    ) -> LinkOutcome:
        now = self._clock()
        version = self._model.version
        keys = blocking_keys(features)
        async with self._unit_of_work() as uow:
            await uow.lock([record_lock_name(key), *keys])
            existing = await uow.records.get(key)
            counts = await uow.records.key_counts(
                [*keys, *counting_keys(features)], by_party=_shared_value_keys(features)
            )
            # Blocks are limited by their records, as in the batch resolver: a value held by more
            # records than BLOCK_LIMIT is rarer evidence than what the other keys bring.
            usable = [
                k
                for k in keys
                if k.startswith(STRONG_PREFIXES) or counts.records.get(k, 0) <= BLOCK_LIMIT
            ]
            stored = await uow.records.with_blocking_keys(usable, exclude=key)
            frequencies = Frequencies(
                _frequency_counts(features, counts),
                await self._estimated_total(uow),
                SHARED_VALUE_LIMIT,
            )
            candidates = [Candidate(s.key, s.party_id, features_of(s)) for s in stored]
            scored = score_candidates(self._model, features, candidates, frequencies)
            # Records are never deleted and a steward decides only about stored records, so a
            # record seen for the first time has no decisions: one query fewer on most links.
            decisions = await uow.decisions.for_record(key) if existing is not None else {}
            # Only the parties the record may join, be reviewed against or is kept from are read
            # and locked; a common name brings dozens of candidates that score far too low.
            relevant = sorted(
                {
                    s.candidate.party_id
                    for s in scored
                    if s.weight >= self._model.review_weight or s.candidate.key in decisions
                }
            )
            parties, forward, apart = await self._candidate_parties(uow, relevant)
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
            old_party = existing.party_id if existing else None
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
            merged = await self._merge(
                uow,
                target,
                placement.merge,
                now,
                Decider.MODEL,
                "",
                version,
                "bridged by a matching record",
            )
            if existing is None:
                await uow.records.add(record, target, evidence, now)
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
                await uow.records.update(record, now)
                # Re-resolved: it stays, went along with a merge, or moves to its new match.
                if old_party is not None and old_party != target and old_party not in merged:
                    await self._move(
                        uow, [key], old_party, target, now, Decider.MODEL, "", version, evidence
                    )
            await uow.records.set_blocking_keys(
                key, [*keys, *counting_keys(features)], replacing=existing is not None
            )
            await uow.history.append(history)
            for review in placement.reviews:
                await uow.reviews.open(key, review.candidate.key, review.weight, now)
            if created and not merged:
                # The new party holds this record alone: its golden record needs no query.
                alone = StoredRecord(key, target, record, evidence, now)
                uow.record(GoldenRecordChanged(target, golden_record([(alone, features)]), now))
            else:
                await self._emit_golden(uow, [target], now)
            await uow.commit()
        return LinkOutcome(target, party_created=created, merged_party_ids=tuple(merged))

    async def _estimated_total(self, uow: IdentityUnitOfWork) -> int:
        """The store's size for term frequencies. A large store is re-read at most once a minute:
        it moves slowly and only its order of magnitude matters. A small one is cheap to count
        and changes fast relative to its size, so it is read every time."""
        now = time.monotonic()
        if self._total is None or self._total[1] < 100_000 or now - self._total[0] > 60.0:
            self._total = (now, await uow.records.estimated_total())
        return self._total[1]

    async def _candidate_parties(
        self, uow: IdentityUnitOfWork, party_ids: Sequence[str]
    ) -> tuple[dict[str, CandidateParty], dict[str, str], frozenset[frozenset[str]]]:
        """The candidates' parties, locked, with their valid resident IDs; a map from any party
        merged away since the candidates were read to its survivor; and the pairs of these
        parties a steward has kept apart."""
        if not party_ids:
            return {}, {}, frozenset()
        await uow.lock([f"party:{p}" for p in party_ids])
        states, members = await uow.parties.with_members(party_ids)
        forward = {
            p: p if p in states and states[p].retired_into is None else await _surviving(uow, p)
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
        kept_apart = any(m.kept_apart for m in members)
        apart = frozenset(
            frozenset((party_of[a], party_of[b]))
            for a, b in (await uow.decisions.never_among(survivors) if kept_apart else [])
            if party_of[a] != party_of[b]
        )
        return parties, {p: s for p, s in forward.items() if p != s}, apart

    async def _merge(
        self,
        uow: IdentityUnitOfWork,
        survivor: str,
        retired: Sequence[str],
        now: dt.datetime,
        decided_by: Decider,
        steward: str,
        version: str,
        reason: str,
    ) -> list[str]:
        if not retired:
            return []
        records = await uow.records.of_parties(list(retired))
        await uow.records.move([r.key for r in records], survivor, None)
        entries = []
        for party_id in retired:
            await uow.parties.retire(party_id, survivor, now)
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
        uow.record(PartiesMerged(survivor, tuple(retired), now))
        return list(retired)

    async def _move(
        self,
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
            await uow.parties.retire(source, target, now)
            uow.record(PartiesMerged(target, (source,), now))
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
            await self._emit_golden(uow, [source], now)

    async def _emit_golden(
        self, uow: IdentityUnitOfWork, party_ids: Iterable[str], now: dt.datetime
    ) -> None:
        for party_id in party_ids:
            members = await uow.records.of_parties([party_id])
            if members:
                golden = golden_record([(m, features_of(m)) for m in members])
                uow.record(GoldenRecordChanged(party_id, golden, now))

    # --- reading --------------------------------------------------------------------------------

    async def get_party(self, party_id: str) -> PartyView:
        _require_uuid("party_id", party_id)
        async with self._unit_of_work() as uow:
            surviving = await _surviving(uow, party_id)
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
        key, matches = _query_key(query, self._clock().date())
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
                surviving = await _surviving(uow, stored.party_id)
                if surviving not in party_ids:
                    party_ids.append(surviving)
        return party_ids

    async def explain_link(self, a: SourceRecordKey, b: SourceRecordKey) -> Explanation:
        v = Violations()
        validate_key(v, "record_a", a)
        validate_key(v, "record_b", b)
        v.raise_if_any()
        async with self._unit_of_work() as uow:
            left = await uow.records.get(a)
            right = await uow.records.get(b)
            if left is None:
                raise NotFound("source_record", f"{a.source_system}/{a.source_record_id}")
            if right is None:
                raise NotFound("source_record", f"{b.source_system}/{b.source_record_id}")
            fa, fb = features_of(left), features_of(right)
            counts = await uow.records.key_counts(
                [*blocking_keys(fa), *counting_keys(fa)], by_party=_shared_value_keys(fa)
            )
            frequencies = Frequencies(
                _frequency_counts(fa, counts),
                await self._estimated_total(uow),
                SHARED_VALUE_LIMIT,
            )
            decisions = await uow.decisions.for_record(a)
            same_party = await _surviving(uow, left.party_id) == await _surviving(
                uow, right.party_id
            )
        model = self._model
        pattern = compare(fa, fb, frequencies)
        name_value = fa.name.full if fa.name is not None else None
        weights = model.weights(pattern, name_value, frequencies)
        total = pair_weight(model, fa, fb, pattern, frequencies)
        guardrail = veto(fa, fb)
        if decisions.get(b) is LinkDecisionKind.NEVER:
            guardrail = "steward_never_link"
        decision = "no_link" if guardrail else model.decide(total)
        if decisions.get(b) is LinkDecisionKind.ALWAYS:
            decision, guardrail = "link", "steward_always_link"
        fields = tuple(
            FieldExplanation(name, *_shown(name, fa, fb), level, weight)
            for name, level, weight in zip(FIELDS, pattern, weights, strict=True)
        )
        return Explanation(
            fields=fields,
            prior_weight=model.prior_weight,
            total_weight=total,
            match_probability=match_probability(total),
            link_weight=model.link_weight,
            review_weight=model.review_weight,
            decision=decision,
            guardrail=guardrail,
            model_version=model.version,
            same_party_now=same_party,
        )

    # --- steward operations ---------------------------------------------------------------------

    async def merge_parties(self, party_ids: Sequence[str], steward: str, reason: str) -> str:
        v = Violations()
        for i, party_id in enumerate(party_ids):
            v.uuid(f"party_ids[{i}]", party_id)
        if len(set(party_ids)) < 2:
            v.add("party_ids", "needs at least two different parties")
        _steward(v, steward, reason)
        v.raise_if_any()
        now = self._clock()
        async with self._unit_of_work() as uow:
            await uow.lock([f"party:{p}" for p in sorted(party_ids)])
            states = await uow.parties.get_many(list(party_ids))
            for party_id in party_ids:
                state = states.get(party_id)
                if state is None:
                    raise NotFound("party", party_id)
                if state.retired_into is not None:
                    raise FailedPrecondition(
                        f"party {party_id} was merged into {state.retired_into}", party_id
                    )
            await _ensure_mergeable(uow, party_ids)
            ordered = sorted(party_ids, key=lambda p: (states[p].created_at, p))
            survivor = ordered[0]
            await self._merge(uow, survivor, ordered[1:], now, Decider.STEWARD, steward, "", reason)
            await self._emit_golden(uow, [survivor], now)
            await uow.commit()
        return survivor

    async def split_party(
        self, party_id: str, keys: Sequence[SourceRecordKey], steward: str, reason: str
    ) -> str:
        v = Violations()
        v.uuid("party_id", party_id)
        if not keys:
            v.add("source_records", "name at least one record to move")
        for i, key in enumerate(keys):
            validate_key(v, f"source_records[{i}]", key)
        _steward(v, steward, reason)
        v.raise_if_any()
        now = self._clock()
        async with self._unit_of_work() as uow:
            await uow.lock([f"party:{party_id}"])
            state = await uow.parties.get(party_id)
            if state is None:
                raise NotFound("party", party_id)
            if state.retired_into is not None:
                raise FailedPrecondition(
                    f"party {party_id} was merged into {state.retired_into}", party_id
                )
            members = await uow.records.of_parties([party_id])
            member_keys = {m.key for m in members}
            leaving = list(dict.fromkeys(keys))
            strangers = [k for k in leaving if k not in member_keys]
            if strangers:
                raise FailedPrecondition(
                    f"{len(strangers)} of the records are not in party {party_id}", party_id
                )
            staying = [k for k in member_keys if k not in set(leaving)]
            if not staying:
                raise FailedPrecondition("a split must leave at least one record behind", party_id)
            new_party = self._new_party_id()
            await uow.parties.add(new_party, now)
            uow.record(PartyCreated(new_party, now))
            evidence = LinkEvidence(Decider.STEWARD, None, None, "", now, steward)
            versions = await uow.records.move(leaving, new_party, evidence)
            # The steward has decided these records are different people: keep it so.
            for gone in leaving:
                for stay in staying:
                    await uow.decisions.record(
                        gone, stay, LinkDecisionKind.NEVER, steward, reason, now
                    )
            await uow.history.append(
                [
                    HistoryEntry(
                        party_id,
                        PartyChange.SPLIT,
                        now,
                        Decider.STEWARD,
                        "",
                        steward,
                        new_party,
                        tuple(leaving),
                        reason,
                    ),
                    HistoryEntry(
                        new_party,
                        PartyChange.CREATED,
                        now,
                        Decider.STEWARD,
                        "",
                        steward,
                        party_id,
                        tuple(leaving),
                        reason,
                    ),
                ]
            )
            uow.record(
                PartySplit(
                    party_id,
                    new_party,
                    tuple(leaving),
                    now,
                    tuple(versions.get(k, 0) for k in leaving),
                )
            )
            await self._emit_golden(uow, [party_id, new_party], now)
            await uow.commit()
        return new_party

    async def list_reviews(
        self, requested_size: int, page_token: str
    ) -> tuple[list[tuple[LinkReview, str, str]], str]:
        v = Violations()
        size = page_size(v, "page_size", requested_size, maximum=self._max_page_size)
        position = self._page_tokens.read(v, "page_token", "link_reviews", page_token)
        after = _position(v, position)
        v.raise_if_any()
        async with self._unit_of_work() as uow:
            reviews = await uow.reviews.list_open(size + 1, after)
            result = []
            for review in reviews[:size]:
                a = await uow.records.get(review.record_a)
                b = await uow.records.get(review.record_b)
                party_a = await _surviving(uow, a.party_id) if a else ""
                party_b = await _surviving(uow, b.party_id) if b else ""
                result.append((review, party_a, party_b))
        token = ""
        if len(reviews) > size:
            last = reviews[size - 1]
            token = self._page_tokens.issue(
                "link_reviews", [last.created_at.isoformat(), last.review_id]
            )
        return result, token

    async def resolve_review(self, review_id: str, link: bool, steward: str) -> tuple[str, str]:
        v = Violations()
        v.uuid("review_id", review_id)
        _steward(v, steward, "")
        v.raise_if_any()
        now = self._clock()
        async with self._unit_of_work() as uow:
            # One transaction, the review locked: two stewards cannot both decide it.
            await uow.lock([f"review:{review_id}"])
            review = await uow.reviews.get(review_id)
            if review is None:
                raise NotFound("link_review", review_id)
            if review.status is not ReviewStatus.OPEN:
                raise FailedPrecondition(
                    f"review {review_id} is already {review.status}", review_id
                )
            kind = LinkDecisionKind.ALWAYS if link else LinkDecisionKind.NEVER
            parties = await self._decide(
                uow, review.record_a, review.record_b, kind, steward, f"review {review_id}", now
            )
            await uow.reviews.close(
                review_id, ReviewStatus.LINKED if link else ReviewStatus.KEPT_APART, steward, now
            )
            await uow.commit()
        return parties

    async def record_decision(
        self,
        a: SourceRecordKey,
        b: SourceRecordKey,
        kind: LinkDecisionKind,
        steward: str,
        reason: str,
    ) -> tuple[str, str]:
        v = Violations()
        validate_key(v, "record_a", a)
        validate_key(v, "record_b", b)
        if a == b:
            v.add("record_b", "must differ from record_a")
        _steward(v, steward, reason)
        v.raise_if_any()
        async with self._unit_of_work() as uow:
            parties = await self._decide(uow, a, b, kind, steward, reason, self._clock())
            await uow.commit()
        return parties

    async def _decide(
        self,
        uow: IdentityUnitOfWork,
        a: SourceRecordKey,
        b: SourceRecordKey,
        kind: LinkDecisionKind,
        steward: str,
        reason: str,
        now: dt.datetime,
    ) -> tuple[str, str]:
        await uow.lock([record_lock_name(a), record_lock_name(b)])
        left = await uow.records.get(a)
        right = await uow.records.get(b)
        if left is None:
            raise NotFound("source_record", f"{a.source_system}/{a.source_record_id}")
        if right is None:
            raise NotFound("source_record", f"{b.source_system}/{b.source_record_id}")
        party_a = await _surviving(uow, left.party_id)
        party_b = await _surviving(uow, right.party_id)
        if kind is LinkDecisionKind.NEVER and party_a == party_b:
            raise FailedPrecondition(
                "the records are in the same party: split it first (SplitParty)", party_a
            )
        await uow.decisions.record(a, b, kind, steward, reason, now)
        if kind is LinkDecisionKind.ALWAYS and party_a != party_b:
            await uow.lock([f"party:{p}" for p in sorted((party_a, party_b))])
            # Checked after recording: this decision replaces a "never link" between a and b.
            await _ensure_mergeable(uow, (party_a, party_b))
            states = await uow.parties.get_many([party_a, party_b])
            survivor, retired = sorted((party_a, party_b), key=lambda p: (states[p].created_at, p))
            await self._merge(
                uow, survivor, [retired], now, Decider.STEWARD, steward, "", reason or "always link"
            )
            await self._emit_golden(uow, [survivor], now)
            party_a = party_b = survivor
        return party_a, party_b


async def _ensure_mergeable(uow: IdentityUnitOfWork, party_ids: Sequence[str]) -> None:
    """Refuses a steward's merge that the guardrails forbid whoever decides: two valid resident
    ID numbers in one party (never one person; an ID typed wrongly is corrected in its source
    record), or two records a steward has kept apart (an "always link" for them lifts that)."""
    _, members = await uow.parties.with_members(party_ids)
    holders: dict[str, str] = {}
    for member in members:
        if member.resident_id is not None:
            holders.setdefault(member.resident_id, member.party_id)
    if len(holders) > 1:
        parties = sorted(set(holders.values()))
        raise FailedPrecondition(
            f"parties {', '.join(parties)} hold different valid resident ID numbers: "
            "never one person",
            parties[0],
        )
    if not any(member.kept_apart for member in members):
        return
    party_of = {member.key: member.party_id for member in members}
    for a, b in await uow.decisions.never_among(party_ids):
        if party_of[a] != party_of[b]:
            raise FailedPrecondition(
                f"records {a.source_system}/{a.source_record_id} and "
                f"{b.source_system}/{b.source_record_id} are kept apart by a steward's "
                "never-link decision: record an always-link decision for them first",
                party_of[a],
            )


def record_lock_name(key: SourceRecordKey) -> str:
    """The lock a change to this record holds (on PostgreSQL) until its transaction ends."""
    return f"record:{key.source_system}:{key.source_record_id}"


def _shared_value_keys(features: RecordFeatures) -> list[str]:
    """The index keys of the values a household or one customer's many records share (phone,
    e-mail, address): counted by party, so that a customer's own phone does not look shared."""
    keys = []
    if features.phone is not None:
        keys.append(index_key(f"ph:{features.phone.e164}"))
    if features.email is not None:
        keys.append(index_key(f"em:{features.email}"))
    if features.address is not None:
        keys.append(index_key(f"ad:{features.address.text}"))
    return keys


def _frequency_counts(features: RecordFeatures, counts: KeyCounts) -> dict[tuple[str, str], int]:
    """How often the record's values are held, the record itself included: a name by records
    (as the batch resolver counts it), shared values by parties."""
    result: dict[tuple[str, str], int] = {}
    if features.name is not None:
        held = counts.records.get(index_key(f"nm:{features.name.full}"), 0)
        result[("name", features.name.full)] = held + 1
    if features.phone is not None:
        held = counts.parties.get(index_key(f"ph:{features.phone.e164}"), 0)
        result[("phone", features.phone.e164)] = held + 1
    if features.email is not None:
        held = counts.parties.get(index_key(f"em:{features.email}"), 0)
        result[("email", features.email)] = held + 1
    if features.address is not None:
        held = counts.parties.get(index_key(f"ad:{features.address.text}"), 0)
        result[("address", features.address.text)] = held + 1
    return result


async def _surviving(uow: IdentityUnitOfWork, party_id: str) -> str:
    """Follows merge forwarding to the party that holds the records today."""
    seen: set[str] = set()
    current = party_id
    while True:
        state = await uow.parties.get(current)
        if state is None:
            raise NotFound("party", party_id)
        if state.retired_into is None:
            return current
        if current in seen:
            raise AssertionError(f"party forwarding loops at {current}")
        seen.add(current)
        current = state.retired_into


def _require_uuid(field: str, value: str) -> None:
    v = Violations()
    v.uuid(field, value)
    v.raise_if_any()


def _steward(v: Violations, steward: str, reason: str) -> None:
    v.text("steward", steward, required=True, max_length=128)
    v.text("reason", reason, max_length=500)


def _position(v: Violations, position: list[str] | None) -> tuple[dt.datetime, str] | None:
    if position is None:
        return None
    try:
        return dt.datetime.fromisoformat(position[0]), position[1]
    except (ValueError, IndexError):
        v.add("page_token", "is not a page token this service issued")
        return None


def _shown(name: str, a: RecordFeatures, b: RecordFeatures) -> tuple[str, str]:
    def value(f: RecordFeatures) -> str:
        if name == "id":
            return mask_id_number(f.document.number) if f.document else ""
        if name == "name":
            return f.name.display if f.name else ""
        if name == "birth_date":
            return f.birth_date.isoformat() if f.birth_date else ""
        if name == "gender":
            return f.gender.name if f.gender else ""
        if name == "phone":
            return mask_phone(f.phone.e164) if f.phone else ""
        if name == "email":
            return mask_email(f.email) if f.email else ""
        return f.address.text if f.address else ""

    return value(a), value(b)


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
    try:
        if query.source_record is not None:
            validate_key(v, "source_record", query.source_record)
            v.raise_if_any()
            return "", None
        if query.id_number:
            kind = query.id_type or "RESIDENT_ID"
            document = normalise_id(kind, query.id_number, today)
            if document.kind == "RESIDENT_ID" and not document.valid:
                v.add("id_number", "not a valid resident ID number (check character)")
                v.raise_if_any()
            return f"id:{document.kind}:{document.number}", None
        if query.phone:
            return index_key(f"ph:{normalise_phone(query.phone).e164}"), None
        if query.email:
            return index_key(f"em:{normalise_email(query.email)}"), None
        name = normalise_name(query.full_name)
    except Unusable as error:
        field = next(
            f
            for f, on in zip(
                ("source_record", "id_number", "phone", "email", "full_name"), given, strict=True
            )
            if on
        )
        v.add(field, f"not usable: {error.reason}")
        v.raise_if_any()
        raise AssertionError("unreachable") from error
    if query.birth_date is None:
        v.add("name_and_birth_date.birth_date", "is required with a name")
        v.raise_if_any()
    born = query.birth_date
    return index_key(f"nm:{name.full}"), lambda f: f.birth_date == born
