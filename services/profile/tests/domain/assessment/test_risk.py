"""The risk level with its expiry, as of a day."""

from __future__ import annotations

import datetime as dt

from zhike_profile.domain.assessment import RiskStatus
from zhike_profile.domain.assessment.risk import assess_risk
from zhike_profile.domain.facts import CustomerRisk, PartyFacts, RiskAssessment

ASSESSED = RiskAssessment(CustomerRisk.C3, dt.date(2025, 12, 1), dt.date(2026, 12, 1))


def on(day: dt.date, risk: RiskAssessment | None = ASSESSED) -> PartyFacts:
    return PartyFacts(party_id="p", as_of=day, risk=risk)


def test_a_party_never_assessed_has_no_level() -> None:
    view = assess_risk(on(dt.date(2026, 6, 1), None))
    assert (view.status, view.effective_level, str(view)) == (
        RiskStatus.NOT_ASSESSED,
        None,
        "not assessed",
    )


def test_an_assessment_is_valid_up_to_the_day_before_it_expires() -> None:
    view = assess_risk(on(dt.date(2026, 11, 30)))
    assert view.status is RiskStatus.VALID
    assert view.effective_level is CustomerRisk.C3
    assert str(view) == "C3, valid until 2026-12-01"


def test_an_assessment_has_expired_on_its_expiry_date() -> None:
    view = assess_risk(on(dt.date(2026, 12, 1)))
    assert view.status is RiskStatus.EXPIRED
    assert view.level is CustomerRisk.C3  # still shown...
    assert view.effective_level is None  # ...but no sale may rely on it
    assert str(view) == "C3, expired on 2026-12-01"


def test_an_assessment_dated_after_as_of_is_not_yet_valid() -> None:
    view = assess_risk(on(dt.date(2025, 11, 30)))
    assert view.status is RiskStatus.NOT_YET_VALID
    assert view.effective_level is None
