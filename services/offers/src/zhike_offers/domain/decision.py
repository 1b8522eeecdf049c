"""Arbitration: which offers, in which order, and why not the others (pure).

`decide` is a function of its inputs only — facts, catalogue, contact history, propensity model,
request, the time and (for Thompson sampling) a seed — so a logged decision can be replayed and
the same inputs always give the same ranking, whatever order offers or events were listed in.

Each live offer goes through, in order: validity window, channel and placement (and, for a
proactive outbound decision, being an outbound offer), the party's personalised-offers switch,
eligibility, applicability, suitability, then the contact policy. The survivors are ranked by

    priority = P × C × V × L

- P, propensity: the model's estimate for (offer, the party's primary segment), in [0.02, 0.98].
- C, context weight: the channel's and the placement's configured weights (default 1.0; they
  scale every candidate of a decision alike, and make priorities comparable across channels in
  the decision log and in simulations) times the offer's `context_boosts` for the request's
  context ("journey=fx_transfer" → 1.5).
- V, value: the offer's value (CNY) over a fixed reference value (CNY 1,000 → V = 1), at least
  0.01 so a zero-value service offer still ranks. Linear, so P × V is the expected value of the
  contact; a fixed reference, not the maximum among candidates, so an offer's priority never
  depends on which other offers happen to compete.
- L, levers: the offer's business weight.

Ties go to the smaller offer id. The first `max_offers` are chosen, except that marketing offers
on a budget channel are chosen only while the marketing budget has room (counting those chosen
in this decision). With `explain`, every candidate not chosen comes back with its reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

from cel_expr_python import cel

from zhike_offers.domain.catalogue import (
    CONTEXT_KEY_PATTERN,
    PLACEMENT_PATTERN,
    Catalogue,
    Category,
    Offer,
)
from zhike_offers.domain.contact_policy import (
    ContactEvent,
    ContactHistory,
    ContactPolicy,
    RemainingBudget,
    SuppressionRule,
    budget_explanation,
)
from zhike_offers.domain.eligibility import CHANNELS, OUTBOUND_CHANNELS, first_false
from zhike_offers.domain.facts import OfferFacts
from zhike_offers.domain.propensity import Estimator, PropensityModel
from zhike_offers.domain.suitability import Unsuitable, check_suitability
from zhike_runtime.validation import Violations

MAX_OFFERS = 20
MAX_CONTEXT_ENTRIES = 20


class Reason(enum.StrEnum):
    RETIRED = "retired"  # only for an earlier decision: the offer is gone or retired
    NOT_VALID_NOW = "not_valid_now"
    CHANNEL = "channel"
    NOT_PERSONALISED = "not_personalised"
    INELIGIBLE = "ineligible"
    NOT_APPLICABLE = "not_applicable"
    UNSUITABLE = "unsuitable"
    SUPPRESSED = "suppressed"
    BELOW_CUTOFF = "below_cutoff"


@dataclass(frozen=True)
class DecisionRequest:
    channel: str
    placement: str = ""
    max_offers: int = 1
    explain: bool = False
    context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # A proactive decision (on a profile change) for an outbound channel: outbound offers only.
    outbound: bool = False


def decision_request(
    *,
    channel: str,
    placement: str = "",
    max_offers: int = 1,
    explain: bool = False,
    context: Mapping[str, str] | None = None,
    outbound: bool = False,
) -> DecisionRequest:
    """A checked request; `InvalidArgument` names every bad field."""
    violations = Violations()
    if not channel:
        violations.add("channel", "is required")
    elif channel not in CHANNELS:
        violations.add("channel", f"must be one of {', '.join(CHANNELS)}")
    if placement and not PLACEMENT_PATTERN.fullmatch(placement):
        violations.add("placement", "1 to 64 of a-z, 0-9 and '_'")
    if not 1 <= max_offers <= MAX_OFFERS:
        violations.add("max_offers", f"must be from 1 to {MAX_OFFERS}")
    context = dict(context or {})
    if len(context) > MAX_CONTEXT_ENTRIES:
        violations.add("context", f"at most {MAX_CONTEXT_ENTRIES} entries")
    else:
        for key, value in sorted(context.items()):
            if not CONTEXT_KEY_PATTERN.fullmatch(f"{key}={value}"):
                violations.add(
                    f"context.{key}"[:80], "key: a-z, 0-9, '_'; value: A-Z, a-z, 0-9, '_.-'"
                )
    if outbound and channel in CHANNELS and channel not in OUTBOUND_CHANNELS:
        violations.add(
            "channel", f"an outbound decision needs {', '.join(sorted(OUTBOUND_CHANNELS))}"
        )
    violations.raise_if_any()
    return DecisionRequest(
        channel, placement, max_offers, explain, MappingProxyType(context), outbound
    )


def _shanghai() -> dt.tzinfo:
    return ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class DecisionConfig:
    policy: ContactPolicy = dataclasses.field(default_factory=ContactPolicy)
    channel_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    placement_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    reference_value: Decimal = Decimal(1000)  # CNY value that scores V = 1
    min_value_factor: float = 0.01
    estimator: Estimator = Estimator.MEAN
    # The bank's day: when a risk assessment's expiry date has passed.
    time_zone: dt.tzinfo = dataclasses.field(default_factory=_shanghai)


@functools.cache
def _default_config() -> DecisionConfig:
    return DecisionConfig()


@dataclass(frozen=True)
class Factors:
    propensity: float  # P
    context_weight: float  # C
    value: float  # V
    levers: float  # L
    priority: float  # P × C × V × L


@dataclass(frozen=True)
class ChosenOffer:
    offer_id: str
    version: int
    rank: int  # 1 = best
    factors: Factors
    category: Category
    template_id: str  # for the decision's channel; "" when the offer has none there


@dataclass(frozen=True)
class NotChosen:
    offer_id: str
    version: int
    reason: Reason
    explanation: str
    clause_index: int | None = None  # INELIGIBLE / NOT_APPLICABLE: the first clause that failed
    clause_text: str = ""
    suppression: SuppressionRule | None = None  # SUPPRESSED
    unsuitable: Unsuitable | None = None  # UNSUITABLE
    factors: Factors | None = None  # ranked but not chosen (BELOW_CUTOFF, budget)


@dataclass(frozen=True)
class Decision:
    party_id: str
    profile_version: int
    channel: str
    placement: str
    decided_at: dt.datetime
    catalogue_version: str
    model_version: str
    seed: int | None
    # False when the party switched personalised offers off: only non-personalised offers were
    # considered, and the response must say so (PIPL art. 24).
    personalised: bool
    chosen: tuple[ChosenOffer, ...]
    not_chosen: tuple[NotChosen, ...]  # empty unless the request asked to explain


def decide(
    facts: OfferFacts,
    catalogue: Catalogue,
    history: ContactHistory | Iterable[ContactEvent],
    model: PropensityModel,
    request: DecisionRequest,
    now: dt.datetime,
    *,
    seed: int | None = None,
    config: DecisionConfig | None = None,
    exclude: Collection[str] = (),
) -> Decision:
    """Rank the offers for `facts` on the request's channel as of `now` (aware). With the
    Thompson estimator a `seed` is required: the caller records it so the decision replays.
    Offers in `exclude` are no candidates (an outbound decision leaves out the offers already
    decided for the party and not withdrawn, so they take no share of the budget)."""
    config = config or _default_config()
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    if config.estimator is Estimator.THOMPSON and seed is None:
        raise ValueError("Thompson sampling needs a seed")
    history = history if isinstance(history, ContactHistory) else ContactHistory(history)
    screen = _Screen(
        facts, catalogue, config, request.channel, request.placement, now, explain=request.explain
    )
    segment = facts.primary_segment if facts.personalised_offers else "all"
    base_context = config.channel_weights.get(request.channel, 1.0)
    if request.placement:
        base_context *= config.placement_weights.get(request.placement, 1.0)
    # Sorted: the same float product whatever order the request listed its context in.
    context_keys = [f"{key}={value}" for key, value in sorted(request.context.items())]

    # Every offer's rules in one evaluation; clause by clause only to explain a failure.
    rules_hold = catalogue.rules.holding(screen.activation())
    not_chosen: list[NotChosen] = []
    ranked: list[tuple[Factors, Offer]] = []
    for index, offer in enumerate(catalogue.offers):
        if offer.retired or offer.offer_id in exclude:
            continue  # not a candidate at all
        if not request.explain and not rules_hold[index]:
            continue  # rejected, and nobody asked why
        rejection = screen.rejection(
            offer, outbound_only=request.outbound, rules_hold=rules_hold[index]
        )
        if rejection is not None:
            if request.explain:
                not_chosen.append(rejection)
            continue
        rng = None
        if config.estimator is Estimator.THOMPSON:
            # One generator per offer, seeded by the offer: a draw does not depend on which
            # other offers are candidates or in what order they are listed.
            rng = random.Random(f"{seed}/{offer.offer_id}/{segment}")
        propensity = model.estimate(offer.offer_id, segment, rng=rng)
        ranked.append((_factors(offer, propensity, base_context, context_keys, config), offer))
    ranked.sort(key=lambda item: (-item[0].priority, item[1].offer_id))

    # The contact policy goes down the ranking: it removes offers without reordering the rest,
    # so unless asked to explain, it need not look past the last offer chosen.
    budget: RemainingBudget | None = None
    marketing_chosen = 0
    chosen: list[ChosenOffer] = []
    for factors, offer in ranked:
        if len(chosen) >= request.max_offers and not request.explain:
            break
        suppressed = screen.suppression(offer, history, factors)
        if suppressed is not None:
            not_chosen.append(suppressed)
            continue
        if len(chosen) >= request.max_offers:
            not_chosen.append(
                NotChosen(
                    offer.offer_id,
                    offer.version,
                    Reason.BELOW_CUTOFF,
                    f"ranked below the {request.max_offers} offers asked for",
                    factors=factors,
                )
            )
            continue
        if config.policy.limited_by_budget(offer, request.channel):
            budget = budget or config.policy.remaining_budget(history, now)
            if budget is not None and marketing_chosen >= budget.remaining:
                not_chosen.append(
                    NotChosen(
                        offer.offer_id,
                        offer.version,
                        Reason.SUPPRESSED,
                        _budget_text(budget, marketing_chosen),
                        suppression=SuppressionRule.BUDGET,
                        factors=factors,
                    )
                )
                continue
            marketing_chosen += 1
        chosen.append(
            ChosenOffer(
                offer.offer_id,
                offer.version,
                len(chosen) + 1,
                factors,
                offer.category,
                offer.templates.get(request.channel, ""),
            )
        )
    return Decision(
        party_id=facts.party_id,
        profile_version=facts.profile_version,
        channel=request.channel,
        placement=request.placement,
        decided_at=now,
        catalogue_version=catalogue.version,
        model_version=model.version,
        seed=seed,
        personalised=facts.personalised_offers,
        chosen=tuple(chosen),
        not_chosen=tuple(sorted(not_chosen, key=lambda item: item.offer_id))
        if request.explain
        else (),
    )


def withdrawal_reason(
    offer_id: str,
    *,
    channel: str,
    facts: OfferFacts,
    catalogue: Catalogue,
    now: dt.datetime,
    config: DecisionConfig | None = None,
) -> NotChosen | None:
    """Why an earlier outbound decision of `offer_id` on `channel` no longer holds for the
    party (so its queued messages must be cancelled), or None when it still does.

    It no longer holds when the offer is gone, retired or out of its window, no longer on that
    channel, when the party's switch, eligibility, applicability or suitability says no, or the
    party withdrew consent or asked not to be contacted. Budget, caps, cool-down and ignores are
    not reasons: the decision itself already counted against them."""
    config = config or _default_config()
    offer = catalogue.offer(offer_id)
    if offer is None or offer.retired:
        version = 0 if offer is None else offer.version
        return NotChosen(offer_id, version, Reason.RETIRED, "the offer is retired or removed")
    screen = _Screen(facts, catalogue, config, channel, "", now, explain=True)
    rejection = screen.rejection(offer, outbound_only=False, rules_hold=None)
    if rejection is not None:
        return rejection
    suppression = config.policy.permission(offer, channel=channel, facts=facts)
    if suppression is None:
        return None
    return NotChosen(
        offer.offer_id,
        offer.version,
        Reason.SUPPRESSED,
        suppression.explanation,
        suppression=suppression.rule,
    )


# What a check returns when nobody asked to explain: a rejection, without its wording.
_REJECTED = NotChosen("", 0, Reason.CHANNEL, "")


class _Screen:
    """The per-offer checks of one decision, over one activation built on first use."""

    def __init__(
        self,
        facts: OfferFacts,
        catalogue: Catalogue,
        config: DecisionConfig,
        channel: str,
        placement: str,
        now: dt.datetime,
        *,
        explain: bool,
    ) -> None:
        self.explain = explain
        self.facts = facts
        self.catalogue = catalogue
        self.config = config
        self.channel = channel
        self.placement = placement
        self.now = now
        self.today = now.astimezone(config.time_zone).date()
        self._activation: cel.Activation | None = None

    def activation(self) -> cel.Activation:
        if self._activation is None:
            self._activation = self.catalogue.environment.activation(
                self.facts, channel=self.channel, placement=self.placement, today=self.today
            )
        return self._activation

    def rejection(
        self, offer: Offer, *, outbound_only: bool, rules_hold: bool | None
    ) -> NotChosen | None:
        """The first check `offer` fails, or None. `rules_hold`: the batch's verdict on its
        clauses, if known (they are then evaluated one by one only when they fail)."""
        if not self.explain:
            # Nobody will read why: skip the wording (most offers of a decision end here).
            if self._basic_reason(offer, outbound_only) is not None:
                return _REJECTED
        else:
            explanation = self._basic_explanation(offer, outbound_only)
            if explanation is not None:
                return NotChosen(offer.offer_id, offer.version, *explanation)
        if rules_hold is not True:
            for reason, clauses in (
                (Reason.INELIGIBLE, offer.eligibility),
                (Reason.NOT_APPLICABLE, offer.applicability),
            ):
                failed = first_false(clauses, self.activation())
                if failed is not None:
                    clause = failed.clause
                    return NotChosen(
                        offer.offer_id,
                        offer.version,
                        reason,
                        f"{clause.field} is {failed.why}: {clause.text}",
                        clause_index=failed.index,
                        clause_text=clause.text,
                    )
        unsuitable = check_suitability(offer.product_risk, self.facts, self.today)
        if unsuitable is not None:
            return NotChosen(
                offer.offer_id,
                offer.version,
                Reason.UNSUITABLE,
                unsuitable.explanation,
                unsuitable=unsuitable.reason,
            )
        return None

    def _basic_reason(self, offer: Offer, outbound_only: bool) -> Reason | None:
        if not offer.valid_at(self.now):
            return Reason.NOT_VALID_NOW
        if (
            self.channel not in offer.channels
            or (self.placement and offer.placements and self.placement not in offer.placements)
            or (outbound_only and not offer.outbound)
        ):
            return Reason.CHANNEL
        if offer.personalised and not self.facts.personalised_offers:
            return Reason.NOT_PERSONALISED
        return None

    def _basic_explanation(self, offer: Offer, outbound_only: bool) -> tuple[Reason, str] | None:
        reason = self._basic_reason(offer, outbound_only)
        if reason is Reason.NOT_VALID_NOW:
            return reason, _window_text(offer)
        if reason is Reason.CHANNEL:
            if self.channel not in offer.channels:
                return reason, f"offered on {', '.join(offer.channels)}"
            if outbound_only and not offer.outbound:
                return reason, "not an outbound offer"
            return reason, f"offered in placements {', '.join(offer.placements)}"
        if reason is Reason.NOT_PERSONALISED:
            return reason, "the party switched personalised offers off; this offer is personalised"
        return None

    def suppression(
        self, offer: Offer, history: ContactHistory, factors: Factors
    ) -> NotChosen | None:
        suppression = self.config.policy.check(
            offer,
            channel=self.channel,
            facts=self.facts,
            history=history,
            now=self.now,
            with_budget=False,  # the decision applies the shared budget when choosing
        )
        if suppression is None:
            return None
        return NotChosen(
            offer.offer_id,
            offer.version,
            Reason.SUPPRESSED,
            suppression.explanation,
            suppression=suppression.rule,
            factors=factors,
        )


def _factors(
    offer: Offer,
    propensity: float,
    base_context: float,
    context_keys: Sequence[str],
    config: DecisionConfig,
) -> Factors:
    context = base_context
    for key in context_keys:
        boost = offer.context_boosts.get(key)
        if boost is not None:
            context *= float(boost)
    value_factor = max(float(offer.value) / float(config.reference_value), config.min_value_factor)
    levers = float(offer.levers)
    return Factors(
        propensity=propensity,
        context_weight=context,
        value=value_factor,
        levers=levers,
        priority=propensity * context * value_factor * levers,
    )


def _budget_text(budget: RemainingBudget, chosen_here: int) -> str:
    if chosen_here == 0:
        return budget_explanation(budget)
    return (
        f"budget: {budget.used} marketing contacts in the last {budget.window.days} days and "
        f"{chosen_here} chosen in this decision (limit {budget.window.limit})"
    )


def _window_text(offer: Offer) -> str:
    parts = []
    if offer.valid_from is not None:
        parts.append(f"from {offer.valid_from.isoformat()}")
    if offer.valid_until is not None:
        parts.append(f"until {offer.valid_until.isoformat()}")
    return f"valid {' '.join(parts)}"
