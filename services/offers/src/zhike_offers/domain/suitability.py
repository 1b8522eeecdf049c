"""Suitability: may this customer be sold this product at all (a regulatory filter, not a
preference — it holds whatever the offer's priority and whether or not offers are personalised).

A product without a risk rating (product_risk 0) suits everyone. An investment product rated
R1..R5 needs a valid risk assessment of at least the same level: a C_n customer may buy up to
R_n. An assessment without an expiry date, or expired (from its expiry day on, as the profile
counts it), suits no rated product until the customer is assessed again.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from zhike_offers.domain.facts import OfferFacts


class Unsuitable(enum.StrEnum):
    NO_ASSESSMENT = "no_assessment"
    ASSESSMENT_EXPIRED = "assessment_expired"
    RISK_TOO_HIGH = "risk_too_high"


@dataclass(frozen=True)
class Unsuitability:
    reason: Unsuitable
    explanation: str  # names the rule, never the party's own level or dates


def check_suitability(product_risk: int, facts: OfferFacts, today: dt.date) -> Unsuitability | None:
    """None when the product suits the party as of `today`, else why not."""
    if product_risk <= 0:
        return None
    if facts.customer_risk <= 0 or facts.risk_expires_on is None:
        return unsuitability(Unsuitable.NO_ASSESSMENT, product_risk)
    if today >= facts.risk_expires_on:
        return unsuitability(Unsuitable.ASSESSMENT_EXPIRED, product_risk)
    if facts.customer_risk < product_risk:
        return unsuitability(Unsuitable.RISK_TOO_HIGH, product_risk)
    return None


def unsuitability(reason: Unsuitable, product_risk: int) -> Unsuitability:
    """The reason worded: it names the product's rating and the rule, nothing of the party."""
    if reason is Unsuitable.NO_ASSESSMENT:
        explanation = f"product R{product_risk} needs a valid risk assessment; there is none"
    elif reason is Unsuitable.ASSESSMENT_EXPIRED:
        explanation = f"product R{product_risk} needs a valid risk assessment; it has expired"
    else:
        explanation = f"product R{product_risk} needs a C{product_risk} or higher risk assessment"
    return Unsuitability(reason, explanation)
