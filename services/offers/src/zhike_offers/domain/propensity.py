"""Propensity that learns: a Beta–Binomial model per offer × segment (pure).

Each (offer, segment key) keeps Beta(α, β) = prior + what the customers did:

- an ACCEPT is a success, a CLICK half a success (interest, not yet a sale);
- a DECLINE or an IGNORE is a failure;
- impressions, outbound decisions and deliveries teach nothing by themselves (their outcome
  arrives as one of the above).

The prior for a new offer is Beta(1, 9): mean 0.1, worth ten observations, so the first few
responses move it but do not swing it. The estimate is the posterior mean, or with Thompson
sampling a draw from the posterior using a random generator passed in (so a decision stays a
function of its inputs: the same seed gives the same draw). It is clamped to [0.02, 0.98]: a new
or unlucky offer still gets shown sometimes, and no offer is ever certain.

The segment key is the party's primary segment (`OfferFacts.primary_segment`), or "all" when the
party switched personalised offers off — then nothing about the party shapes the ranking.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from zhike_offers.domain.contact_policy import ContactKind

# kind → (successes, failures) it adds. Storage may apply these as increments of its counters.
OUTCOME_WEIGHTS: Mapping[ContactKind, tuple[float, float]] = MappingProxyType(
    {
        ContactKind.ACCEPT: (1.0, 0.0),
        ContactKind.CLICK: (0.5, 0.0),
        ContactKind.DECLINE: (0.0, 1.0),
        ContactKind.IGNORE: (0.0, 1.0),
    }
)


class Estimator(enum.StrEnum):
    MEAN = "mean"
    THOMPSON = "thompson"


@dataclass(frozen=True)
class Counts:
    successes: float = 0.0
    failures: float = 0.0


_NONE_YET = Counts()


@dataclass(frozen=True)
class BetaPrior:
    alpha: float = 1.0
    beta: float = 9.0

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError("a Beta prior needs alpha > 0 and beta > 0")


@dataclass(frozen=True)
class PropensityModel:
    counts: Mapping[tuple[str, str], Counts] = field(
        default_factory=dict
    )  # (offer_id, segment key) → counts
    prior: BetaPrior = BetaPrior()
    floor: float = 0.02
    ceiling: float = 0.98
    version: str = ""  # set by whoever loads the model; recorded with each decision

    def __post_init__(self) -> None:
        if not 0.0 < self.floor <= self.ceiling < 1.0:
            raise ValueError("propensity bounds need 0 < floor <= ceiling < 1")

    def update(self, offer_id: str, segment_key: str, kind: ContactKind) -> PropensityModel:
        """The model after one response (a new model; this one is unchanged)."""
        successes, failures = OUTCOME_WEIGHTS.get(kind, (0.0, 0.0))
        if successes == 0.0 and failures == 0.0:
            return self
        key = (offer_id, segment_key)
        before = self.counts.get(key, Counts())
        counts = dict(self.counts)
        counts[key] = Counts(before.successes + successes, before.failures + failures)
        return PropensityModel(
            MappingProxyType(counts), self.prior, self.floor, self.ceiling, self.version
        )

    def posterior(self, offer_id: str, segment_key: str) -> tuple[float, float]:
        counts = self.counts.get((offer_id, segment_key), _NONE_YET)
        return self.prior.alpha + counts.successes, self.prior.beta + counts.failures

    def estimate(
        self, offer_id: str, segment_key: str, *, rng: random.Random | None = None
    ) -> float:
        """The posterior mean, or with `rng` a Thompson draw; always within the bounds."""
        alpha, beta = self.posterior(offer_id, segment_key)
        value = alpha / (alpha + beta) if rng is None else rng.betavariate(alpha, beta)
        return min(max(value, self.floor), self.ceiling)
