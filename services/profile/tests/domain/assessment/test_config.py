"""The configuration documents: every problem named with its document and place, all at once;
a segment rule's problem also with the rule's name and the line and column in its condition."""

from __future__ import annotations

from typing import Any

import pytest

from zhike_profile.domain.assessment import AssessmentConfigError, ConfigProblem, parse_config


def problems(documents: dict[str, Any]) -> list[ConfigProblem]:
    with pytest.raises(AssessmentConfigError) as raised:
        parse_config(documents)
    return list(raised.value.problems)


def test_the_test_documents_parse(documents: dict[str, Any]) -> None:
    config = parse_config(documents)
    assert [tier.name for tier in config.tiers.tiers] == [
        "standard",
        "silver",
        "gold",
        "platinum",
        "private_banking",
    ]
    assert config.rates.currencies == ("HKD", "JPY", "USD")


def test_unknown_fields_and_type_errors_name_the_rule_and_the_position(
    documents: dict[str, Any],
) -> None:
    documents["segments"]["rules"] = [
        {"name": "ok", "description": "fine", "condition": "age > 1"},
        {"name": "typo", "description": "d", "condition": "usd_balance > 0"},
        {"name": "types", "description": "d", "condition": 'age > 1 &&\n  tier > "gold"'},
    ]
    found = problems(documents)
    assert [(p.rule, p.line, p.column) for p in found] == [("typo", 1, 1), ("types", 2, 3)]
    assert str(found[0]) == (
        "segments: rule 'typo' (rules[1].condition) at 1:1: unknown field 'usd_balance'; known: "
        "age, tier, value_band, total_assets_cny, total_liabilities_cny, average_assets_cny, "
        "annual_revenue_cny, days_since_last_contact, risk_level, risk_status, transactions_12m"
    )
    assert found[1].message == "'>' needs a decimal or an integer, not a string"


def test_a_rule_naming_an_unknown_tier_is_refused(documents: dict[str, Any]) -> None:
    documents["segments"]["rules"] = [
        {"name": "vip", "description": "d", "condition": 'tier == "diamond"'}
    ]
    (problem,) = problems(documents)
    assert (problem.rule, problem.column) == ("vip", 9)
    assert "unknown tier 'diamond'" in problem.message


def test_rule_entries_need_a_name_a_description_and_a_condition(documents: dict[str, Any]) -> None:
    documents["segments"]["rules"] = [
        {"name": "Bad Name", "description": "d", "condition": "true"},
        {"name": "twice", "description": "d", "condition": "true"},
        {"name": "twice", "description": "d", "condition": "true"},
        {"name": "no_condition", "description": "d"},
    ]
    assert [(p.where, p.message[:12]) for p in problems(documents)] == [
        ("rules[0].name", "'Bad Name': "),
        ("rules[2].name", "'twice' twic"),
        ("rules[3].condition", "missing"),
    ]


def test_a_float_rate_is_refused_as_inexact(documents: dict[str, Any]) -> None:
    documents["fx_rates"]["currencies"]["USD"]["rates"][0]["cny_per_unit"] = 7.1
    (problem,) = problems(documents)
    assert problem.document == "fx_rates"
    assert problem.where == "currencies.USD.rates[0].cny_per_unit"
    assert "as a string" in problem.message


@pytest.mark.parametrize(
    ("document", "change", "where", "message"),
    [
        (
            "fx_rates",
            lambda d: d["currencies"].update(CNY={"rates": []}),
            "currencies.CNY",
            "base currency",
        ),
        (
            "fx_rates",
            lambda d: d["currencies"]["USD"]["rates"].append(
                {"from": "2026-01-02", "cny_per_unit": "7"}
            ),
            "currencies.USD.rates[2].from",
            "a second rate",
        ),
        (
            "fx_rates",
            lambda d: d["currencies"]["HKD"]["rates"][0].update({"from": "2 Jan"}),
            "currencies.HKD.rates[0].from",
            "YYYY-MM-DD",
        ),
        (
            "tiers",
            lambda d: d["tiers"][2].update(min_average_assets_cny="40000"),
            "tiers[2].min_average_assets_cny",
            "above the tier before",
        ),
        (
            "tiers",
            lambda d: d["tiers"][0].update(min_average_assets_cny="1"),
            "tiers[0].min_average_assets_cny",
            "starts at 0",
        ),
        (
            "tiers",
            lambda d: d["tiers"][1].update(entitlements=["free_lunch"]),
            "tiers[1].entitlements",
            "'free_lunch' is not in the entitlements list",
        ),
        (
            "tiers",
            lambda d: d["card_floors"].update(titanium="gold"),
            "card_floors.titanium",
            "card tiers are",
        ),
        (
            "tiers",
            lambda d: d["card_floors"].update(gold="bronze"),
            "card_floors.gold",
            "'bronze' is not a tier",
        ),
        (
            "tiers",
            lambda d: d["tiers"][1].update(min_average_assets_cny="50000.001"),
            "tiers[1].min_average_assets_cny",
            "two decimals",
        ),
        (
            "value_model",
            lambda d: d["balance_rates"].update(current_account="1.5"),
            "balance_rates.current_account",
            "a rate is a fraction",
        ),
        (
            "value_model",
            lambda d: d["balance_rates"].update(gold_bars="0.01"),
            "balance_rates.gold_bars",
            "product lines are",
        ),
        (
            "value_model",
            lambda d: d["rfm"].update(frequency=[1, 2, 2, 3]),
            "rfm.frequency",
            "four ascending",
        ),
        (
            "value_model",
            lambda d: d["cards"].pop("debit_card"),
            "cards.debit_card",
            "missing",
        ),
    ],
)
def test_a_bad_value_is_named_with_its_place(
    documents: dict[str, Any], document: str, change: Any, where: str, message: str
) -> None:
    change(documents[document])
    (problem,) = problems(documents)
    assert (problem.document, problem.where) == (document, where)
    assert message in problem.message


def test_every_document_is_checked_and_all_problems_are_reported_together(
    documents: dict[str, Any],
) -> None:
    documents["fx_rates"] = {"currencies": []}
    documents["value_model"]["drivers_shown"] = 0
    found = problems(documents)
    assert [p.document for p in found] == ["fx_rates", "value_model"]


def test_a_missing_document_is_named(documents: dict[str, Any]) -> None:
    del documents["tiers"]
    (problem,) = problems(documents)
    assert (problem.document, problem.message) == ("tiers", "missing")
