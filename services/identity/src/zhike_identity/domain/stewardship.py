"""Stewardship: merges, splits, reviews and link decisions, each in one transaction and each
checked against the guardrails the model keeps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from zhike_identity.domain.model import (
    Decider,
    HistoryEntry,
    LinkDecisionKind,
    LinkEvidence,
    LinkReview,
    PartyChange,
    PartyCreated,
    PartySplit,
    ReviewStatus,
    SourceRecordKey,
)
from zhike_identity.domain.parties import (
    merge,
    publish_golden,
    record_lock_name,
    reroute_forwarding,
    surviving_party,
)
from zhike_identity.domain.ports import IdentityUnitOfWork
from zhike_identity.domain.validation import validate_key
from zhike_runtime.errors import ConcurrentUpdate, FailedPrecondition, NotFound
from zhike_runtime.paging import PageTokens, page_size
from zhike_runtime.validation import Violations

# Reads of two records' parties under their locks before giving up: each round that finds
# them moved takes one more merge or split that landed meanwhile.
_LOCK_ROUNDS = 5


# A steward's merge or split in one request, at most: each party or record is locked and
# written in one transaction (RELIABILITY.md, bad-input class 10: 10^5 elements).
MAX_MERGED_PARTIES = 100
MAX_SPLIT_RECORDS = 1000


class Stewardship:
    """A data steward's decisions: merging and splitting parties, the review queue, and
    "always" or "never link" decisions about two records."""

    def __init__(
        self,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        new_party_id: Callable[[], str],
        clock: Callable[[], dt.datetime],
        page_tokens: PageTokens | None = None,
        max_page_size: int = 200,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._new_party_id = new_party_id
        self._clock = clock
        self._page_tokens = page_tokens or PageTokens()
        self._max_page_size = max_page_size

    async def merge_parties(self, party_ids: Sequence[str], steward: str, reason: str) -> str:
        v = Violations()
        if len(party_ids) > MAX_MERGED_PARTIES:
            # Each is locked and read in the merge's one transaction.
            v.add("party_ids", f"at most {MAX_MERGED_PARTIES} at a time, got {len(party_ids)}")
            v.raise_if_any()
        first_at: dict[str, int] = {}
        for i, party_id in enumerate(party_ids):
            v.uuid(f"party_ids[{i}]", party_id)
            first_at.setdefault(party_id, i)
        if len(first_at) < 2:
            v.add("party_ids", "needs at least two different parties")
        else:
            for i, party_id in enumerate(party_ids):
                if first_at[party_id] != i:
                    # A party twice would be merged into itself: it would forward to itself.
                    v.add(f"party_ids[{i}]", f"repeats party_ids[{first_at[party_id]}]")
        steward, reason = _steward(v, steward, reason)
        v.raise_if_any()
        async with self._unit_of_work() as uow:
            await uow.lock([f"party:{p}" for p in sorted(party_ids)])
            now = self._clock()  # under the locks: stamped in commit order (linking.py)
            states = await uow.parties.get_many(list(party_ids))
            for party_id in party_ids:
                state = states.get(party_id)
                if state is None or state.retired_into == party_id:
                    raise NotFound("party", party_id)  # unknown, or retired leading nowhere
                if state.retired_into is not None:
                    raise FailedPrecondition(
                        f"party {party_id} was merged into {state.retired_into}", party_id
                    )
            await _ensure_mergeable(uow, party_ids)
            ordered = sorted(party_ids, key=lambda p: (states[p].created_at, p))
            survivor = ordered[0]
            await merge(uow, survivor, ordered[1:], now, Decider.STEWARD, steward, "", reason)
            await publish_golden(uow, [survivor], now)
            await uow.commit()
        return survivor

    async def split_party(
        self, party_id: str, keys: Sequence[SourceRecordKey], steward: str, reason: str
    ) -> str:
        v = Violations()
        v.uuid("party_id", party_id)
        if not keys:
            v.add("source_records", "name at least one record to move")
        if len(keys) > MAX_SPLIT_RECORDS:
            v.add("source_records", f"at most {MAX_SPLIT_RECORDS} at a time, got {len(keys)}")
            v.raise_if_any()
        for i, key in enumerate(keys):
            validate_key(v, f"source_records[{i}]", key)
        steward, reason = _steward(v, steward, reason)
        v.raise_if_any()
        async with self._unit_of_work() as uow:
            await uow.lock([f"party:{party_id}"])
            now = self._clock()  # under the lock: stamped in commit order (linking.py)
            state = await uow.parties.get(party_id)
            if state is None or state.retired_into == party_id:
                raise NotFound("party", party_id)  # unknown, or retired leading nowhere
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
            # The retired ids that led here follow their records, or lead nowhere (after the
            # split on the stream: a consumer meets the new party before ids forward to it).
            await reroute_forwarding(
                uow, party_id, new_party, member_keys, set(leaving), now, steward, reason
            )
            await publish_golden(uow, [party_id, new_party], now)
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
                party_a = await surviving_party(uow, a.party_id) if a else ""
                party_b = await surviving_party(uow, b.party_id) if b else ""
                result.append((review, party_a, party_b))
        token = ""
        if len(reviews) > size:
            last = reviews[size - 1]
            token = self._page_tokens.issue(
                "link_reviews", [last.created_at.isoformat(), last.review_id]
            )
        return result, token

    async def resolve_review(
        self, review_id: str, link: bool | None, steward: str
    ) -> tuple[str, str]:
        """`link`: True to link the two records, False to keep them apart (None: an outcome the
        caller did not recognise, refused with the other bad fields)."""
        v = Violations()
        v.uuid("review_id", review_id)
        if link is None:
            v.add("outcome", "must be REVIEW_OUTCOME_LINK or REVIEW_OUTCOME_KEEP_APART")
        steward, _ = _steward(v, steward, "")
        v.raise_if_any()
        assert link is not None
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
                uow, review.record_a, review.record_b, kind, steward, f"review {review_id}"
            )
            await uow.reviews.close(
                review_id,
                ReviewStatus.LINKED if link else ReviewStatus.KEPT_APART,
                steward,
                self._clock(),
            )
            await uow.commit()
        return parties

    async def record_decision(
        self,
        a: SourceRecordKey,
        b: SourceRecordKey,
        kind: LinkDecisionKind | None,
        steward: str,
        reason: str,
    ) -> tuple[str, str]:
        """`kind` None: a decision the caller did not recognise, refused with the other bad
        fields."""
        v = Violations()
        if kind is None:
            v.add("decision", "must be LINK_DECISION_NEVER_LINK or LINK_DECISION_ALWAYS_LINK")
        validate_key(v, "record_a", a)
        validate_key(v, "record_b", b)
        if a == b:
            v.add("record_b", "must differ from record_a")
        steward, reason = _steward(v, steward, reason)
        v.raise_if_any()
        assert kind is not None
        async with self._unit_of_work() as uow:
            parties = await self._decide(uow, a, b, kind, steward, reason)
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
    ) -> tuple[str, str]:
        await uow.lock([record_lock_name(a), record_lock_name(b)])
        party_a, party_b = await _parties_locked(uow, a, b)
        now = self._clock()  # under the locks: stamped in commit order (linking.py)
        if kind is LinkDecisionKind.NEVER and party_a == party_b:
            raise FailedPrecondition(
                "the records are in the same party: split it first (SplitParty)", party_a
            )
        await uow.decisions.record(a, b, kind, steward, reason, now)
        if kind is LinkDecisionKind.ALWAYS and party_a != party_b:
            # Checked after recording: this decision replaces a "never link" between a and b.
            await _ensure_mergeable(uow, (party_a, party_b))
            states = await uow.parties.get_many([party_a, party_b])
            survivor, retired = sorted((party_a, party_b), key=lambda p: (states[p].created_at, p))
            await merge(
                uow, survivor, [retired], now, Decider.STEWARD, steward, "", reason or "always link"
            )
            await publish_golden(uow, [survivor], now)
            party_a = party_b = survivor
        return party_a, party_b


async def _parties_locked(
    uow: IdentityUnitOfWork, a: SourceRecordKey, b: SourceRecordKey
) -> tuple[str, str]:
    """The parties holding records `a` and `b` now, locked. Read again under their locks until
    they hold still: a merge or a split locks parties, not records, so either may move the
    records (or retire their party) while this unit waits for a party's lock. A "never link"
    recorded against parties about to be merged, or a merge into a retired party, would
    otherwise follow."""
    locked: set[str] = set()
    for _ in range(_LOCK_ROUNDS):
        parties = (await _party_of(uow, a), await _party_of(uow, b))
        if set(parties) <= locked:
            return parties
        await uow.lock([f"party:{p}" for p in sorted(set(parties) - locked)])
        locked.update(parties)
    raise ConcurrentUpdate("the records' parties changed while their locks were taken")


async def _party_of(uow: IdentityUnitOfWork, key: SourceRecordKey) -> str:
    stored = await uow.records.get(key)
    if stored is None:
        raise NotFound("source_record", f"{key.source_system}/{key.source_record_id}")
    return await surviving_party(uow, stored.party_id)


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


def _steward(v: Violations, steward: str, reason: str) -> tuple[str, str]:
    """The steward and the reason as stored: normalised, as their lengths were checked."""
    return (
        v.text("steward", steward, required=True, max_length=128),
        v.text("reason", reason, max_length=500),
    )


def _position(v: Violations, position: list[str] | None) -> tuple[dt.datetime, str] | None:
    if position is None:
        return None
    try:
        return dt.datetime.fromisoformat(position[0]), position[1]
    except (ValueError, IndexError):
        v.add("page_token", "is not a page token this service issued")
        return None
