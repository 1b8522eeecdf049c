"""Offer documents: every problem named (offer, field, and for a rule its line and column), all
at once, as INVALID_ARGUMENT material; a catalogue's version follows its content only."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest

from zhike_offers.domain.catalogue import (
    Catalogue,
    CatalogueError,
    OfferProblem,
    compile_catalogue,
    compile_offer,
    facts_affecting,
)
from zhike_offers.domain.eligibility import RuleEnvironment
from zhike_offers.domain.facts import FactKind
from zhike_runtime.errors import FieldViolation, InvalidArgument

from .builders import document


def problems(environment: RuleEnvironment, doc: object) -> list[OfferProblem]:
    with pytest.raises(CatalogueError) as raised:
        compile_offer(doc, environment, source="offers/x.yaml")
    return list(raised.value.problems)


def test_a_minimal_offer_gets_its_defaults(environment: RuleEnvironment) -> None:
    offer = compile_offer(document(), environment)
    assert (offer.product_risk, offer.levers, offer.outbound, offer.personalised) == (
        0,
        Decimal(1),
        False,
        True,
    )
    assert (offer.eligibility, offer.placements, offer.retired) == ((), (), False)


def test_a_bad_rule_names_the_offer_eligibility_index_and_position(
    environment: RuleEnvironment,
) -> None:
    doc = document(eligibility=['assets["USD"] >= 5000.0', "tier == 1"])
    (problem,) = problems(environment, doc)
    assert (problem.offer_id, problem.field, problem.line, problem.column) == (
        "test_offer",
        "eligibility[1]",
        1,
        6,
    )
    assert str(problem).startswith(
        "offers/x.yaml: offer 'test_offer' eligibility[1] at 1:6: found no matching overload"
    )


def test_the_error_is_invalid_argument_naming_each_field(environment: RuleEnvironment) -> None:
    doc = document(applicability=["nope"], channels=[])
    with pytest.raises(InvalidArgument) as raised:
        compile_offer(doc, environment)
    fields = [violation.field for violation in raised.value.violations]
    assert fields == ["channels", "applicability[0]"]
    assert raised.value.violations[1] == FieldViolation(
        "applicability[0]",
        "offer 'test_offer': at 1:1: undeclared reference to 'nope'; known: assets, liabilities, "
        "product_lines, products, tier, value_band, segments, risk_level, age, channel, placement",
    )


def test_every_field_problem_is_reported_at_once(environment: RuleEnvironment) -> None:
    doc = document(
        offer_id="Bad Id",
        product_code="BAD_ID",
        category="promotion",
        channels=["sms", "fax"],
        value=12.5,
        levers="0",
        product_risk=6,
        depends_on=["assets", "mood"],
        contact_limits={"max_contacts": 0, "per_day": 1},
        valid_from="2026-01-01T00:00:00",
        eligibilty=["true"],
    )
    found = {(p.field, p.message) for p in problems(environment, doc)}
    fields = {field for field, _ in found}
    assert fields == {
        "eligibilty",
        "offer_id",
        "category",
        "channels[1]",
        "value",
        "levers",
        "product_risk",
        "depends_on[1]",
        "contact_limits.per_day",
        "valid_from",
    }
    assert ("category", "'promotion': categories are marketing, service") in found
    assert ("value", 'write 12.5 as a string ("12.5"): YAML floats are inexact') in found
    assert ("valid_from", "needs a time zone: 2026-07-01T00:00:00+08:00") in found


def test_required_fields_and_non_mappings_are_named(environment: RuleEnvironment) -> None:
    missing = {p.field for p in problems(environment, {"offer_id": "abc"})}
    assert missing == {"version", "names", "product_code", "category", "channels", "value"}
    (problem,) = problems(environment, ["not", "a", "mapping"])
    assert (problem.field, problem.message) == ("(document)", "must be a mapping")


def test_names_need_both_languages_without_control_characters(
    environment: RuleEnvironment,
) -> None:
    found = problems(environment, document(names={"en": "Ok\u202e", "fr": "x"}))
    assert {p.field for p in found} == {"names.fr"}
    found = problems(environment, document(names={"en": "Ok\u202e", "zh-CN": "好"}))
    assert [(p.field, p.message) for p in found] == [
        ("names.en", "contains control or invisible characters: U+202E")
    ]


def boosts(count: int) -> dict[str, str]:
    return {f"journey=step_{index}": "1.5" for index in range(count)}


def test_context_boosts_are_capped_at_50_entries(environment: RuleEnvironment) -> None:
    assert len(compile_offer(document(context_boosts=boosts(50)), environment).context_boosts) == 50
    found = problems(environment, document(context_boosts=boosts(51)))
    assert [(p.field, p.message) for p in found] == [("context_boosts", "at most 50 entries")]


def test_a_clause_with_a_right_to_left_override_is_refused_naming_the_clause_and_position(
    environment: RuleEnvironment,
) -> None:
    doc = document(applicability=['!("WM_01\u202e" in products)'])
    found = problems(environment, doc)
    assert [(p.field, p.line, p.column, p.message) for p in found] == [
        ("applicability[0]", 1, 9, "contains a control or invisible character: U+202E")
    ]


def test_outbound_channels_need_a_template_and_outbound_needs_such_a_channel(
    environment: RuleEnvironment,
) -> None:
    found = problems(
        environment,
        document(channels=["sms", "mobile_app"], templates={"branch": "t1"}),
    )
    assert {(p.field, p.message) for p in found} == {
        ("templates.branch", "is not one of the offer's channels"),
        ("templates", "needs a template for sms, an outbound channel"),
    }
    (problem,) = problems(environment, document(outbound=True))
    assert problem.field == "outbound"


def test_a_non_personalised_offer_may_read_only_channel_and_placement(
    environment: RuleEnvironment,
) -> None:
    doc = document(
        personalised=False,
        eligibility=['channel == "mobile_app"', 'placement == "home" && tier == "gold"'],
    )
    (problem,) = problems(environment, doc)
    assert problem.field == "eligibility[1]"
    assert "may not read the party's facts (tier)" in problem.message


def test_valid_until_must_follow_valid_from(environment: RuleEnvironment) -> None:
    doc = document(
        valid_from="2026-07-01T00:00:00+08:00",
        valid_until=dt.datetime(2026, 6, 30, 16, 0, tzinfo=dt.UTC),
    )
    (problem,) = problems(environment, doc)
    assert (problem.field, problem.message) == ("valid_until", "must be after valid_from")


def test_to_document_round_trips(environment: RuleEnvironment) -> None:
    doc = document(
        channels=["sms", "mobile_app"],
        placements=["home_banner"],
        templates={"sms": "tpl_sms"},
        outbound=True,
        eligibility=['assets["USD"] >= 5000.0'],
        valid_from="2026-07-01T00:00:00+08:00",
        value="600.50",
        levers="1.20",
        context_boosts={"journey=fx_transfer": "2"},
        contact_limits={"max_contacts": 2, "window_days": 30, "cool_down_days": 90},
        depends_on=["assets", "risk"],
    )
    offer = compile_offer(doc, environment)
    again = compile_offer(offer.to_document(), environment)
    assert again == offer
    assert again.to_document() == offer.to_document()
    assert offer.valid_from == dt.datetime(2026, 6, 30, 16, 0, tzinfo=dt.UTC)


def test_the_version_follows_the_content_not_the_order_or_the_spelling(
    environment: RuleEnvironment,
) -> None:
    docs: list[dict[str, Any]] = [document(f"offer_{n}", value=str(100 + n)) for n in range(6)]
    version = compile_catalogue(docs, environment).version
    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)
    assert compile_catalogue(shuffled, environment).version == version
    respelled = [dict(doc, value=f"{doc['value']}.00", channels=["mobile_app"]) for doc in docs]
    assert compile_catalogue(respelled, environment).version == version
    changed = [*docs[:-1], dict(docs[-1], value="999")]
    assert compile_catalogue(changed, environment).version != version


def test_an_offer_id_defined_twice_is_refused(environment: RuleEnvironment) -> None:
    with pytest.raises(CatalogueError) as raised:
        compile_catalogue({"a.yaml": document("same"), "b.yaml": document("same")}, environment)
    (problem,) = raised.value.problems
    assert (problem.source, problem.field, problem.message) == (
        "b.yaml",
        "offer_id",
        "also defined in a.yaml",
    )
    offer = compile_offer(document("same"), environment)
    with pytest.raises(CatalogueError):
        Catalogue([offer, offer], environment)


def test_facts_affecting_adds_what_the_rules_read_risk_and_consent(
    environment: RuleEnvironment,
) -> None:
    offer = compile_offer(
        document(
            channels=["sms"],
            templates={"sms": "t"},
            outbound=True,
            product_risk=2,
            eligibility=['assets["USD"] >= 5000.0'],
            applicability=['!("WM" in products) && channel == "sms"'],
            depends_on=["tier"],
        ),
        environment,
    )
    assert facts_affecting(offer) == {
        FactKind.TIER,
        FactKind.ASSETS,
        FactKind.HOLDINGS,
        FactKind.RISK,
        FactKind.CONSENT,
    }
    assert facts_affecting(compile_offer(document(), environment)) == frozenset()


def test_a_rule_reading_age_makes_the_offer_decide_again_when_the_age_changes(
    environment: RuleEnvironment,
) -> None:
    reads = compile_offer(document(eligibility=["age >= 18"]), environment)
    declares = compile_offer(document(depends_on=["age"]), environment)

    assert facts_affecting(reads) == {FactKind.AGE}
    assert facts_affecting(declares) == {FactKind.AGE}
    assert declares.to_document()["depends_on"] == ["age"]
