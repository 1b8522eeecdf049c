"""The offers' settings: the contact budget and the rest are checked at start-up, and a bad
value stops the service naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from zhike_offers.domain.contact_policy import BudgetWindow
from zhike_offers.settings import OffersSettings
from zhike_runtime.testing.services import TEST_SETTINGS


def test_the_budget_setting_becomes_the_contact_policy_budget() -> None:
    settings = OffersSettings(**TEST_SETTINGS, contact_budget="30d:6, 7d:2", ignore_limit=4)

    policy = settings.decision_config().policy

    assert policy.budget == (BudgetWindow(7, 2), BudgetWindow(30, 6))
    assert policy.ignore_limit == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("contact_budget", "2 in 7 days"),
        ("contact_budget", "0d:2"),
        ("contact_budget", "7d:2,7d:3"),
        ("business_time_zone", "Mars/Olympus"),
        ("propensity_estimator", "guess"),
        ("decision_log_retention_days", 0),
        ("simulation_sample_size", 20_000),  # above the maximum sample
    ],
)
def test_a_bad_value_is_refused_naming_its_setting(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        OffersSettings(**(TEST_SETTINGS | {field: value}))
    assert field in str(caught.value)
