"""The Fellegi–Sunter model: m and u probabilities per field level, a prior, two thresholds.

A pair's match weight is log2(λ/(1-λ)) + Σ log2(m/u) over its non-null levels, so every field's
contribution is visible and adds up. Exact name agreement is adjusted by term frequency: agreeing
on 王伟 (thousands of holders) weighs far less than agreeing on a rare name.
Link at `link_weight` or above; between `review_weight` and `link_weight` a steward decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from zhike_identity.domain.matching.comparison import FIELDS, LEVELS, NULL, Frequencies, Pattern

# Smallest probability any level may take: keeps weights finite when a level never occurred.
_FLOOR = 1e-6
_TF_NAME_LEVELS = ("exact_hanzi", "exact_pinyin")


@dataclass(frozen=True)
class MatchModel:
    version: str
    prior: float  # λ: the chance that two records compared at random are the same person
    m: Mapping[str, Mapping[str, float]]  # P(level | same person)
    u: Mapping[str, Mapping[str, float]]  # P(level | different people)
    link_weight: float
    review_weight: float
    _weights: dict[str, dict[str, float]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in FIELDS:
            self._weights[name] = {
                level: math.log2(
                    max(self.m[name][level], _FLOOR) / max(self.u[name][level], _FLOOR)
                )
                for level in LEVELS[name]
            }

    @property
    def prior_weight(self) -> float:
        return float(math.log2(self.prior / (1 - self.prior)))

    def level_weight(self, field_name: str, level: str) -> float:
        return 0.0 if level == NULL else self._weights[field_name][level]

    def weights(
        self,
        pattern: Pattern,
        name_value: str | None = None,
        frequencies: Frequencies | None = None,
    ) -> list[float]:
        """Per-field weights of a pattern; `name_value` (the agreed name) enables the TF term."""
        result = []
        for name, level in zip(FIELDS, pattern, strict=True):
            weight = self.level_weight(name, level)
            if (
                name == "name"
                and level in _TF_NAME_LEVELS
                and name_value is not None
                and frequencies is not None
            ):
                # Counted by people where known: a customer's many records of his own rare
                # name do not make it common.
                share = frequencies.people("name", name_value) / frequencies.total
                # Term-frequency adjustment: u becomes the share of records holding this name.
                tf_u = max(share, self.u["name"][level], _FLOOR)
                weight = math.log2(max(self.m["name"][level], _FLOOR) / tf_u)
            result.append(weight)
        return result

    def score(
        self,
        pattern: Pattern,
        name_value: str | None = None,
        frequencies: Frequencies | None = None,
    ) -> float:
        return self.prior_weight + sum(self.weights(pattern, name_value, frequencies))

    def decide(self, weight: float) -> str:
        if weight >= self.link_weight:
            return "link"
        if weight >= self.review_weight:
            return "review"
        return "no_link"

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "prior": self.prior,
                "m": self.m,
                "u": self.u,
                "link_weight": self.link_weight,
                "review_weight": self.review_weight,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> MatchModel:
        data = json.loads(text)
        return cls(
            version=str(data["version"]),
            prior=float(data["prior"]),
            m={f: {lv: float(p) for lv, p in levels.items()} for f, levels in data["m"].items()},
            u={f: {lv: float(p) for lv, p in levels.items()} for f, levels in data["u"].items()},
            link_weight=float(data["link_weight"]),
            review_weight=float(data["review_weight"]),
        )


def match_probability(weight: float) -> float:
    return 1.0 / (1.0 + math.pow(2.0, -weight))


def default_model() -> MatchModel:
    """The model shipped with the service (versioned; re-estimated with `estimate`)."""
    text = resources.files("zhike_identity.domain.matching").joinpath("model.json").read_text()
    return MatchModel.from_json(text)


# Fewer anchor pairs than this and a field keeps its prior m: too little evidence to move it.
_MIN_ANCHORS = 50
_PRIOR_STRENGTH = 200  # the prior m counts as this many anchor pairs
_ID_ANCHOR_NAMES = ("exact_hanzi", "exact_pinyin")


def estimate(
    start: MatchModel,
    candidate_patterns: Iterable[Pattern],
    random_patterns: Iterable[Pattern],
    *,
    version: str,
) -> MatchModel:
    """Estimates the model from the data.

    u: the share of each level among random pairs, leaving out the few that are surely the
    same person (`_surely_same`).
    m: the share of each level among *anchor* pairs, candidate pairs that are the same person
    beyond reasonable doubt without the field in question — pairs agreeing on a valid document
    number for every other field, and pairs agreeing on name, birth date and a contact or the
    address for the document field. Unlike expectation maximisation, this cannot drift into a "match" class
    that is really "same surname", and each m can be checked by hand.
    """
    index = {name: i for i, name in enumerate(FIELDS)}
    u = _level_shares((p for p in random_patterns if not _surely_same(p, index)), start.u)
    by_document: dict[str, dict[str, int]] = {f: dict.fromkeys(LEVELS[f], 0) for f in FIELDS}
    by_person: dict[str, int] = dict.fromkeys(LEVELS["id"], 0)
    for pattern in candidate_patterns:
        if pattern[index["id"]] == "exact_valid":
            for name, level in zip(FIELDS, pattern, strict=True):
                if level != NULL and name != "id":
                    by_document[name][level] += 1
        if (
            pattern[index["name"]] in _ID_ANCHOR_NAMES
            and pattern[index["birth_date"]] == "exact"
            and (
                "same" in (pattern[index["phone"]], pattern[index["email"]])
                or pattern[index["address"]] in ("exact", "similar")
            )
            and pattern[index["id"]] != NULL
        ):
            by_person[pattern[index["id"]]] += 1
    by_document["id"] = by_person
    m: dict[str, dict[str, float]] = {}
    for name in FIELDS:
        seen = sum(by_document[name].values())
        if seen < _MIN_ANCHORS:
            m[name] = dict(start.m[name])
            continue
        # Smoothed towards the prior: anchors are clean records (a birth date read off a valid
        # ID always agrees), so a level they never show is rare among matches, not impossible.
        m[name] = {
            level: max(
                (count + _PRIOR_STRENGTH * start.m[name][level]) / (seen + _PRIOR_STRENGTH), _FLOOR
            )
            for level, count in by_document[name].items()
        }
    return MatchModel(
        version=version,
        prior=start.prior,
        m=m,
        u=u,
        link_weight=start.link_weight,
        review_weight=start.review_weight,
    )


def _surely_same(pattern: Pattern, index: Mapping[str, int]) -> bool:
    """A pair the same person beyond reasonable doubt: the same document number and the same
    name or birth date, or the same name and birth date and a shared contact or address.

    u is P(level | different people). A random pair is almost always two people, but not
    always: in a store where most persons have a duplicate (FEBRL4: 10,000 records, one
    duplicate each) true pairs drawn at random are as frequent as chance agreements, and would
    count the very levels that identify a person as chance.
    """
    same_document = pattern[index["id"]] in ("exact_valid", "exact")
    same_name = pattern[index["name"]] in ("exact_hanzi", "exact_pinyin", "close")
    same_birth = pattern[index["birth_date"]] == "exact"
    shared = "same" in (pattern[index["phone"]], pattern[index["email"]]) or pattern[
        index["address"]
    ] in ("exact", "similar")
    return (same_document and (same_name or same_birth)) or (
        pattern[index["name"]] in _ID_ANCHOR_NAMES and same_birth and shared
    )


def _level_shares(
    patterns: Iterable[Pattern], fallback: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, int]] = {f: dict.fromkeys(LEVELS[f], 0) for f in FIELDS}
    for pattern in patterns:
        for name, level in zip(FIELDS, pattern, strict=True):
            if level != NULL:
                counts[name][level] += 1
    shares: dict[str, dict[str, float]] = {}
    for name in FIELDS:
        seen = sum(counts[name].values())
        if seen < 1000:  # too few comparable random pairs to trust: keep the prior belief
            shares[name] = dict(fallback[name])
            continue
        shares[name] = {
            level: max(count / seen, min(fallback[name][level], 1.0 / seen))
            for level, count in counts[name].items()
        }
    return shares
