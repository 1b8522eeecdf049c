"""Arbitration over the default catalogue and small ones: the FX story, suitability whatever
the priority, the personalised switch, the budget inside one decision, and explanations."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_offers.domain.catalogue import Catalogue
from zhike_offers.domain.contact_policy import ContactEvent, ContactKind, SuppressionRule
from zhike_offers.domain.decision import (
    DecisionConfig,
    Reason,
    decide,
    decision_request,
    reworded,
    withdrawal_reason,
)
from zhike_offers.domain.facts import OfferFacts
from zhike_offers.domain.propensity import Counts, Estimator, PropensityModel
from zhike_offers.domain.suitability import Unsuitable
from zhike_runtime.errors import InvalidArgument

from .builders import NOW, TODAY, catalogue, days, event, facts, holding, offer

USD_6000 = {"USD": 600_000}
SMS: dict[str, Any] = {"channels": ["sms"], "templates": {"sms": "tpl_sms"}, "outbound": True}
NO_HISTORY: list[ContactEvent] = []


def fx_customer(**fields: object) -> OfferFacts:
    return facts(**{"assets": USD_6000, **fields})


def test_usd_6000_decides_the_fx_offer_for_sms_and_usd_0_withdraws_it(
    default_catalogue: Catalogue,
) -> None:
    request = decision_request(channel="sms", outbound=True, max_offers=3, explain=True)
    decision = decide(fx_customer(), default_catalogue, NO_HISTORY, PropensityModel(), request, NOW)
    assert [(c.offer_id, c.rank, c.template_id) for c in decision.chosen] == [
        ("usd_fx_wealth", 1, "offer_usd_fx_wealth_sms_v1")
    ]
    assert decision.catalogue_version == default_catalogue.version

    gone = fx_customer(assets={"USD": 0})
    decision = decide(gone, default_catalogue, NO_HISTORY, PropensityModel(), request, NOW)
    assert decision.chosen == ()
    (why,) = [item for item in decision.not_chosen if item.offer_id == "usd_fx_wealth"]
    assert (why.reason, why.clause_index, why.clause_text) == (
        Reason.INELIGIBLE,
        0,
        'assets["USD"] >= 5000.0',
    )
    assert why.explanation == 'eligibility[0] is false: assets["USD"] >= 5000.0'

    withdrawn = withdrawal_reason(
        "usd_fx_wealth", channel="sms", facts=gone, catalogue=default_catalogue, now=NOW
    )
    assert withdrawn is not None
    assert withdrawn.reason is Reason.INELIGIBLE
    assert (
        withdrawal_reason(
            "usd_fx_wealth",
            channel="sms",
            facts=fx_customer(),
            catalogue=default_catalogue,
            now=NOW,
        )
        is None
    )


def test_a_decision_is_withdrawn_when_consent_goes_or_the_offer_is_retired(
    default_catalogue: Catalogue,
) -> None:
    no_sms = fx_customer(consents={("sms", "marketing"): False})
    withdrawn = withdrawal_reason(
        "usd_fx_wealth", channel="sms", facts=no_sms, catalogue=default_catalogue, now=NOW
    )
    assert withdrawn is not None
    assert (withdrawn.reason, withdrawn.suppression) == (
        Reason.SUPPRESSED,
        SuppressionRule.NO_CONSENT,
    )
    retired = catalogue(offer("usd_fx_wealth", retired=True, **SMS))
    for current in (retired, catalogue()):
        gone = withdrawal_reason(
            "usd_fx_wealth", channel="sms", facts=fx_customer(), catalogue=current, now=NOW
        )
        assert gone is not None
        assert gone.reason is Reason.RETIRED


def r4_and_plain(value: str, levers: str) -> Catalogue:
    return catalogue(
        offer("equity_fund", product_risk=4, value=value, levers=levers),
        offer("savings_plan", value="1"),
    )


@settings(max_examples=40, deadline=None)
@given(
    value=st.sampled_from(["0", "1000", "1000000000"]),
    levers=st.sampled_from(["0.1", "1", "100"]),
    successes=st.floats(0, 1e6),
    seed=st.integers(0, 2**32),
)
def test_a_c2_customer_never_gets_an_r4_offer_whatever_its_priority(
    value: str, levers: str, successes: float, seed: int
) -> None:
    model = PropensityModel(counts={("equity_fund", "all"): Counts(successes, 0)})
    config = DecisionConfig(estimator=Estimator.THOMPSON)
    request = decision_request(channel="mobile_app", max_offers=5, explain=True)
    decision = decide(
        facts(customer_risk=2),
        r4_and_plain(value, levers),
        NO_HISTORY,
        model,
        request,
        NOW,
        seed=seed,
        config=config,
    )
    assert [c.offer_id for c in decision.chosen] == ["savings_plan"]
    (why,) = decision.not_chosen
    assert (why.offer_id, why.reason, why.unsuitable) == (
        "equity_fund",
        Reason.UNSUITABLE,
        Unsuitable.RISK_TOO_HIGH,
    )


def test_with_an_expired_assessment_no_investment_product_is_decided(
    default_catalogue: Catalogue,
) -> None:
    rich = facts(
        assets={"USD": 1_000_000, "CNY": 50_000_000},
        holdings=frozenset({holding("investment", "FUND_MM"), holding("credit_card", "CC_GOLD")}),
        tier="platinum",
        customer_risk=5,
        risk_expires_on=TODAY,  # expired from today on
        age=45,
    )
    request = decision_request(channel="mobile_app", max_offers=20, explain=True)
    decision = decide(rich, default_catalogue, NO_HISTORY, PropensityModel(), request, NOW)
    chosen = {c.offer_id for c in decision.chosen}
    assert "risk_assessment_renewal" in chosen  # the service offer asking to renew it
    investment = {o.offer_id for o in default_catalogue.offers if o.product_risk > 0}
    assert investment
    assert not chosen & investment
    unsuitable = {n.offer_id: n.unsuitable for n in decision.not_chosen}
    assert unsuitable["usd_fx_wealth"] is Unsuitable.ASSESSMENT_EXPIRED
    assert unsuitable["balanced_equity_fund"] is Unsuitable.ASSESSMENT_EXPIRED


def test_personalised_switch_off_gives_only_non_personalised_offers_and_says_so(
    default_catalogue: Catalogue,
) -> None:
    party = fx_customer(
        personalised_offers=False,
        holdings=frozenset({holding("credit_card", "CC_GOLD")}),
        tier="gold",
    )
    request = decision_request(
        channel="mobile_app", placement="home_banner", max_offers=20, explain=True
    )
    decision = decide(party, default_catalogue, NO_HISTORY, PropensityModel(), request, NOW)
    assert decision.personalised is False
    assert [c.offer_id for c in decision.chosen] == ["time_deposit_promo"]
    reasons = {n.offer_id: n.reason for n in decision.not_chosen}
    assert reasons["usd_fx_wealth"] is Reason.NOT_PERSONALISED
    assert reasons["platinum_card_upgrade"] is Reason.NOT_PERSONALISED
    with_switch_on = decide(
        dataclasses.replace(party, personalised_offers=True),
        default_catalogue,
        NO_HISTORY,
        PropensityModel(),
        request,
        NOW,
    )
    assert with_switch_on.personalised is True
    assert {"usd_fx_wealth", "platinum_card_upgrade"} <= {c.offer_id for c in with_switch_on.chosen}


def test_without_personalisation_the_propensity_ignores_the_party_segment() -> None:
    plain = catalogue(offer("promo", personalised=False))
    model = PropensityModel(counts={("promo", "usd_holder"): Counts(50, 0)})
    request = decision_request(channel="mobile_app")
    segmented = facts(segments=frozenset({"usd_holder"}))
    on = decide(segmented, plain, NO_HISTORY, model, request, NOW)
    off = decide(
        dataclasses.replace(segmented, personalised_offers=False),
        plain,
        NO_HISTORY,
        model,
        request,
        NOW,
    )
    assert on.chosen[0].factors.propensity > 0.5
    assert off.chosen[0].factors.propensity == pytest.approx(0.1)


def test_explain_lists_every_candidate_not_chosen_with_its_reason(
    default_catalogue: Catalogue,
) -> None:
    extra = [
        offer("summer_promo", valid_until="2026-09-01T00:00:00+08:00"),
        offer("sms_only", **SMS),
        offer("old_offer", retired=True),
    ]
    offers = catalogue(*default_catalogue.offers, *extra)
    party = fx_customer(
        assets={"USD": 600_000, "CNY": 10_000_000},
        holdings=frozenset({holding("credit_card", "CC_GOLD")}),
        tier="gold",
        segments=frozenset({"foreign_currency_holder"}),
        age=35,
    )
    history = [event(ContactKind.DECLINE, NOW - days(3), "fx_travel_debit_card", "mobile_app")]
    request = decision_request(
        channel="mobile_app", placement="home_banner", max_offers=1, explain=True
    )
    decision = decide(party, offers, history, PropensityModel(), request, NOW)
    assert [c.offer_id for c in decision.chosen] == ["usd_fx_wealth"]
    assert {n.offer_id: n.reason for n in decision.not_chosen} == {
        "balanced_equity_fund": Reason.UNSUITABLE,  # R4 for a C3 customer
        "fx_travel_debit_card": Reason.SUPPRESSED,  # declined three days ago
        "mortgage_refinance": Reason.INELIGIBLE,
        "platinum_card_upgrade": Reason.BELOW_CUTOFF,
        "risk_assessment_renewal": Reason.INELIGIBLE,
        "sms_only": Reason.CHANNEL,
        "summer_promo": Reason.NOT_VALID_NOW,
        "time_deposit_promo": Reason.BELOW_CUTOFF,
    }
    assert all(n.explanation for n in decision.not_chosen)
    below = {n.offer_id: n for n in decision.not_chosen if n.reason is Reason.BELOW_CUTOFF}
    assert all(n.factors is not None for n in below.values())
    suppressed = next(n for n in decision.not_chosen if n.reason is Reason.SUPPRESSED)
    assert suppressed.suppression is SuppressionRule.DECLINE_COOL_DOWN
    assert "old_offer" not in {n.offer_id for n in decision.not_chosen}  # retired: no candidate
    quiet = decide(
        party, offers, history, PropensityModel(), dataclasses.replace(request, explain=False), NOW
    )
    assert (quiet.chosen, quiet.not_chosen) == (decision.chosen, ())


def test_a_reason_the_offer_words_is_worded_again_from_the_offer_alone(
    default_catalogue: Catalogue,
) -> None:
    # The decision log keeps these without their words: `reworded` must give them back exactly.
    extra = [
        offer("summer_promo", valid_until="2026-09-01T00:00:00+08:00"),
        offer("sms_only", **SMS),
        offer("gold_only", eligibility=['tier == "platinum"'], applicability=["true"]),
        offer("not_held", applicability=['!("CC_GOLD" in products)']),
        offer("xau_holders", eligibility=['assets["XAU"] > 1.0']),  # not evaluable
        offer("r5_fund", product_risk=5),  # for a C3 customer
    ]
    offers = catalogue(*default_catalogue.offers, *extra)
    party = fx_customer(holdings=frozenset({holding("credit_card", "CC_GOLD")}))
    history = [event(ContactKind.DECLINE, NOW - days(3), "time_deposit_promo", "mobile_app")]
    request = decision_request(
        channel="mobile_app", placement="home_banner", max_offers=1, explain=True
    )
    decision = decide(party, offers, history, PropensityModel(), request, NOW)

    by_id = {n.offer_id: n for n in decision.not_chosen}
    assert by_id["xau_holders"].explanation.startswith("eligibility[0] is not evaluable (")
    assert not by_id["xau_holders"].offer_worded  # CEL's message: kept with its words
    assert not by_id["time_deposit_promo"].offer_worded  # the policy's: kept with its words
    assert {n.reason for n in decision.not_chosen if n.offer_worded} >= {
        Reason.NOT_VALID_NOW,
        Reason.CHANNEL,
        Reason.INELIGIBLE,
        Reason.NOT_APPLICABLE,
        Reason.UNSUITABLE,
    }
    for item in decision.not_chosen:
        if item.offer_worded:
            unworded = dataclasses.replace(item, explanation="", clause_text="")
            source = offers.offer(item.offer_id)
            assert source is not None
            again = reworded(source, unworded, decision=decision, outbound_only=False)
            assert (again, again.explanation, again.clause_text) == (
                item,
                item.explanation,
                item.clause_text,
            )


def test_a_clause_false_for_one_party_and_not_evaluable_for_another_says_which() -> None:
    offers = catalogue(offer("first_segment", eligibility=['segments[0] == "usd_holder"']))
    request = decision_request(channel="mobile_app", explain=True)

    def why(party: OfferFacts) -> str:
        decision = decide(party, offers, NO_HISTORY, PropensityModel(), request, NOW)
        (item,) = decision.not_chosen
        return item.explanation

    assert why(facts(segments=frozenset({"young_professional"}))).startswith(
        "eligibility[0] is false"
    )
    # No segment at all: the index is out of range (worded once, never taken for "false").
    assert why(facts()).startswith("eligibility[0] is not evaluable (")
    assert why(facts(segments=frozenset({"premium"}))).startswith("eligibility[0] is false")


def test_priority_is_p_times_c_times_v_times_l_and_ties_go_to_the_smaller_id() -> None:
    offers = catalogue(
        offer("fx_card", value="500", levers="1.5", context_boosts={"journey=fx_transfer": "2"}),
        offer("b_twin", value="1000"),
        offer("a_twin", value="1000"),
    )
    model = PropensityModel(counts={("fx_card", "all"): Counts(4, 5)})  # Beta(5, 14)
    config = DecisionConfig(channel_weights={"mobile_app": 1.25})
    request = decision_request(
        channel="mobile_app", max_offers=3, context={"journey": "fx_transfer"}
    )
    decision = decide(facts(), offers, NO_HISTORY, model, request, NOW, config=config)
    assert [c.offer_id for c in decision.chosen] == ["fx_card", "a_twin", "b_twin"]
    first = decision.chosen[0].factors
    assert first.propensity == pytest.approx(5 / 19)
    assert (first.context_weight, first.value, first.levers) == (2.5, 0.5, 1.5)
    assert first.priority == pytest.approx(5 / 19 * 2.5 * 0.5 * 1.5)
    assert decision.chosen[1].factors.priority == pytest.approx(0.1 * 1.25 * 1.0 * 1.0)


def test_a_zero_value_offer_still_ranks() -> None:
    decision = decide(
        facts(),
        catalogue(offer("notice", category="service", value="0")),
        NO_HISTORY,
        PropensityModel(),
        decision_request(channel="mobile_app"),
        NOW,
    )
    assert decision.chosen[0].factors.value == 0.01


def test_one_decision_chooses_no_more_marketing_offers_than_the_budget_allows() -> None:
    offers = catalogue(
        offer("m_high", value="3000", **SMS),
        offer("m_mid", value="2000", **SMS),
        offer("m_low", value="1000", **SMS),
        offer("service_notice", category="service", value="10", **SMS),
    )
    history = [event(ContactKind.DECIDED_OUTBOUND, NOW - days(2), "earlier_offer")]
    request = decision_request(channel="sms", outbound=True, max_offers=4, explain=True)
    decision = decide(facts(), offers, history, PropensityModel(), request, NOW)
    assert [c.offer_id for c in decision.chosen] == ["m_high", "service_notice"]
    budget = {n.offer_id: n for n in decision.not_chosen}
    assert {k: v.suppression for k, v in budget.items()} == {
        "m_mid": SuppressionRule.BUDGET,
        "m_low": SuppressionRule.BUDGET,
    }
    assert budget["m_mid"].explanation == (
        "budget: 1 marketing contacts in the last 7 days and 1 chosen in this decision (limit 2)"
    )


def test_a_thousand_triggering_changes_in_a_day_decide_at_most_the_budget(
    default_catalogue: Catalogue,
) -> None:
    offers = catalogue(
        *default_catalogue.offers,
        *(offer(f"sms_offer_{n}", eligibility=['assets["USD"] > 0.0'], **SMS) for n in range(5)),
    )
    history: list[ContactEvent] = []
    request = decision_request(channel="sms", outbound=True, max_offers=3)
    start = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
    for change in range(1000):
        now = start + dt.timedelta(seconds=86 * change)
        # USD comes and goes: every change makes offers newly eligible again.
        party = fx_customer(assets={"USD": 600_000 if change % 2 else 100}, profile_version=change)
        decision = decide(party, offers, history, PropensityModel(), request, now)
        history.extend(
            ContactEvent(now, c.offer_id, "sms", ContactKind.DECIDED_OUTBOUND)
            for c in decision.chosen
        )
    assert len(history) == 2  # ContactPolicy's default: 2 marketing contacts in 7 days


def test_an_outbound_decision_considers_only_outbound_offers() -> None:
    offers = catalogue(
        offer("pushed", **SMS),
        offer("on_request", channels=["sms"], templates={"sms": "t"}),
    )
    request = decision_request(channel="sms", outbound=True, max_offers=5, explain=True)
    decision = decide(facts(), offers, NO_HISTORY, PropensityModel(), request, NOW)
    assert [c.offer_id for c in decision.chosen] == ["pushed"]
    assert decision.not_chosen[0].explanation == "not an outbound offer"


def test_thompson_sampling_needs_a_seed_and_now_needs_a_time_zone() -> None:
    offers = catalogue(offer())
    request = decision_request(channel="mobile_app")
    thompson = DecisionConfig(estimator=Estimator.THOMPSON)
    with pytest.raises(ValueError, match="seed"):
        decide(facts(), offers, NO_HISTORY, PropensityModel(), request, NOW, config=thompson)
    with pytest.raises(ValueError, match="time zone"):
        decide(facts(), offers, NO_HISTORY, PropensityModel(), request, NOW.replace(tzinfo=None))


def test_a_bad_request_names_every_field() -> None:
    with pytest.raises(InvalidArgument) as raised:
        decision_request(
            channel="",
            placement="Home Banner",
            max_offers=10**6,
            context={"journey": "fx transfer"},
        )
    assert [v.field for v in raised.value.violations] == [
        "channel",
        "placement",
        "max_offers",
        "context.journey",
    ]
    with pytest.raises(InvalidArgument) as raised:
        decision_request(channel="fax")
    assert raised.value.violations[0].description.startswith("must be one of sms, email")
    with pytest.raises(InvalidArgument, match="an outbound decision needs"):
        decision_request(channel="mobile_app", outbound=True)


def test_a_request_takes_the_contracts_sixteen_context_entries_and_no_more() -> None:
    sixteen = {f"k{n}": "v" for n in range(16)}
    assert len(decision_request(channel="mobile_app", context=sixteen).context) == 16
    with pytest.raises(InvalidArgument) as raised:
        decision_request(channel="mobile_app", context={**sixteen, "k16": "v"})
    assert [(v.field, v.description) for v in raised.value.violations] == [
        ("context", "at most 16 entries, got 17")
    ]


def test_value_is_read_against_the_reference_value() -> None:
    config = DecisionConfig(reference_value=Decimal(500))
    decision = decide(
        facts(),
        catalogue(offer(value="250")),
        NO_HISTORY,
        PropensityModel(),
        decision_request(channel="mobile_app"),
        NOW,
        config=config,
    )
    assert decision.chosen[0].factors.value == 0.5


# Valid and type-checked, but past CEL's budget of about 10,000 iterations: 100 × 100. Two of
# 80 × 80 each fit alone and not together in one batch.
_HUNDRED = "[" + ",".join(str(n) for n in range(100)) + "]"
_EIGHTY = "[" + ",".join(str(n) for n in range(80)) + "]"
OVER_BUDGET = f"{_HUNDRED}.all(a, {_HUNDRED}.all(b, a + b >= 0))"
NEAR_BUDGET = f"{_EIGHTY}.all(a, {_EIGHTY}.all(b, a + b >= 0))"


def test_a_clause_past_cels_iteration_budget_is_not_evaluable_and_the_others_are_decided(
    default_catalogue: Catalogue,
) -> None:
    extra = [
        offer("endless", eligibility=[OVER_BUDGET]),
        offer("heavy_one", eligibility=[NEAR_BUDGET]),
        offer("heavy_two", eligibility=[NEAR_BUDGET]),
    ]
    offers = catalogue(*default_catalogue.offers, *extra)
    request = decision_request(
        channel="mobile_app", placement="home_banner", max_offers=20, explain=True
    )

    decision = decide(fx_customer(), offers, [], PropensityModel(), request, NOW)
    alone = decide(fx_customer(), default_catalogue, [], PropensityModel(), request, NOW)

    by_id = {n.offer_id: n for n in decision.not_chosen}
    assert by_id["endless"].explanation.startswith("eligibility[0] is not evaluable (")
    chosen = {c.offer_id for c in decision.chosen}
    # Each heavy clause holds on its own; the rest decide as without the extra offers.
    assert {"heavy_one", "heavy_two"} <= chosen
    assert chosen - {"heavy_one", "heavy_two"} == {c.offer_id for c in alone.chosen}


def test_a_retired_offers_clauses_are_not_evaluated(default_catalogue: Catalogue) -> None:
    # A retired offer is never decided: its clauses, however costly, cost nothing.
    with_it = catalogue(
        *default_catalogue.offers, offer("endless", eligibility=[OVER_BUDGET], retired=True)
    )
    index = [o.offer_id for o in with_it.offers].index("endless")
    activation = with_it.environment.activation(
        fx_customer(), channel="mobile_app", placement="home_banner", today=TODAY
    )

    verdicts = with_it.rules.verdicts(activation)

    assert (verdicts.first_failing[index], verdicts.not_evaluable) == (-1, {})
