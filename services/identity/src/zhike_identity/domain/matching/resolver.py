"""Resolution of a whole set of records at once (bulk loads, evaluation).

A source key given more than once is one record: its last row, as the store keeps it (and as
the service keeps the last update). Its earlier rows are set aside before anything else and take
no part in matching; they get the party of the key's last row (`superseded`).

The records are put in their canonical order (by source key) first, so that everything after —
random pairs for u, model estimation, tie-breaks, party ids — is the same whatever order the
records arrived in.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import multiprocessing
import random
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from zhike_identity.domain.matching.blocking import STRONG_PREFIXES, blocking_keys
from zhike_identity.domain.matching.clustering import Refusal, ScoredPair, cluster
from zhike_identity.domain.matching.comparison import (
    Frequencies,
    Pattern,
    compare,
    resident_ids_differ,
    same_person,
)
from zhike_identity.domain.matching.features import (
    Problem,
    RawRecord,
    RecordFeatures,
    extract_features,
)
from zhike_identity.domain.matching.model import MatchModel, default_model, estimate

# Blocks larger than this (a very common name with a birth year, say) are not enumerated: true
# matches in them share a rarer key too. Exact identifier keys are always enumerated.
BLOCK_LIMIT = 100
STRONG_BLOCK_LIMIT = 2000
# A phone, e-mail or address held by more *people* than this stops counting as evidence.
SHARED_VALUE_LIMIT = 8
RANDOM_PAIRS = 200_000
# Fewer for small sets (20 per record): u is a share among random pairs, and 20 pairs per record
# already give each level of a few thousand records more draws than the set has distinct values.
RANDOM_PAIRS_PER_RECORD = 20
PARTY_NAMESPACE = uuid.UUID("6f1c7c3e-7a4e-4a53-9a7b-2f1a5d0c9e11")


def party_id_for(key: tuple[str, str]) -> str:
    """A party id derived from the group's first source key: stable under any input order."""
    return str(uuid.uuid5(PARTY_NAMESPACE, f"{key[0]}\x1f{key[1]}"))


@dataclass
class Resolution:
    party_ids: list[str]  # one per input record, in input order
    problems: list[tuple[int, Problem]]  # (input index, problem)
    reviews: list[tuple[int, int, float]]  # possible matches left to a steward (input indices)
    refusals: list[Refusal] = field(default_factory=list)
    model: MatchModel | None = None
    pairs_compared: int = 0
    # Rows a later row of the same source key replaced (input index → the key's last row): they
    # took no part, and have the party of the key's last row.
    superseded: dict[int, int] = field(default_factory=dict)


def source_key(record: RawRecord) -> tuple[str, str]:
    """The record's source key as the service stores it (validation keeps the id NFC-normalised
    and stripped): two rows with equal keys are one stored record."""
    return (record.source, unicodedata.normalize("NFC", record.source_id).strip())


def superseded(records: Sequence[RawRecord]) -> dict[int, int]:
    """The rows a later row with the same source key replaces, each with the index of its key's
    last row: a source key is one record, and its last row is the one stored."""
    last: dict[tuple[str, str], int] = {}
    for i, record in enumerate(records):
        last[source_key(record)] = i
    if len(last) == len(records):
        return {}
    return {i: last[key] for i, key in enumerate(map(source_key, records)) if last[key] != i}


def latest_rows(records: Sequence[RawRecord], replaced: Mapping[int, int]) -> list[int]:
    """The indices of the rows no later row replaces (`replaced`: `superseded(records)`)."""
    return [i for i in range(len(records)) if i not in replaced]


def frequencies_of(features: Sequence[RecordFeatures]) -> Frequencies:
    counts: dict[tuple[str, str], int] = {}
    holders: dict[tuple[str, str], list[RecordFeatures]] = {}

    def add(kind: str, value: str, record: RecordFeatures) -> None:
        counts[(kind, value)] = counts.get((kind, value), 0) + 1
        if kind != "name":
            holders.setdefault((kind, value), []).append(record)

    for f in features:
        if f.name is not None:
            add("name", f.name.full, f)
        if f.phone is not None:
            add("phone", f.phone.e164, f)
        if f.email is not None:
            add("email", f.email, f)
        if f.address is not None:
            add("address", f.address.text, f)
    people = {
        value: distinct_people(records, SHARED_VALUE_LIMIT + 1)
        for value, records in holders.items()
        if len(records) > SHARED_VALUE_LIMIT  # fewer records cannot be too many people
    }
    # A name's holders counted by their birth dates: one customer's ten records do not make his
    # rare name common (its term frequency), while 王伟 held by a hundred people stays common.
    births: dict[str, set[dt.date | None]] = {}
    for f in features:
        if f.name is not None:
            births.setdefault(f.name.full, set()).add(f.birth_date)
    for name, dates in births.items():
        people[("name", name)] = max(len(dates - {None}), 1)
    return Frequencies(counts, len(features), SHARED_VALUE_LIMIT, people)


def distinct_people(records: Sequence[RecordFeatures], stop_at: int) -> int:
    """How many different people hold a value, as far as names and birth dates tell (counting
    stops at `stop_at`): one customer's twelve records with his name typed three ways are one
    person; a branch address on the records of fifty customers is fifty. Twins (another given
    name) and a household's members (another name or birth date) count apart, so a home stays
    evidence for each of them and a block of flats without flat numbers does not."""
    representatives: list[RecordFeatures] = []
    for record in records:
        if not any(same_person(record, other) for other in representatives):
            representatives.append(record)
            if len(representatives) >= stop_at:
                break
    return len(representatives)


def candidate_pairs(
    features: Sequence[RecordFeatures], keys: Sequence[list[str]] | None = None
) -> list[tuple[int, int]]:
    """The pairs of records sharing a block (`keys`: each record's blocking keys, if known)."""
    blocks: dict[str, list[int]] = {}
    for i, record_keys in enumerate(keys or [blocking_keys(f) for f in features]):
        for key in record_keys:
            blocks.setdefault(key, []).append(i)
    # A pair as one number (lower × size + higher) while collecting and sorting: a set and a
    # sort of ints take a fraction of what tuples do (a pair comes from several blocks).
    size = len(features)
    pairs: set[int] = set()
    for key, members in blocks.items():
        limit = STRONG_BLOCK_LIMIT if key.startswith(STRONG_PREFIXES) else BLOCK_LIMIT
        if len(members) < 2 or len(members) > limit:
            continue
        # Members are in record order, so each pair comes out (lower, higher).
        pairs.update(a * size + b for a, b in itertools.combinations(members, 2))
    return [divmod(pair, size) for pair in sorted(pairs)]


def pairs_to_compare(
    features: Sequence[RecordFeatures], candidates: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The candidates less those the veto forbids (two valid resident ID numbers that differ:
    half the candidates of a set with ID numbers, same-name strangers): never linked, so never
    compared, scored nor counted in the model's estimate."""
    resident_ids = [f.resident_id for f in features]
    return [
        (a, b) for a, b in candidates if not resident_ids_differ(resident_ids[a], resident_ids[b])
    ]


# The fewest records worth extracting in worker processes too.
PARALLEL_EXTRACTION_FROM = 20_000

# What the worker processes extract, set before they are forked (they inherit it) and cleared
# after.
_extracting: tuple[Sequence[RawRecord], dt.date] = ((), dt.date.min)


def _extract_part(part: tuple[int, int]) -> list[RecordFeatures]:
    records, today = _extracting
    first, step = part
    return [extract_features(r, today) for r in records[first::step]]


def extract_all(
    records: Sequence[RawRecord],
    today: dt.date,
    report: Callable[[str, int, int], None],
    *,
    workers: int = 1,
) -> tuple[list[RecordFeatures], list[list[str]]]:
    """The features of `records`, in order, and each one's blocking keys. With `workers` > 1
    the records are dealt into that many parts (every n-th record: sources differ in how costly
    their values are, and a file comes grouped by source), this process extracting the first
    while forked processes extract the others and send their features back (a part's pickle
    costs a tenth of extracting it); this process keys its own part while they send."""
    global _extracting
    total = len(records)
    report("normalise", 0, total)
    if workers <= 1 or total < PARALLEL_EXTRACTION_FROM:
        features = [extract_features(r, today) for r in records]
        report("normalise", total, total)
        return features, [blocking_keys(f) for f in features]
    _extracting = (records, today)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
            others = [pool.submit(_extract_part, (first, workers)) for first in range(1, workers)]
            parts = [_extract_part((0, workers))]
            report("normalise", len(parts[0]), total)
            keys = [[blocking_keys(f) for f in parts[0]]]
            for other in others:
                parts.append(other.result())
                report("normalise", sum(len(p) for p in parts), total)
    finally:
        _extracting = ((), dt.date.min)
    keys.extend([blocking_keys(f) for f in part] for part in parts[1:])
    return (
        [parts[i % workers][i // workers] for i in range(total)],
        [keys[i % workers][i // workers] for i in range(total)],
    )


# Pairs handed to a worker process at a time (big enough that handing them over costs little
# next to comparing them, small enough to show progress), and the fewest pairs worth starting
# workers for.
COMPARE_CHUNK = 20_000
PARALLEL_FROM = 50_000


# What the worker processes compare, set before they are forked (they inherit it, so the
# records are not pickled to them) and cleared after.
_comparing: tuple[Sequence[RecordFeatures], Sequence[tuple[int, int]], Frequencies | None, bool]
_comparing = ((), (), None, True)


def _compare_range(bounds: tuple[int, int]) -> list[Pattern]:
    features, pairs, freq, household_guardrail = _comparing
    return _compared(features, pairs[bounds[0] : bounds[1]], freq, household_guardrail)


def _compared(
    features: Sequence[RecordFeatures],
    pairs: Iterable[tuple[int, int]],
    freq: Frequencies | None,
    household_guardrail: bool,
) -> list[Pattern]:
    return [
        compare(features[a], features[b], freq, household_guardrail=household_guardrail)
        for a, b in pairs
    ]


def compare_pairs(
    features: Sequence[RecordFeatures],
    pairs: Sequence[tuple[int, int]],
    freq: Frequencies | None,
    *,
    household_guardrail: bool = True,
    workers: int = 1,
) -> Iterator[tuple[int, list[Pattern]]]:
    """The patterns of `pairs`, in order, a chunk at a time (with how many pairs are done).
    With `workers` > 1 (and at least PARALLEL_FROM pairs) the chunks are compared in that many
    forked processes, which inherit the records: for a command-line run, never inside a server
    (fork and threads do not mix)."""
    global _comparing
    chunks = [(i, min(i + COMPARE_CHUNK, len(pairs))) for i in range(0, len(pairs), COMPARE_CHUNK)]
    _comparing = (features, pairs, freq, household_guardrail)
    try:
        if workers <= 1 or len(pairs) < PARALLEL_FROM:
            for bounds in chunks:
                yield bounds[1], _compare_range(bounds)
            return
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for bounds, patterns in zip(chunks, pool.map(_compare_range, chunks), strict=True):
                yield bounds[1], patterns
    finally:
        _comparing = ((), (), None, True)


@contextmanager
def compared_aside(
    features: Sequence[RecordFeatures],
    pairs: Sequence[tuple[int, int]],
    *,
    household_guardrail: bool = True,
    workers: int = 1,
) -> Iterator[Callable[[], list[Pattern]]]:
    """The patterns of `pairs` (without frequencies: the random pairs that estimate u), compared
    in one forked process while this one goes on, when `workers` > 1; the function yielded
    waits for them. The candidates' frequencies and blocks are worked out in this process
    meanwhile, on the core it would otherwise leave idle."""
    if workers <= 1 or len(pairs) < PARALLEL_FROM:
        yield lambda: _compared(features, pairs, None, household_guardrail)
        return
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(
        target=_compare_and_send,
        args=(sending, features, pairs, household_guardrail),
        name="zhike-random-pairs",
    )
    process.start()
    sending.close()  # the child's copy is the one that sends

    def patterns() -> list[Pattern]:
        try:
            received: tuple[str, list[Pattern]] = receiving.recv()
        except EOFError:  # the process died without a word (killed, out of memory)
            process.join()
            raise RuntimeError(
                f"comparing the random pairs failed (exit code {process.exitcode})"
            ) from None
        failure, compared = received
        if failure:
            raise RuntimeError(f"comparing the random pairs failed ({failure})")
        return compared

    try:
        yield patterns
    finally:
        receiving.close()
        if process.is_alive():
            process.terminate()
        process.join()


def _compare_and_send(
    sending: Connection,
    features: Sequence[RecordFeatures],
    pairs: Sequence[tuple[int, int]],
    household_guardrail: bool,
) -> None:
    with sending:
        try:
            compared = _compared(features, pairs, None, household_guardrail)
        except Exception as error:  # noqa: BLE001 - told to the parent, which raises it
            # Only the kind of failure leaves this process: its text could quote a record.
            sending.send((type(error).__name__, []))
            return
        sending.send(("", compared))


def pair_weight(
    model: MatchModel,
    a: RecordFeatures,
    b: RecordFeatures,
    pattern: Pattern,
    freq: Frequencies,
    known: dict[tuple[Pattern, int], float] | None = None,
) -> float:
    """The pair's match weight. `known`: weights already worked out in this resolution (a
    weight depends only on the pattern and, for an agreed name, on how many people hold the
    name; a batch has far fewer of those than pairs)."""
    name_value = (
        a.name.full
        if a.name is not None and pattern[1] in ("exact_hanzi", "exact_pinyin")
        else None
    )
    if known is None:
        return model.score(pattern, name_value, freq)
    holders = freq.people("name", name_value) if name_value is not None else -1
    weight = known.get((pattern, holders))
    if weight is None:
        weight = known[(pattern, holders)] = model.score(pattern, name_value, freq)
    return weight


def random_pairs(size: int) -> list[tuple[int, int]]:
    """The random pairs whose patterns estimate u, drawn the same for any input order."""
    rng = random.Random(0)
    return [
        (rng.randrange(size), rng.randrange(size))
        for _ in range(min(RANDOM_PAIRS, RANDOM_PAIRS_PER_RECORD * size))
    ]


def train(
    records: Sequence[RawRecord], *, version: str, today: dt.date | None = None
) -> MatchModel:
    """A model estimated from a set of records, to ship with the service (`zhike identity
    train-model`): the service scores one record at a time and cannot estimate as it goes.
    A repeated source key counts once, as its last row."""
    latest = [records[i] for i in latest_rows(records, superseded(records))]
    ordered = sorted(latest, key=lambda r: (r.source, r.source_id))
    features = [extract_features(r, today) for r in ordered]
    freq = frequencies_of(features)
    pairs = pairs_to_compare(features, candidate_pairs(features))
    patterns = [compare(features[a], features[b], freq) for a, b in pairs]
    unrelated = [compare(features[a], features[b]) for a, b in random_pairs(len(features))]
    return estimate(default_model(), patterns, unrelated, version=version)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while `resolve` runs (it decorates it): a resolution
    builds millions of small objects (features, keys, pairs, patterns) beside a large live heap,
    and the collector's passes over that heap took a third of the time (100,000 records: 56 s
    with it, 35 s without). They hold no reference cycles to collect; reference counting frees
    what they drop."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_no_cycle_collection()
def resolve(
    records: Sequence[RawRecord],
    *,
    model: MatchModel | None = None,
    estimate_model: bool = True,
    today: dt.date | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    household_guardrail: bool = True,
    workers: int = 1,
) -> Resolution:
    """Resolves `records` into parties. `workers` > 1 extracts features and compares pairs in
    that many forked processes (extract_all, compare_pairs, compared_aside): the same result,
    sooner on a machine with that many cores."""
    report = progress or (lambda _stage, _done, _total: None)
    # Earlier rows of a repeated source key are set aside here, before their features exist:
    # the store keeps only the last row, so an earlier one must not link anyone.
    replaced = superseded(records)
    order = sorted(
        latest_rows(records, replaced), key=lambda i: (records[i].source, records[i].source_id)
    )
    # One day for every record (an ID number's or a birth date's plausibility), and a key the
    # normalisers' memo shares.
    today = today or dt.date.today()
    features, block_keys = extract_all([records[i] for i in order], today, report, workers=workers)
    chosen = model or default_model()
    estimating = estimate_model and len(features) >= 1000
    with compared_aside(
        features,
        random_pairs(len(features)) if estimating else [],
        household_guardrail=household_guardrail,
        workers=workers,
    ) as unrelated:
        freq = frequencies_of(features)
        pairs = pairs_to_compare(features, candidate_pairs(features, block_keys))
        patterns: list[Pattern] = []
        report("compare", 0, len(pairs))
        for done, compared in compare_pairs(
            features, pairs, freq, household_guardrail=household_guardrail, workers=workers
        ):
            patterns.extend(compared)
            report("compare", done, len(pairs))
        if estimating:
            chosen = estimate(chosen, patterns, unrelated(), version=f"{chosen.version}+estimated")

    known: dict[tuple[Pattern, int], float] = {}
    scored = [
        ScoredPair(a, b, pair_weight(chosen, features[a], features[b], pattern, freq, known))
        for (a, b), pattern in zip(pairs, patterns, strict=True)
    ]
    keys = [f.key for f in features]
    groups, refusals = cluster(
        len(features),
        scored,
        link_weight=chosen.link_weight,
        order_keys=keys,
        resident_ids=[f.resident_id for f in features],
    )
    party_by_group = {g: party_id_for(keys[g]) for g in set(groups)}
    party_ids = [""] * len(records)
    problems: list[tuple[int, Problem]] = []
    for position, i in enumerate(order):
        party_ids[i] = party_by_group[groups[position]]
        problems.extend((i, problem) for problem in features[position].problems)
    for i, last in replaced.items():
        party_ids[i] = party_ids[last]
    reviews = [
        (order[p.left], order[p.right], p.weight)
        for p in scored
        if chosen.review_weight <= p.weight < chosen.link_weight
        and groups[p.left] != groups[p.right]
    ]
    return Resolution(
        party_ids=party_ids,
        problems=sorted(problems, key=lambda item: item[0]),
        reviews=reviews,
        refusals=refusals,
        model=chosen,
        pairs_compared=len(pairs),
        superseded=replaced,
    )
