"""What changed between two assessments: the facts ProfileChanged events carry."""

from __future__ import annotations

import dataclasses
import datetime as dt

from zhike_profile.domain.assessment import (
    AgeChanged,
    AssessmentConfig,
    RiskLevelChanged,
    RiskLevelExpired,
    SegmentEntered,
    SegmentLeft,
    TierChanged,
    ValueBandChanged,
    assess,
    changes,
)
from zhike_profile.domain.facts import (
    CardTier,
    CustomerRisk,
    Holding,
    Interaction,
    InteractionKind,
    Money,
    PartyFacts,
    ProductLine,
    RiskAssessment,
    SourceKey,
)

AS_OF = dt.date(2026, 12, 1)
DEPOSITS = SourceKey("core_deposits", "D-1")
CARDS = SourceKey("card_centre", "C-1")
USD = Holding(
    DEPOSITS, "A-1", ProductLine.SAVINGS, "FX", Money("USD", 6_000_00), dt.date(2024, 1, 1)
)
RECENT_VISIT = Interaction(
    InteractionKind.BRANCH_VISIT, dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC), DEPOSITS, "0101"
)
BEFORE = PartyFacts(party_id="p", as_of=AS_OF, holdings=(USD,), interactions=(RECENT_VISIT,))


def test_usd_withdrawn_to_zero_leaves_the_usd_segment(config: AssessmentConfig) -> None:
    emptied = dataclasses.replace(USD, balance=Money("USD", 0))
    after = dataclasses.replace(BEFORE, holdings=(emptied,))
    assert changes(assess(BEFORE, config), assess(after, config)) == (
        # USD 6,000.00 in savings earned CNY 596.76 a year: the value band drops too.
        ValueBandChanged("medium", "low"),
        SegmentLeft("usd_holder", "Holds USD above zero"),
    )


def test_an_upgrade_to_a_platinum_card_changes_the_tier_with_its_reason(
    config: AssessmentConfig,
) -> None:
    platinum = Holding(
        CARDS,
        "K-1",
        ProductLine.CREDIT_CARD,
        "CC",
        Money("CNY", 0),
        dt.date(2026, 11, 30),
        card_tier=CardTier.PLATINUM,
        branch_code="0388",
    )
    after = dataclasses.replace(BEFORE, holdings=(USD, platinum))
    found = changes(assess(BEFORE, config), assess(after, config))
    assert found[0] == TierChanged(
        before="standard",
        after="gold",
        before_label="Standard",
        after_label="Gold",
        reason="Gold: holds a platinum card (card centre)",
    )
    assert str(found[0]) == "tier Standard → Gold (Gold: holds a platinum card (card centre))"
    assert found[1:] == (SegmentEntered("premium", "Gold or above"),)


def test_going_quiet_enters_dormant(config: AssessmentConfig) -> None:
    later = dataclasses.replace(BEFORE, as_of=AS_OF + dt.timedelta(days=190))
    assert SegmentEntered("dormant", "No interaction for 180 days") in changes(
        assess(BEFORE, config), assess(later, config)
    )


def test_a_risk_assessment_expiring_is_reported_as_expiry(config: AssessmentConfig) -> None:
    assessed = RiskAssessment(CustomerRisk.C4, dt.date(2025, 12, 2), dt.date(2026, 12, 2))
    valid = dataclasses.replace(BEFORE, risk=assessed)
    expired = dataclasses.replace(valid, as_of=dt.date(2026, 12, 2))
    found = changes(assess(valid, config), assess(expired, config))
    assert RiskLevelExpired(CustomerRisk.C4, dt.date(2026, 12, 2)) in found


def test_a_new_risk_level_is_reported_with_old_and_new(config: AssessmentConfig) -> None:
    c2 = RiskAssessment(CustomerRisk.C2, dt.date(2026, 1, 1), dt.date(2027, 1, 1))
    c4 = RiskAssessment(CustomerRisk.C4, dt.date(2026, 11, 30), dt.date(2027, 11, 30))
    first = assess(dataclasses.replace(BEFORE, risk=None), config)
    second = assess(dataclasses.replace(BEFORE, risk=c2), config)
    third = assess(dataclasses.replace(BEFORE, risk=c4), config)
    assert changes(first, second) == (RiskLevelChanged(None, CustomerRisk.C2, c2.expires_on),)
    assert changes(second, third) == (
        RiskLevelChanged(CustomerRisk.C2, CustomerRisk.C4, c4.expires_on),
    )
    assert str(changes(second, third)[0]) == "risk level C2 → C4"


def test_a_risk_assessment_renewed_at_the_same_level_is_reported_with_its_new_expiry(
    config: AssessmentConfig,
) -> None:
    c3 = RiskAssessment(CustomerRisk.C3, dt.date(2025, 12, 1), dt.date(2026, 12, 1))
    renewed = RiskAssessment(CustomerRisk.C3, dt.date(2026, 11, 2), dt.date(2027, 11, 2))
    as_of = dt.date(2026, 11, 2)
    first = assess(dataclasses.replace(BEFORE, as_of=as_of, risk=c3), config)
    second = assess(dataclasses.replace(BEFORE, as_of=as_of, risk=renewed), config)
    assert changes(first, second) == (
        RiskLevelChanged(CustomerRisk.C3, CustomerRisk.C3, dt.date(2027, 11, 2)),
    )


def test_changes_come_in_a_fixed_order(config: AssessmentConfig) -> None:
    rich = dataclasses.replace(
        BEFORE,
        holdings=(dataclasses.replace(USD, balance=Money("USD", 100_000_00)),),
        birth_date=dt.date(1995, 1, 1),
        risk=RiskAssessment(CustomerRisk.C3, dt.date(2026, 1, 1), dt.date(2027, 1, 1)),
    )
    poor = dataclasses.replace(
        BEFORE,
        holdings=(),
        as_of=AS_OF + dt.timedelta(days=200),
    )
    order = [
        TierChanged,
        ValueBandChanged,
        SegmentLeft,
        SegmentEntered,
        RiskLevelChanged,
        AgeChanged,
    ]
    kinds = [type(change) for change in changes(assess(rich, config), assess(poor, config))]
    assert set(kinds) == set(order)
    assert kinds == sorted(kinds, key=order.index)


def test_a_birthday_changes_the_age_in_whole_years_without_showing_it_in_the_text(
    config: AssessmentConfig,
) -> None:
    born = dataclasses.replace(BEFORE, birth_date=dt.date(1996, 12, 2))
    eve = assess(born, config)
    birthday = assess(dataclasses.replace(born, as_of=dt.date(2026, 12, 2)), config)
    (told,) = [c for c in changes(eve, birthday) if isinstance(c, AgeChanged)]
    assert told == AgeChanged(29, 30)
    # The text may reach logs: it names the change, never the age (personal data).
    assert str(told) == "age changed"


def test_a_birth_date_arriving_and_leaving_changes_the_age_from_and_to_unknown(
    config: AssessmentConfig,
) -> None:
    unknown = assess(BEFORE, config)
    known = assess(dataclasses.replace(BEFORE, birth_date=dt.date(1986, 5, 1)), config)
    assert (unknown.age, known.age) == (None, 40)
    assert AgeChanged(None, 40) in changes(unknown, known)
    assert AgeChanged(40, None) in changes(known, unknown)
