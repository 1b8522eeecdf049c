"""A party's risk assessment when its records disagree: the latest one made by as_of, so an
assessment dated after as_of (a typo, 2062 for 2026) never hides one that holds today, and a
reassessment replaces the one before even where that one would still hold."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from zhike_profile.config import load_assessment_config
from zhike_profile.domain.facts import CustomerRisk, RiskAssessment, SourceKey
from zhike_profile.domain.party_facts import StoredFacts, StoredRisk, party_facts

SHANGHAI = ZoneInfo("Asia/Shanghai")
RATES = load_assessment_config().rates
AS_OF = dt.date(2026, 11, 17)
WEALTH = SourceKey("wealth", "W-1")
CORE = SourceKey("core", "C-1")


def risk_of(*stored: StoredRisk) -> RiskAssessment | None:
    facts = StoredFacts(risks=stored, records=(WEALTH, CORE))
    return party_facts("P-1", AS_OF, facts, RATES, SHANGHAI).risk


def assessed(level: CustomerRisk, on: dt.date, days: int = 365) -> RiskAssessment:
    return RiskAssessment(level, on, on + dt.timedelta(days=days))


def test_an_assessment_dated_after_as_of_does_not_hide_another_records_valid_one() -> None:
    valid = assessed(CustomerRisk.C4, dt.date(2026, 6, 1))
    typo = assessed(CustomerRisk.C1, dt.date(2062, 11, 1))

    assert risk_of(StoredRisk(WEALTH, valid, 1), StoredRisk(CORE, typo, 1)) == valid


def test_of_assessments_all_dated_after_as_of_the_earliest_is_the_partys() -> None:
    tomorrow = assessed(CustomerRisk.C3, AS_OF + dt.timedelta(days=1))
    typo = assessed(CustomerRisk.C1, dt.date(2062, 11, 1))

    assert risk_of(StoredRisk(WEALTH, tomorrow, 1), StoredRisk(CORE, typo, 1)) == tomorrow


def test_a_later_reassessment_that_expired_replaces_an_earlier_one_still_valid() -> None:
    # The customer's latest answers decide what may be sold, even once they need renewing.
    earlier = assessed(CustomerRisk.C4, dt.date(2026, 1, 5), days=730)
    later = assessed(CustomerRisk.C2, dt.date(2026, 3, 1), days=180)

    assert risk_of(StoredRisk(WEALTH, earlier, 1), StoredRisk(CORE, later, 1)) == later


def test_an_assessment_dated_as_of_is_the_partys_from_that_day() -> None:
    today = assessed(CustomerRisk.C5, AS_OF)
    earlier = assessed(CustomerRisk.C2, dt.date(2026, 3, 1))

    assert risk_of(StoredRisk(WEALTH, earlier, 1), StoredRisk(CORE, today, 1)) == today
