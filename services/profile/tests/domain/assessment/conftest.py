"""The configuration the assessment tests run on: written out here, not read from the shipped
files, so each test states the thresholds and rates it relies on (and nothing does I/O)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from zhike_profile.domain.assessment import AssessmentConfig, parse_config

DOCUMENTS: dict[str, Any] = {
    "fx_rates": {
        "currencies": {
            "USD": {
                "exponent": 2,
                "rates": [
                    {"from": dt.date(2026, 1, 2), "cny_per_unit": "7.0000"},
                    {"from": dt.date(2026, 7, 1), "cny_per_unit": "7.1043"},
                ],
            },
            "HKD": {"rates": [{"from": dt.date(2026, 1, 2), "cny_per_unit": "0.9102"}]},
            "JPY": {"exponent": 0, "rates": [{"from": "2026-01-02", "cny_per_unit": "0.045120"}]},
        }
    },
    "tiers": {
        "basis_months": 3,
        "entitlements": {
            "card_fee_waiver": "Debit card annual fee waived",
            "priority_queue": "Priority queue at every branch",
            "relationship_manager": "A named relationship manager",
            "private_banker": "A private banker",
        },
        "tiers": [
            {"name": "standard", "label": "Standard", "min_average_assets_cny": "0"},
            {
                "name": "silver",
                "label": "Silver",
                "min_average_assets_cny": "50000.00",
                "entitlements": ["card_fee_waiver"],
            },
            {
                "name": "gold",
                "label": "Gold",
                "min_average_assets_cny": "500000.00",
                "entitlements": ["priority_queue", "card_fee_waiver"],
            },
            {
                "name": "platinum",
                "label": "Platinum",
                "min_average_assets_cny": "2000000.00",
                "entitlements": ["priority_queue", "card_fee_waiver", "relationship_manager"],
            },
            {
                "name": "private_banking",
                "label": "Private Banking",
                "min_average_assets_cny": "6000000.00",
                "entitlements": ["priority_queue", "relationship_manager", "private_banker"],
            },
        ],
        "card_floors": {"gold": "silver", "platinum": "gold", "diamond": "platinum"},
    },
    "value_model": {
        "balance_rates": {
            "current_account": "0.0180",
            "savings": "0.0140",
            "time_deposit": "0.0060",
            "investment": "0.0080",
            "mortgage": "0.0090",
            "personal_loan": "0.0300",
        },
        "cards": {
            "credit_card": {
                "interchange_rate": "0.0045",
                "annual_fee_cny": {"gold": "200.00", "platinum": "1200.00"},
            },
            "debit_card": {"interchange_rate": "0.0025", "annual_fee_cny": {"standard": "10"}},
        },
        "bands": [
            {"name": "low", "label": "Low", "min_annual_revenue_cny": "0"},
            {"name": "medium", "label": "Medium", "min_annual_revenue_cny": "500.00"},
            {"name": "high", "label": "High", "min_annual_revenue_cny": "5000.00"},
            {"name": "very_high", "label": "Very high", "min_annual_revenue_cny": "30000.00"},
        ],
        "rfm": {
            "recency_days": [7, 30, 90, 180],
            "frequency": [12, 36, 120, 360],
            "monetary_cny": ["20000.00", "100000.00", "500000.00", "2000000.00"],
        },
        "drivers_shown": 3,
    },
    "segments": {
        "rules": [
            {
                "name": "usd_holder",
                "description": "Holds USD above zero",
                "condition": 'balance("USD") > 0',
            },
            {
                "name": "dormant",
                "description": "No interaction for 180 days",
                "condition": "interactions(180) == 0",
            },
            {
                "name": "young_professional",
                "description": "Aged 25–35 with salary credits",
                "condition": "age >= 25 && age <= 35 && salary_months(3) >= 2",
            },
            {
                "name": "premium",
                "description": "Gold or above",
                "condition": 'tier in ["gold", "platinum", "private_banking"]',
            },
        ]
    },
}


@pytest.fixture
def documents() -> dict[str, Any]:
    """A fresh copy of the documents, for tests that change one."""
    return copy.deepcopy(DOCUMENTS)


@pytest.fixture(scope="session")
def config() -> AssessmentConfig:
    return parse_config(DOCUMENTS)
