"""Suitability: C_n may buy up to R_n, only with a valid assessment; unrated products suit all."""

from __future__ import annotations

import datetime as dt

import pytest

from zhike_offers.domain.suitability import Unsuitable, check_suitability

from .builders import TODAY, facts


@pytest.mark.parametrize("product_risk", [1, 2])
def test_a_c2_customer_may_buy_up_to_r2(product_risk: int) -> None:
    assert check_suitability(product_risk, facts(customer_risk=2), TODAY) is None


@pytest.mark.parametrize("product_risk", [3, 4, 5])
def test_a_c2_customer_may_not_buy_above_r2(product_risk: int) -> None:
    found = check_suitability(product_risk, facts(customer_risk=2), TODAY)
    assert found is not None
    assert found.reason is Unsuitable.RISK_TOO_HIGH
    # The rule, not the party's own level: explanations travel to channels and logs.
    assert found.explanation == (
        f"product R{product_risk} needs a C{product_risk} or higher risk assessment"
    )


def test_an_expired_assessment_makes_every_rated_product_unsuitable() -> None:
    expired = facts(customer_risk=5, risk_expires_on=TODAY)  # expired from its expiry day on
    for product_risk in range(1, 6):
        found = check_suitability(product_risk, expired, TODAY)
        assert found is not None
        assert found.reason is Unsuitable.ASSESSMENT_EXPIRED
    day_before = TODAY - dt.timedelta(days=1)
    assert check_suitability(5, expired, day_before) is None


@pytest.mark.parametrize(
    ("customer_risk", "expires_on"), [(0, None), (0, dt.date(2027, 1, 1)), (3, None)]
)
def test_no_assessment_or_one_without_expiry_suits_no_rated_product(
    customer_risk: int, expires_on: dt.date | None
) -> None:
    party = facts(customer_risk=customer_risk, risk_expires_on=expires_on)
    found = check_suitability(1, party, TODAY)
    assert found is not None
    assert found.reason is Unsuitable.NO_ASSESSMENT


def test_an_unrated_product_suits_everyone() -> None:
    assert check_suitability(0, facts(customer_risk=0, risk_expires_on=None), TODAY) is None
