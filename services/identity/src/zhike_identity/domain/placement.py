"""Where an incoming record goes: the pure decision the online service takes for each record.

Given the record's features, its scored candidates (stored records sharing a blocking key) with
their parties, and the steward's decisions, it picks the party (or none: a new one), the parties
the record bridges (to merge into the oldest), the possible matches for review, and the refused
links with their guardrail. The same scoring and guardrails as the batch resolver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zhike_identity.domain.matching.comparison import Frequencies, compare, veto
from zhike_identity.domain.matching.features import RawRecord, RecordFeatures
from zhike_identity.domain.matching.model import MatchModel
from zhike_identity.domain.matching.resolver import pair_weight
from zhike_identity.domain.model import SourceRecord, SourceRecordKey


@dataclass(frozen=True)
class CandidateParty:
    party_id: str
    created_at: dt.datetime
    resident_ids: frozenset[str]


@dataclass(frozen=True)
class Candidate:
    key: SourceRecordKey
    party_id: str
    features: RecordFeatures


@dataclass(frozen=True)
class StoredCandidate:
    """A stored record as a link compares it: its key, its party and its values as the matcher
    reads them (`raw_record` of the stored record, built straight from its row)."""

    key: SourceRecordKey
    party_id: str
    raw: RawRecord


@dataclass(frozen=True)
class ScoredCandidate:
    candidate: Candidate
    weight: float
    guardrail: str | None  # why it cannot link, whatever its weight


@dataclass(frozen=True)
class Placement:
    party_id: str | None  # None: a new party
    merge: tuple[str, ...]  # parties bridged by the record, to retire into party_id
    best: ScoredCandidate | None
    reviews: tuple[ScoredCandidate, ...]
    refusals: tuple[ScoredCandidate, ...]


def raw_record(record: SourceRecord) -> RawRecord:
    """A validated source record as the matcher reads it."""
    return RawRecord(
        source=record.key.source_system,
        source_id=record.key.source_record_id,
        full_name=record.full_name,
        id_type=record.id_type.name if record.id_type else "",
        id_number=record.id_number,
        phone=record.phone,
        email=record.email,
        birth_date=record.birth_date.isoformat() if record.birth_date else "",
        gender=str(int(record.gender)) if record.gender else "",
        address=record.address,
    )


def score_candidates(
    model: MatchModel,
    features: RecordFeatures,
    candidates: Iterable[Candidate],
    frequencies: Frequencies,
) -> list[ScoredCandidate]:
    scored = []
    for candidate in candidates:
        reason = veto(features, candidate.features)
        pattern = compare(features, candidate.features, frequencies)
        weight = pair_weight(model, features, candidate.features, pattern, frequencies)
        scored.append(ScoredCandidate(candidate, weight, reason))
    return scored


def place(
    model: MatchModel,
    features: RecordFeatures,
    scored: Iterable[ScoredCandidate],
    parties: Mapping[str, CandidateParty],
    *,
    never: frozenset[SourceRecordKey] = frozenset(),
    always: frozenset[SourceRecordKey] = frozenset(),
    apart: frozenset[frozenset[str]] = frozenset(),
) -> Placement:
    """`never`/`always`: the steward's decisions about the incoming record and a candidate;
    `apart`: pairs of candidate parties a steward has said hold different people (a "never link"
    between their records, or a split), which no bridging record may join."""
    scored = sorted(
        scored,
        key=lambda s: (-s.weight, s.candidate.key.source_system, s.candidate.key.source_record_id),
    )
    # Parties that must not receive the record. `binding`: what holds for stewards too, so a
    # steward's "always link" with one of its records does not lift it (a member the steward
    # said never to link, two valid resident ID numbers in one party); `barred`: a member the
    # model's guardrails vetoed, which such an "always link" overrides.
    binding: dict[str, str] = {}
    barred: dict[str, str] = {}
    for s in scored:
        if s.candidate.key in never:
            binding.setdefault(s.candidate.party_id, "steward_never_link")
        elif s.guardrail is not None:
            barred.setdefault(s.candidate.party_id, s.guardrail)
    own_ids = {features.resident_id} if features.resident_id else set()
    for party_id, party in parties.items():
        if own_ids and party.resident_ids and party.resident_ids != own_ids:
            binding.setdefault(party_id, "different_valid_resident_ids")

    forced = [s for s in scored if s.candidate.key in always]
    linked = [s for s in scored if s.weight >= model.link_weight and s.guardrail is None]
    chosen: list[str] = []
    best: ScoredCandidate | None = None
    refusals: list[ScoredCandidate] = []
    ids = set(own_ids)
    for s in [*forced, *linked]:
        party_id = s.candidate.party_id
        if party_id in chosen:
            continue
        is_forced = s in forced
        reason = binding.get(party_id) or (None if is_forced else barred.get(party_id))
        if reason is not None:
            refusals.append(ScoredCandidate(s.candidate, s.weight, reason))
            continue
        if any(frozenset((party_id, other)) in apart for other in chosen):
            refusals.append(ScoredCandidate(s.candidate, s.weight, "steward_never_link"))
            continue
        party_ids = parties[party_id].resident_ids
        if ids and party_ids and not party_ids <= ids:
            # Bridging this party too would put two valid resident ID numbers in one party.
            refusals.append(ScoredCandidate(s.candidate, s.weight, "different_valid_resident_ids"))
            continue
        chosen.append(party_id)
        ids |= party_ids
        best = best or s
    refusals += [s for s in scored if s.guardrail is not None and s.weight >= model.link_weight]
    reviews = tuple(
        s
        for s in scored
        if model.review_weight <= s.weight < model.link_weight
        and s.guardrail is None
        and s.candidate.party_id not in chosen
        and s.candidate.party_id not in barred
        and s.candidate.party_id not in binding
    )
    if not chosen:
        return Placement(None, (), None, reviews, tuple(refusals))
    ordered = sorted(chosen, key=lambda p: (parties[p].created_at, p))
    return Placement(ordered[0], tuple(ordered[1:]), best, reviews, tuple(refusals))
