"""`assess(facts, config)`: every assessment of one party on `facts.as_of`, as one value.

Pure and deterministic: the same facts and configuration give an equal `Assessment`, whichever
branch or channel asks and in whatever order the holdings were recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from zhike_profile.domain.assessment.config import AssessmentConfig
from zhike_profile.domain.assessment.risk import RiskView, assess_risk
from zhike_profile.domain.assessment.segments import (
    Segment,
    age_in_years,
    assess_segments,
    segment_environment,
)
from zhike_profile.domain.assessment.tier import Entitlement, TierResult, assess_tier
from zhike_profile.domain.assessment.totals import Totals, assess_totals
from zhike_profile.domain.assessment.value import CustomerValue, assess_value
from zhike_profile.domain.facts import PartyFacts


@dataclass(frozen=True)
class Assessment:
    party_id: str
    as_of: dt.date
    totals: Totals  # total assets and liabilities in CNY, per currency, the rates used
    tier: TierResult  # the bank-wide tier and why
    entitlements: tuple[Entitlement, ...]  # what the tier gives at every branch and channel
    value: CustomerValue  # 12-month revenue by product line, RFM, band, drivers
    segments: tuple[Segment, ...]  # in the order of the rules
    risk: RiskView  # the risk level and whether it is valid on as_of
    age: int | None  # whole years on as_of; None without a birth date


def assess(facts: PartyFacts, config: AssessmentConfig) -> Assessment:
    totals = assess_totals(facts, config.rates)
    tier = assess_tier(facts, config.tiers, totals.assets.minor_units)
    value = assess_value(facts, config.value, config.rates)
    risk = assess_risk(facts)
    env = segment_environment(facts, totals, tier, value, risk)
    return Assessment(
        party_id=facts.party_id,
        as_of=facts.as_of,
        totals=totals,
        tier=tier,
        entitlements=config.tiers.tier(tier.name).entitlements,
        value=value,
        segments=assess_segments(config.segments, env),
        risk=risk,
        age=age_in_years(facts.birth_date, facts.as_of),
    )
