"""The decision log's JSON: what an arbitration chose, every candidate it did not choose and
why, and the outbound decisions it withdrew. Plain values only, so a log entry written by one
version of the service reads in the next.

A candidate not chosen is most of an entry, and most are rejected for a reason its offer's
version words (another channel, a clause false, unsuitable): those are kept as
`[offer_id, version, reason]` plus the clause index, the unsuitability or (below the cutoff)
the factors, without the words, which the service puts back from the offer version
(`decision.reworded`). The others (the contact policy's, a clause CEL could not evaluate) carry
the party's counts or CEL's error and are kept whole, as objects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from zhike_offers.domain.catalogue import Category
from zhike_offers.domain.contact_policy import SuppressionRule
from zhike_offers.domain.decision import ChosenOffer, Factors, NotChosen, Reason
from zhike_offers.domain.model import WithdrawnDecision
from zhike_offers.domain.suitability import Unsuitable


def _factors(factors: Factors | None) -> list[float] | None:
    if factors is None:
        return None
    return [
        factors.propensity,
        factors.context_weight,
        factors.value,
        factors.levers,
        factors.priority,
    ]


def _read_factors(value: list[float] | None) -> Factors | None:
    return None if value is None else Factors(*value)


def chosen_json(chosen: ChosenOffer) -> dict[str, Any]:
    return {
        "offer_id": chosen.offer_id,
        "version": chosen.version,
        "rank": chosen.rank,
        "factors": _factors(chosen.factors),
        "category": chosen.category.value,
        "template_id": chosen.template_id,
    }


def read_chosen(value: Mapping[str, Any]) -> ChosenOffer:
    factors = _read_factors(value["factors"])
    assert factors is not None
    return ChosenOffer(
        value["offer_id"],
        value["version"],
        value["rank"],
        factors,
        Category(value["category"]),
        value["template_id"],
    )


def not_chosen_json(item: NotChosen) -> list[Any] | dict[str, Any]:
    if not item.offer_worded:
        return _whole(item)
    # A StrEnum member is its value as JSON.
    if item.clause_index is not None:
        return [item.offer_id, item.version, item.reason, item.clause_index]
    if item.unsuitable is not None:
        return [item.offer_id, item.version, item.reason, item.unsuitable]
    if item.factors is not None:
        return [item.offer_id, item.version, item.reason, _factors(item.factors)]
    return [item.offer_id, item.version, item.reason]


def _whole(item: NotChosen) -> dict[str, Any]:
    found: dict[str, Any] = {
        "offer_id": item.offer_id,
        "version": item.version,
        "reason": item.reason.value,
        "explanation": item.explanation,
    }
    # Only what the reason has.
    if item.clause_index is not None:
        found["clause_index"] = item.clause_index
        found["clause_text"] = item.clause_text
    if item.suppression is not None:
        found["suppression"] = item.suppression.value
    if item.unsuitable is not None:
        found["unsuitable"] = item.unsuitable.value
    if item.factors is not None:
        found["factors"] = _factors(item.factors)
    return found


def read_not_chosen(value: Mapping[str, Any] | list[Any]) -> NotChosen:
    """A compact item comes back without its words (explanation and clause text empty)."""
    if isinstance(value, list):
        offer_id, version, reason_value, *detail = value
        reason = Reason(reason_value)
        clause_index = unsuitable = factors = None
        if detail and reason is Reason.UNSUITABLE:
            unsuitable = Unsuitable(detail[0])
        elif detail and reason is Reason.BELOW_CUTOFF:
            factors = _read_factors(detail[0])
        elif detail:
            clause_index = int(detail[0])
        return NotChosen(
            offer_id,
            version,
            reason,
            "",
            clause_index=clause_index,
            unsuitable=unsuitable,
            factors=factors,
        )
    suppression = value.get("suppression")
    unsuitable_value = value.get("unsuitable")
    return NotChosen(
        offer_id=value["offer_id"],
        version=value["version"],
        reason=Reason(value["reason"]),
        explanation=value["explanation"],
        clause_index=value.get("clause_index"),
        clause_text=value.get("clause_text", ""),
        suppression=None if suppression is None else SuppressionRule(suppression),
        unsuitable=None if unsuitable_value is None else Unsuitable(unsuitable_value),
        factors=_read_factors(value.get("factors")),
    )


def withdrawn_json(item: WithdrawnDecision) -> dict[str, Any]:
    return {
        "decision_id": item.decision_id,
        "offer_id": item.offer_id,
        "offer_version": item.offer_version,
        "channel": item.channel,
        "why": _whole(item.why),  # few: kept with their words
        "at": item.at.isoformat(),
    }


def read_withdrawn(value: Mapping[str, Any]) -> WithdrawnDecision:
    return WithdrawnDecision(
        value["decision_id"],
        value["offer_id"],
        value["offer_version"],
        value["channel"],
        read_not_chosen(value["why"]),
        dt.datetime.fromisoformat(value["at"]),
    )


# --- the party's switches ---------------------------------------------------------------------


def channel_text(channels: frozenset[str]) -> str:
    """The opted-out channels as the party row keeps them: sorted, comma-separated."""
    return ",".join(sorted(channels))


def channel_set(text: str | None) -> frozenset[str]:
    return frozenset(filter(None, (text or "").split(",")))
