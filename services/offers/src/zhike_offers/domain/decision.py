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
from zhike_offers.domain.suitability import Unsuitable, check_suitability, unsuitability
from zhike_runtime.validation import Violations

MAX_OFFERS = 20
MAX_CONTEXT_ENTRIES = 16  # the contract's limit (DecideOffersRequest.context)


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
        violations.add("context", f"at most {MAX_CONTEXT_ENTRIES} entries, got {len(context)}")
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
    # True when the explanation (and clause text) follow from the offer version, the reason,
    # its clause index, unsuitability or factors and the decision: `reworded` gives the item
    # back from those, so the decision log keeps such an item without its words.
    offer_worded: bool = dataclasses.field(default=False, compare=False, repr=False)


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
    explain = request.explain
    today = now.astimezone(config.time_zone).date()
    segment = facts.primary_segment if facts.personalised_offers else "all"
    base_context = config.channel_weights.get(request.channel, 1.0)
    if request.placement:
        base_context *= config.placement_weights.get(request.placement, 1.0)
    # Sorted: the same float product whatever order the request listed its context in.
    context_keys = [f"{key}={value}" for key, value in sorted(request.context.items())]

    # Every offer's rules in one evaluation, naming each offer's first clause that fails.
    activation = catalogue.environment.activation(
        facts, channel=request.channel, placement=request.placement, today=today
    )
    verdicts = catalogue.rules.verdicts(activation)
    failing = verdicts.first_failing
    wording = _wording(catalogue)
    basic = wording.basic(
        request.channel, request.placement, request.outbound, facts.personalised_offers
    )
    # Why each offer was not chosen, by its place in the catalogue (so in offer id order).
    rejected: list[NotChosen | None] = [None] * len(catalogue.offers)
    ranked: list[tuple[Factors, int, Offer]] = []
    for index, offer in enumerate(catalogue.offers):
        if offer.retired or offer.offer_id in exclude:
            continue  # not a candidate at all
        # The checks in their order; the first that fails is the reason.
        if not offer.valid_at(now):
            rejected[index] = wording.window(index)
            continue
        rejection = basic[index]
        if rejection is None and failing[index] >= 0:
            why = verdicts.not_evaluable.get(index)
            rejection = (
                wording.clause(index, failing[index])
                if why is None
                else clause_rejection(offer, failing[index], why)  # CEL's error: never kept
            )
        if rejection is None and offer.product_risk > 0:
            unsuitable = check_suitability(offer.product_risk, facts, today)
            if unsuitable is not None:
                rejection = wording.unsuitable(index, unsuitable.reason)
        if rejection is not None:
            rejected[index] = rejection
            continue
        rng = None
        if config.estimator is Estimator.THOMPSON:
            # One generator per offer, seeded by the offer: a draw does not depend on which
            # other offers are candidates or in what order they are listed.
            rng = random.Random(f"{seed}/{offer.offer_id}/{segment}")
        propensity = model.estimate(offer.offer_id, segment, rng=rng)
        ranked.append(
            (_factors(offer, propensity, base_context, context_keys, config), index, offer)
        )
    ranked.sort(key=lambda item: (-item[0].priority, item[2].offer_id))

    # The contact policy goes down the ranking: it removes offers without reordering the rest,
    # so unless asked to explain, it need not look past the last offer chosen.
    budget: RemainingBudget | None = None
    marketing_chosen = 0
    chosen: list[ChosenOffer] = []
    for factors, index, offer in ranked:
        if len(chosen) >= request.max_offers and not explain:
            break
        suppression = config.policy.check(
            offer,
            channel=request.channel,
            facts=facts,
            history=history,
            now=now,
            with_budget=False,  # the decision applies the shared budget when choosing
        )
        if suppression is not None:
            rejected[index] = NotChosen(
                offer.offer_id,
                offer.version,
                Reason.SUPPRESSED,
                suppression.explanation,
                suppression=suppression.rule,
                factors=factors,
            )
            continue
        if len(chosen) >= request.max_offers:
            rejected[index] = cutoff_rejection(offer, request.max_offers, factors)
            continue
        if config.policy.limited_by_budget(offer, request.channel):
            budget = budget or config.policy.remaining_budget(history, now)
            if budget is not None and marketing_chosen >= budget.remaining:
                rejected[index] = NotChosen(
                    offer.offer_id,
                    offer.version,
                    Reason.SUPPRESSED,
                    _budget_text(budget, marketing_chosen),
                    suppression=SuppressionRule.BUDGET,
                    factors=factors,
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
        not_chosen=tuple(item for item in rejected if item is not None) if explain else (),
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
    channel or no longer an outbound offer (the bank stopped pushing it), when the party's switch,
    eligibility, applicability or suitability says no, or the party withdrew consent or asked not
    to be contacted. Budget, caps, cool-down and ignores are not reasons: the decision itself
    already counted against them."""
    config = config or _default_config()
    offer = catalogue.offer(offer_id)
    if offer is None or offer.retired:
        version = 0 if offer is None else offer.version
        return NotChosen(offer_id, version, Reason.RETIRED, "the offer is retired or removed")
    if not offer.valid_at(now):
        return window_rejection(offer)
    rejection = basic_rejection(
        offer,
        channel=channel,
        placement="",
        outbound_only=True,
        personalised=facts.personalised_offers,
    )
    if rejection is not None:
        return rejection
    today = now.astimezone(config.time_zone).date()
    activation = catalogue.environment.activation(facts, channel=channel, placement="", today=today)
    failed = first_false((*offer.eligibility, *offer.applicability), activation)
    if failed is not None:
        return clause_rejection(offer, failed.index, failed.why)
    unsuitable = check_suitability(offer.product_risk, facts, today)
    if unsuitable is not None:
        return unsuitable_rejection(offer, unsuitable.reason)
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


# --- wording ------------------------------------------------------------------------------
# An explanation names the rule, never the party's values, so most follow from the offer and
# the reason alone: these functions word them, for a decision and again for the decision log
# (which keeps such reasons without their words: `NotChosen.offer_worded`, `reworded`).


def window_rejection(offer: Offer) -> NotChosen:
    parts = []
    if offer.valid_from is not None:
        parts.append(f"from {offer.valid_from.isoformat()}")
    if offer.valid_until is not None:
        parts.append(f"until {offer.valid_until.isoformat()}")
    return NotChosen(
        offer.offer_id,
        offer.version,
        Reason.NOT_VALID_NOW,
        f"valid {' '.join(parts)}",
        offer_worded=True,
    )


def basic_rejection(
    offer: Offer, *, channel: str, placement: str, outbound_only: bool, personalised: bool
) -> NotChosen | None:
    """The channel and placement (and, deciding outbound, being an outbound offer), then the
    party's personalised-offers switch; the validity window is checked before these."""
    if channel not in offer.channels:
        explanation = f"offered on {', '.join(offer.channels)}"
    elif outbound_only and not offer.outbound:
        explanation = "not an outbound offer"
    elif placement and offer.placements and placement not in offer.placements:
        explanation = f"offered in placements {', '.join(offer.placements)}"
    elif offer.personalised and not personalised:
        return NotChosen(
            offer.offer_id,
            offer.version,
            Reason.NOT_PERSONALISED,
            "the party switched personalised offers off; this offer is personalised",
            offer_worded=True,
        )
    else:
        return None
    return NotChosen(offer.offer_id, offer.version, Reason.CHANNEL, explanation, offer_worded=True)


def clause_rejection(offer: Offer, position: int, why: str = "false") -> NotChosen:
    """The offer's clause at `position` in its eligibility then applicability clauses failed:
    `why` is "false" or "not evaluable (…)"."""
    eligibility = len(offer.eligibility)
    if position < eligibility:
        reason, index, clause = Reason.INELIGIBLE, position, offer.eligibility[position]
    else:
        index = position - eligibility
        reason, clause = Reason.NOT_APPLICABLE, offer.applicability[index]
    return NotChosen(
        offer.offer_id,
        offer.version,
        reason,
        f"{clause.field} is {why}: {clause.text}",
        clause_index=index,
        clause_text=clause.text,
        # A clause that could not be evaluated is said with CEL's error: kept with it.
        offer_worded=why == "false",
    )


def unsuitable_rejection(offer: Offer, unsuitable: Unsuitable) -> NotChosen:
    return NotChosen(
        offer.offer_id,
        offer.version,
        Reason.UNSUITABLE,
        unsuitability(unsuitable, offer.product_risk).explanation,
        unsuitable=unsuitable,
        offer_worded=True,
    )


def cutoff_rejection(offer: Offer, max_offers: int, factors: Factors) -> NotChosen:
    return NotChosen(
        offer.offer_id,
        offer.version,
        Reason.BELOW_CUTOFF,
        f"ranked below the {max_offers} offers asked for",
        factors=factors,
        offer_worded=True,
    )


def reworded(
    offer: Offer, item: NotChosen, *, decision: Decision, outbound_only: bool
) -> NotChosen:
    """`item` of `decision` as `decide` worded it, from the version of its offer (for an
    `offer_worded` item; `outbound_only`: whether it decided outbound); any other item as it
    is."""
    if offer.offer_id != item.offer_id or offer.version != item.version:
        raise ValueError("reworded needs the offer version the item names")
    found: NotChosen | None = None
    if item.reason is Reason.NOT_VALID_NOW:
        found = window_rejection(offer)
    elif item.reason in (Reason.CHANNEL, Reason.NOT_PERSONALISED):
        found = basic_rejection(
            offer,
            channel=decision.channel,
            placement=decision.placement,
            outbound_only=outbound_only,
            personalised=item.reason is not Reason.NOT_PERSONALISED,
        )
    elif item.reason in _CLAUSE_REASONS and item.clause_index is not None:
        position = item.clause_index
        if item.reason is Reason.NOT_APPLICABLE:
            position += len(offer.eligibility)
        if position < len(offer.eligibility) + len(offer.applicability):
            found = clause_rejection(offer, position)
    elif item.reason is Reason.UNSUITABLE and item.unsuitable is not None:
        found = unsuitable_rejection(offer, item.unsuitable)
    elif item.reason is Reason.BELOW_CUTOFF and item.factors is not None:
        # Only once as many offers as were asked for are chosen is one below the cutoff.
        found = cutoff_rejection(offer, len(decision.chosen), item.factors)
    return item if found is None or found.reason is not item.reason else found


_CLAUSE_REASONS = frozenset({Reason.INELIGIBLE, Reason.NOT_APPLICABLE})
# Distinct (channel, placement, kind, switch) kept per catalogue: placements come from
# callers, so the cache is bounded.
_MAX_BASIC_KEYS = 256


class _Wording:
    """The static rejections of one catalogue, worded once: most offers of a decision are
    rejected for the same reason every time (another channel, the same false clause), and
    wording a reason costs more than finding it. NotChosen is immutable: decisions share these.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self._offers = catalogue.offers
        self._basic: dict[tuple[str, str, bool, bool], tuple[NotChosen | None, ...]] = {}
        self._window: dict[int, NotChosen] = {}
        self._clauses: dict[tuple[int, int], NotChosen] = {}
        self._unsuitable: dict[tuple[int, Unsuitable], NotChosen] = {}

    def basic(
        self, channel: str, placement: str, outbound_only: bool, personalised: bool
    ) -> tuple[NotChosen | None, ...]:
        key = (channel, placement, outbound_only, personalised)
        found = self._basic.get(key)
        if found is None:
            if len(self._basic) >= _MAX_BASIC_KEYS:
                self._basic.clear()
            found = self._basic[key] = tuple(
                basic_rejection(
                    offer,
                    channel=channel,
                    placement=placement,
                    outbound_only=outbound_only,
                    personalised=personalised,
                )
                for offer in self._offers
            )
        return found

    def window(self, index: int) -> NotChosen:
        found = self._window.get(index)
        if found is None:
            found = self._window[index] = window_rejection(self._offers[index])
        return found

    def clause(self, index: int, position: int) -> NotChosen:
        """The offer's clause at `position` was false."""
        found = self._clauses.get((index, position))
        if found is None:
            found = self._clauses[(index, position)] = clause_rejection(
                self._offers[index], position
            )
        return found

    def unsuitable(self, index: int, unsuitable: Unsuitable) -> NotChosen:
        found = self._unsuitable.get((index, unsuitable))
        if found is None:
            found = self._unsuitable[(index, unsuitable)] = unsuitable_rejection(
                self._offers[index], unsuitable
            )
        return found


@functools.lru_cache(maxsize=16)
def _wording(catalogue: Catalogue) -> _Wording:
    return _Wording(catalogue)


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
