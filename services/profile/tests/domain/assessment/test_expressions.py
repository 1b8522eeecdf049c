"""The segment condition language: what it computes, and every error named with its place."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_profile.domain.assessment.expressions import (
    MAX_DEPTH,
    UNKNOWN,
    Environment,
    ExpressionError,
    FieldSpec,
    FunctionSpec,
    Param,
    Schema,
    Type,
    Value,
    compile_condition,
    position,
)

SCHEMA = Schema(
    fields=(
        FieldSpec("age", Type.INT, ""),
        FieldSpec("assets", Type.DECIMAL, ""),
        FieldSpec("tier", Type.STRING, "", ("standard", "gold")),
        FieldSpec("vip", Type.BOOL, ""),
    ),
    functions=(
        FunctionSpec(
            "balance", (Param("currency", Type.STRING, pattern="[A-Z]{3}"),), Type.DECIMAL, ""
        ),
        FunctionSpec(
            "holds", (Param("line", Type.STRING, ("mortgage", "savings")),), Type.BOOL, ""
        ),
        FunctionSpec("visits", (Param("days", Type.INT, minimum=1),), Type.INT, ""),
    ),
)


def env(**fields: Value) -> Environment:
    values: dict[str, Value] = {
        "age": 30,
        "assets": Decimal("1000.50"),
        "tier": "gold",
        "vip": False,
    }
    values.update(fields)
    return Environment(
        values,
        {
            "balance": lambda currency: Decimal("6000.00") if currency == "USD" else Decimal(0),
            "holds": lambda line: line == "mortgage",
            "visits": lambda days: 2 if days >= 30 else 0,
        },
    )


def matches(text: str, **fields: Value) -> bool:
    return compile_condition(text, SCHEMA).matches(env(**fields))


def error(text: str) -> tuple[str, tuple[int, int]]:
    with pytest.raises(ExpressionError) as raised:
        compile_condition(text, SCHEMA)
    return raised.value.message, position(text, raised.value.offset)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('balance("USD") > 0', True),
        ('balance("EUR") > 0', False),
        ("age >= 25 && age <= 35", True),
        ("age < 25 || vip", False),
        ("!vip && age == 30", True),
        ("assets == 1000.5", True),
        ("assets > 1000.49 && assets < 1000.51", True),
        ("age * 2 - 10 == 50", True),
        ("assets + 0.50 == 1001", True),
        ("-age < 0", True),
        ('tier in ["gold", "standard"]', True),
        ('tier != "gold"', False),
        ("age in [29, 30.0]", True),
        ('holds("mortgage") && !holds("savings")', True),
        ("visits(30) >= 2 && visits(7) == 0", True),
        ("(age > 40 || vip) == false", True),
        ("true", True),
    ],
)
def test_a_condition_computes_what_it_says(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_decimals_are_exact_not_floats() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in binary floating point.
    assert matches("assets * 0 + 0.1 + 0.2 == 0.3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age >= 25", False),  # unknown is not true
        ("!(age >= 25)", False),  # ...and neither is its negation
        ("age >= 25 || vip", False),
        ("age >= 25 || !vip", True),  # a true side decides an "or"
        ("age >= 25 && vip", False),  # a false side decides an "and"
        ("!(age >= 25 && vip)", True),
        ("age + 1 > 0", False),
        ("age in [1, 2]", False),
    ],
)
def test_an_unknown_field_makes_only_undecided_conditions_fail(text: str, expected: bool) -> None:
    assert matches(text, age=UNKNOWN) is expected


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ("usd > 0", "unknown field 'usd'", (1, 1)),
        ("agee > 3", "unknown field 'agee' (did you mean 'age'?)", (1, 1)),
        ("age > 1 &&\n  balanse('USD') > 0", "unknown function 'balanse'", (2, 3)),
        ('age > "30"', "'>' needs", (1, 7)),
        ('tier == "gld"', "unknown tier 'gld'", (1, 9)),
        ('tier in ["gold", "platnum"]', "unknown tier 'platnum'", (1, 18)),
        ("age == vip", "'==' cannot compare an integer with true/false", (1, 5)),
        ("vip + 1 > 0", "'+' needs", (1, 1)),
        ("age", "a condition must be true/false, not an integer", (1, 1)),
        ('holds("morgage")', "holds: unknown line 'morgage' (did you mean 'mortgage'?)", (1, 7)),
        ('balance("usd") > 0', "is not of the form [A-Z]{3}", (1, 9)),
        ("balance(USD) > 0", "argument 'currency' must be a literal value", (1, 9)),
        ("balance() > 0", "takes 1 argument(s), given 0", (1, 1)),
        ("visits(0) > 0", "days must be at least 1", (1, 8)),
        ('visits("7") > 0', "argument 'days' must be an integer, not a string", (1, 8)),
        ("age() > 1", "'age' is a field, not a function", (1, 1)),
        ("holds > 1", "'holds' is a function: call it", (1, 1)),
        ("1 < age < 3", "comparisons do not chain", (1, 9)),
        ("age > 1 &&", "unexpected end of condition", (1, 11)),
        ("age >> 1", "unexpected '>'", (1, 6)),
        ("age = 1", "unexpected character '='", (1, 5)),
        ("tier == 'gold", "string not closed", (1, 9)),
        ("age > 1.", "malformed number", (1, 7)),
        ("age > 12abc", "malformed number", (1, 7)),
        ("age in []", "an empty list matches nothing", (1, 8)),
        ('age in [1, "a"]', "strings only or numbers only", (1, 8)),
        ("   ", "empty condition", (1, 1)),
    ],
)
def test_an_error_names_what_is_wrong_and_where(
    text: str, message: str, where: tuple[int, int]
) -> None:
    found, at = error(text)
    assert message in found
    assert at == where


def test_nesting_is_bounded() -> None:
    deep = "(" * (MAX_DEPTH + 1) + "vip" + ")" * (MAX_DEPTH + 1)
    assert "nested more than" in error(deep)[0]
    lists = "age in " + "[" * 2000
    assert "nested more than" in error(lists)[0]
    chain = " || ".join(["vip"] * (MAX_DEPTH + 2))
    assert "nested more than" in error(chain)[0]
    assert matches("(" * (MAX_DEPTH - 1) + "!vip" + ")" * (MAX_DEPTH - 1))
    assert matches(" || ".join(["vip"] * (MAX_DEPTH - 1)) + " || !vip")


def test_the_fields_a_condition_names_are_listed() -> None:
    condition = compile_condition('age > 1 && (holds("savings") || vip)', SCHEMA)
    assert condition.fields() == {"age", "holds", "vip"}


ALPHABET = st.sampled_from(
    [*"()[]!=<>&|+-*,.\"' \n", "age", "vip", "tier", "holds", "1", "2.5", "'gold'", "in"]
)


@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_any_text_either_compiles_or_is_refused_with_a_position(text: str) -> None:
    refused: ExpressionError | None = None
    try:
        condition = compile_condition(text, SCHEMA)
    except ExpressionError as error:
        refused = error
    if refused is not None:
        assert 0 <= refused.offset <= len(text)
        assert refused.message
    else:
        assert condition.matches(env()) in (True, False)
        assert condition.matches(env(age=UNKNOWN)) in (True, False)
