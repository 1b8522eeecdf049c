"""CEL rules: refused at save time naming the field and the position; evaluated over one
activation built from the party's facts."""

from __future__ import annotations

import datetime as dt

import pytest

from zhike_offers.domain.eligibility import (
    MAX_BATCH_CODEPOINTS,
    RuleBatch,
    RuleEnvironment,
    RuleError,
    first_false,
    referenced_variables,
)

from .builders import TODAY, facts, holding


def refusal(environment: RuleEnvironment, text: str, field: str = "eligibility[1]") -> RuleError:
    with pytest.raises(RuleError) as raised:
        environment.compile(field, text)
    return raised.value


def test_an_unknown_field_names_the_offer_field_and_its_line_and_column(
    environment: RuleEnvironment,
) -> None:
    error = refusal(environment, 'assets["USD"] >= 5000.0 &&\n  usd_balance > 1.0')
    assert (error.field, error.line, error.column) == ("eligibility[1]", 2, 3)
    assert error.message.startswith("undeclared reference to 'usd_balance'; known: assets,")
    assert str(error).startswith("eligibility[1] at 2:3: undeclared reference")


def test_a_type_error_names_the_offer_field_and_the_operator_position(
    environment: RuleEnvironment,
) -> None:
    # CEL does not mix double and int: the threshold must be written 5000.0.
    error = refusal(environment, 'assets["USD"] >= 5000', field="applicability[0]")
    assert (error.field, error.line, error.column) == ("applicability[0]", 1, 15)
    assert "no matching overload for '_>=_' applied to '(double, int)'" in error.message


def test_columns_count_characters_not_bytes(environment: RuleEnvironment) -> None:
    error = refusal(environment, 'tier == "白金" && nope')
    assert (error.line, error.column) == (1, 17)  # 21 if it counted UTF-8 bytes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tier", "must be true or false, not string"),
        ('assets["USD"]', "must be true or false, not double"),
        ('tier == "gold" ||', "Syntax error"),
        ("   ", "empty clause"),
        ("true || " * 300 + "true", "longer than 2000 characters"),
    ],
)
def test_a_clause_must_be_a_short_well_formed_bool(
    environment: RuleEnvironment, text: str, message: str
) -> None:
    assert message in refusal(environment, text).message


@pytest.mark.parametrize(
    ("character", "name"),
    [
        ("\x00", "U+0000"),  # control
        ("\r", "U+000D"),  # control: a terminal showing the clause would overwrite its line
        ("\u202e", "U+202E"),  # format: right-to-left override
        ("\u200b", "U+200B"),  # format: zero-width space
        ("\ue000", "U+E000"),  # private use
        ("\u0378", "U+0378"),  # unassigned
    ],
)
def test_a_control_or_invisible_character_is_refused_at_its_line_and_column(
    environment: RuleEnvironment, character: str, name: str
) -> None:
    # In a string literal CEL would take it: shown back, the clause would read otherwise.
    error = refusal(environment, f'tier != "" &&\n  tier == "gold{character}"')
    assert (error.field, error.line, error.column) == ("eligibility[1]", 2, 16)
    assert error.message == f"contains a control or invisible character: {name}"


def test_line_feeds_and_tabs_still_lay_a_clause_out(environment: RuleEnvironment) -> None:
    clause = environment.compile("eligibility[0]", 'tier != "" &&\n\ttier == "gold"')
    assert clause.text == 'tier != "" &&\n\ttier == "gold"'


def test_activation_data_has_major_units_for_every_configured_currency(
    environment: RuleEnvironment,
) -> None:
    party = facts(
        assets={"USD": 600_000, "JPY": 5_000, "CHF": 1_050},
        liabilities={"CNY": 30_000_000},
        holdings=frozenset(
            {
                holding("savings", "SAV_USD", "USD"),
                holding("savings", "SAV_CNY"),
                holding("mortgage", "MORTGAGE_30Y"),
            }
        ),
        tier="gold",
        segments=frozenset({"usd_holder", "premium"}),
    )
    data = environment.activation_data(party, channel="sms", placement="", today=TODAY)
    # JPY has no minor unit; a currency outside the list is still there, at two decimals.
    assert data["assets"] == {
        "CNY": 0.0,
        "USD": 6000.0,
        "EUR": 0.0,
        "HKD": 0.0,
        "GBP": 0.0,
        "JPY": 5000.0,
        "CHF": 10.5,
    }
    assert data["liabilities"]["CNY"] == 300_000.0
    assert data["product_lines"] == ["mortgage", "savings"]
    assert data["products"] == ["MORTGAGE_30Y", "SAV_CNY", "SAV_USD"]
    assert data["segments"] == ["premium", "usd_holder"]
    assert (data["tier"], data["risk_level"], data["age"]) == ("gold", 3, -1)
    assert (data["channel"], data["placement"]) == ("sms", "")


def test_an_expired_assessment_reads_as_risk_level_zero(environment: RuleEnvironment) -> None:
    party = facts(customer_risk=4, risk_expires_on=TODAY)
    data = environment.activation_data(party, channel="sms", placement="", today=TODAY)
    assert data["risk_level"] == 0
    earlier = TODAY - dt.timedelta(days=1)
    data = environment.activation_data(party, channel="sms", placement="", today=earlier)
    assert data["risk_level"] == 4


def test_first_false_names_the_first_clause_that_does_not_hold(
    environment: RuleEnvironment,
) -> None:
    clauses = [
        environment.compile("eligibility[0]", 'assets["USD"] >= 5000.0'),
        environment.compile("eligibility[1]", '"mortgage" in product_lines'),
        environment.compile("eligibility[2]", "risk_level >= 5"),
    ]
    party = facts(assets={"USD": 600_000})
    activation = environment.activation(party, channel="sms", placement="", today=TODAY)
    failed = first_false(clauses, activation)
    assert failed is not None
    assert (failed.index, failed.clause.text, failed.why) == (1, clauses[1].text, "false")
    rich = facts(assets={"USD": 600_000}, holdings=frozenset({holding("mortgage", "M")}))
    rich_activation = environment.activation(rich, channel="sms", placement="", today=TODAY)
    assert first_false(clauses[:2], rich_activation) is None


def test_a_clause_that_fails_while_evaluating_does_not_hold_and_says_why(
    environment: RuleEnvironment,
) -> None:
    clause = environment.compile("eligibility[0]", 'assets["XAU"] > 1.0')
    activation = environment.activation(facts(), channel="sms", placement="", today=TODAY)
    assert not clause.holds(activation)
    assert clause.failure(activation) == "not evaluable (NOT_FOUND: Key not found in map)"


@pytest.mark.parametrize(
    ("text", "withheld"),
    [
        ("{18: true, 19: true, 20: true}[age]", "21"),  # CEL: "Key not found in map : 21"
        ("[true, false][age]", "21"),  # CEL: "Index error: index=21 size=2"
        ('{"gold": true}[tier]', "platinum"),  # CEL: 'Key not found in map : "platinum"'
    ],
)
def test_why_a_clause_was_not_evaluable_never_quotes_the_customers_values(
    environment: RuleEnvironment, text: str, withheld: str
) -> None:
    # Explanations are kept in the decision log and published in OfferWithdrawn.
    clause = environment.compile("eligibility[0]", text)
    party = facts(age=21, tier="platinum")
    activation = environment.activation(party, channel="sms", placement="", today=TODAY)

    why = clause.failure(activation)

    assert why is not None
    assert why.startswith("not evaluable (")
    assert withheld not in why


def test_referenced_variables_ignores_strings_comments_and_fields() -> None:
    text = '"tier" in products // segments\n&& x.assets == 1.0 && risk_level > 0'
    assert referenced_variables(text) == {"products", "risk_level"}


def test_the_batch_agrees_with_clause_by_clause_evaluation_even_with_errors(
    environment: RuleEnvironment,
) -> None:
    texts = [
        ['assets["USD"] >= 5000.0', '"gold" == tier // a comment ends the clause'],
        ['assets["USD"] >= 5000.0', 'assets["XAU"] > 1.0'],  # an error: the chunk falls back
        ['assets["XAU"] > 1.0 || true'],
        [],
        ["risk_level >= 4"],
    ]
    groups = [
        [environment.compile(f"eligibility[{i}]", text) for i, text in enumerate(group)]
        for group in texts
    ]
    batch = RuleBatch(environment, groups)
    for party in (facts(assets={"USD": 600_000}, tier="gold"), facts(customer_risk=5)):
        activation = environment.activation(party, channel="sms", placement="", today=TODAY)
        expected = [all(clause.holds(activation) for clause in group) for group in groups]
        assert batch.holding(activation) == expected
    rich = environment.activation(
        facts(assets={"USD": 600_000}, tier="gold"), channel="sms", placement="", today=TODAY
    )
    assert batch.holding(rich) == [True, False, True, True, False]


def test_the_batch_names_the_first_clause_that_fails_as_clause_by_clause_would(
    environment: RuleEnvironment,
) -> None:
    texts = [
        ['assets["USD"] >= 5000.0', '"gold" == tier'],
        ['tier == "gold"', 'assets["XAU"] > 1.0', "false"],  # an error: the chunk falls back
        [],
        ["risk_level >= 4", "risk_level >= 1"],
    ]
    groups = [
        [environment.compile(f"eligibility[{i}]", text) for i, text in enumerate(group)]
        for group in texts
    ]
    batch = RuleBatch(environment, groups)
    for party in (
        facts(assets={"USD": 600_000}, tier="gold"),
        facts(customer_risk=5),
        facts(assets={"USD": 100}),
    ):
        activation = environment.activation(party, channel="sms", placement="", today=TODAY)
        expected = []
        for group in groups:
            failed = first_false(group, activation)
            expected.append(-1 if failed is None else failed.index)
        assert batch.first_failing(activation) == expected
    gold = environment.activation(
        facts(assets={"USD": 600_000}, tier="gold"), channel="sms", placement="", today=TODAY
    )
    assert batch.first_failing(gold) == [-1, 1, -1, 0]


def test_rules_too_large_for_one_cel_program_are_still_judged(
    environment: RuleEnvironment,
) -> None:
    # About 64,000 code points of clauses in all: CEL takes at most 100,000 in one program.
    padding = " || ".join(['tier == "x"'] * 120)
    texts = [f"(risk_level == {n % 6}) && !({padding})" for n in range(35)]
    assert sum(map(len, texts)) > MAX_BATCH_CODEPOINTS
    groups = [[environment.compile("eligibility[0]", text)] for text in texts]
    batch = RuleBatch(environment, groups)
    activation = environment.activation(facts(), channel="sms", placement="", today=TODAY)
    assert batch.holding(activation) == [n % 6 == 3 for n in range(35)]
