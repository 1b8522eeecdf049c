"""The assessments' configuration files: the shipped defaults, and a directory that replaces
some of them, with every problem named by file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from zhike_profile.config import DEFAULT_DIRECTORY, config_files, load_assessment_config
from zhike_profile.domain.assessment import AssessmentConfigError, assess
from zhike_profile.domain.facts import (
    CardTier,
    CustomerRisk,
    Holding,
    Interaction,
    InteractionKind,
    Money,
    MonthlyActivity,
    PartyFacts,
    ProductLine,
    RiskAssessment,
    SourceKey,
)


def test_the_shipped_defaults_load_with_the_tiers_the_bank_asked_for() -> None:
    config = load_assessment_config()
    assert [(t.label, t.min_average_assets_cny_minor) for t in config.tiers.tiers] == [
        ("Standard", 0),
        ("Silver", 50_000_00),
        ("Gold", 500_000_00),
        ("Platinum", 2_000_000_00),
        ("Private Banking", 6_000_000_00),
    ]
    assert {"CNY", *config.rates.currencies} >= {"CNY", "USD", "EUR", "HKD"}
    assert {rule.name for rule in config.segments} >= {
        "usd_holder",
        "dormant",
        "young_professional",
    }


def test_the_shipped_defaults_assess_a_party() -> None:
    facts = PartyFacts(party_id="p", as_of=dt.date(2026, 12, 1))
    assessment = assess(facts, load_assessment_config())
    assert assessment.tier.name == "standard"
    assert "dormant" in {segment.name for segment in assessment.segments}


def test_a_directory_replaces_only_the_files_it_has(tmp_path: Path) -> None:
    (tmp_path / "fx_rates.json").write_text(
        json.dumps(
            {"currencies": {"USD": {"rates": [{"from": "2026-01-01", "cny_per_unit": "8"}]}}}
        ),
        encoding="utf-8",
    )
    files = config_files(tmp_path)
    assert files["fx_rates"] == tmp_path / "fx_rates.json"
    assert files["tiers"] == DEFAULT_DIRECTORY / "tiers.yaml"
    config = load_assessment_config(tmp_path)
    assert config.rates.currencies == ("USD",)
    usd = config.rates.convert(Money("USD", 100), "CNY", dt.date(2026, 12, 1))
    assert usd == Money("CNY", 800)
    assert config.tiers == load_assessment_config().tiers


def test_a_bad_rule_in_a_replacement_file_is_named_with_the_file_rule_and_position(
    tmp_path: Path,
) -> None:
    (tmp_path / "segments.yaml").write_text(
        "rules:\n"
        "  - name: usd_holder\n"
        "    description: Holds USD\n"
        '    condition: holds_usd > 0 && holds("savings")\n',
        encoding="utf-8",
    )
    with pytest.raises(AssessmentConfigError) as raised:
        load_assessment_config(tmp_path)
    (problem,) = raised.value.problems
    assert problem.document == str(tmp_path / "segments.yaml")
    assert (problem.rule, problem.line, problem.column) == ("usd_holder", 1, 1)
    assert str(problem).startswith(f"{tmp_path / 'segments.yaml'}: rule 'usd_holder'")


def test_a_file_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    (tmp_path / "tiers.yaml").write_text("tiers: [unclosed\n", encoding="utf-8")
    with pytest.raises(AssessmentConfigError) as raised:
        load_assessment_config(tmp_path)
    (problem,) = raised.value.problems
    assert problem.document == str(tmp_path / "tiers.yaml")
    assert "line" in problem.message


def test_a_directory_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AssessmentConfigError, match="not a directory"):
        load_assessment_config(tmp_path / "missing")


def test_every_product_line_has_a_balance_rate_or_a_card_price_in_the_defaults() -> None:
    value = load_assessment_config().value
    priced = {line for line, _ in value.balance_rates}
    assert priced | {ProductLine.CREDIT_CARD, ProductLine.DEBIT_CARD} == set(ProductLine)


def test_the_worked_example_in_the_value_model_doc_holds_for_the_shipped_defaults() -> None:
    source = SourceKey("core_deposits", "D-1")

    def holding(line: ProductLine, money: Money, card_tier: CardTier | None = None) -> Holding:
        return Holding(
            source, line.value, line, "P", money, dt.date(2020, 1, 1), card_tier=card_tier
        )

    facts = PartyFacts(
        party_id="p",
        as_of=dt.date(2026, 12, 1),
        holdings=(
            holding(ProductLine.TIME_DEPOSIT, Money("CNY", 1_000_000_00)),
            holding(ProductLine.SAVINGS, Money("USD", 10_000_00)),
            holding(ProductLine.MORTGAGE, Money("CNY", 1_200_000_00)),
            holding(ProductLine.CREDIT_CARD, Money("CNY", 0), CardTier.PLATINUM),
            holding(ProductLine.DEBIT_CARD, Money("CNY", 0), CardTier.STANDARD),
        ),
        activity=tuple(
            MonthlyActivity(dt.date(2026, m, 1), 10, 0, 0, 0, credit_card_spend_cny_minor=8_000_00)
            for m in range(1, 13)
        ),
    )
    value = assess(facts, load_assessment_config()).value
    assert value.annual_revenue_cny_minor == 19_436_60
    assert value.band_label == "High"
    doc = (Path(__file__).parents[4] / "docs" / "profile-value-model.md").read_text("utf-8")
    for driver in value.drivers:
        assert f"`{driver}`" in doc


def _shipped_rule_cases() -> list[tuple[str, PartyFacts, PartyFacts]]:
    as_of = dt.date(2026, 12, 1)
    source = SourceKey("core_deposits", "D-1")
    nobody = PartyFacts(party_id="p", as_of=as_of)

    def holding(line: ProductLine, money: Money, card_tier: CardTier | None = None) -> Holding:
        return Holding(source, "A-1", line, "P", money, dt.date(2020, 1, 1), card_tier=card_tier)

    def having(*holdings: Holding, **changes: object) -> PartyFacts:
        return dataclasses.replace(nobody, holdings=holdings, **changes)  # type: ignore[arg-type]

    visit = Interaction(
        InteractionKind.APP_LOGIN, dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), source
    )
    valid = RiskAssessment(CustomerRisk.C3, dt.date(2026, 1, 1), dt.date(2027, 1, 1))
    salary = tuple(
        MonthlyActivity(dt.date(2026, m, 1), 3, 0, 0, 0, salary_credit_cny_minor=1_000_00)
        for m in (11, 12)
    )
    return [
        (
            "usd_holder",
            having(holding(ProductLine.SAVINGS, Money("USD", 1))),
            having(holding(ProductLine.SAVINGS, Money("USD", 0))),
        ),
        (
            "foreign_currency_holder",
            having(holding(ProductLine.INVESTMENT, Money("JPY", 5, 0))),
            having(holding(ProductLine.SAVINGS, Money("CNY", 500_00))),
        ),
        ("dormant", nobody, having(interactions=(visit,))),
        (
            "young_professional",
            having(birth_date=dt.date(1996, 1, 1), activity=salary),
            having(birth_date=dt.date(1986, 1, 1), activity=salary),
        ),
        (
            "mortgage_holder",
            having(holding(ProductLine.MORTGAGE, Money("CNY", 1_000_00))),
            having(holding(ProductLine.PERSONAL_LOAN, Money("CNY", 1_000_00))),
        ),
        (
            "premium",
            having(holding(ProductLine.CREDIT_CARD, Money("CNY", 0), CardTier.PLATINUM)),
            having(holding(ProductLine.CREDIT_CARD, Money("CNY", 0), CardTier.GOLD)),
        ),
        (
            "risk_review_due",
            having(holding(ProductLine.INVESTMENT, Money("CNY", 100_00))),
            having(holding(ProductLine.INVESTMENT, Money("CNY", 100_00)), risk=valid),
        ),
    ]


@pytest.mark.parametrize(
    ("rule", "inside", "outside"),
    _shipped_rule_cases(),
    ids=[case[0] for case in _shipped_rule_cases()],
)
def test_each_shipped_segment_rule_takes_in_whom_it_describes(
    rule: str, inside: PartyFacts, outside: PartyFacts
) -> None:
    config = load_assessment_config()
    assert rule in {s.name for s in assess(inside, config).segments}
    assert rule not in {s.name for s in assess(outside, config).segments}


def test_every_shipped_segment_rule_is_tested() -> None:
    tested = {case[0] for case in _shipped_rule_cases()}
    assert tested == {rule.name for rule in load_assessment_config().segments}
