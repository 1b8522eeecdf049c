"""The transport codec on its own (pure, no I/O): every enum maps both ways and refuses numbers it
does not know, naming the field; an offer survives the contract both ways; every bad field of a
request is named as the request names it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from zhike.offers.v1 import offers_pb2
from zhike.offers.v1 import offers_service_pb2 as pb
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_offers.catalogue import load_catalogue
from zhike_offers.domain import decision as decisions
from zhike_offers.domain.catalogue import Catalogue, Category, Offer, compile_offer
from zhike_offers.domain.contact_policy import ContactHistory, ContactKind, SuppressionRule
from zhike_offers.domain.decision import Factors, NotChosen, Reason
from zhike_offers.domain.eligibility import CHANNELS, RuleEnvironment
from zhike_offers.domain.facts import FactKind, OfferFacts
from zhike_offers.domain.model import (
    ContactPreferences,
    Decided,
    DecidedOffer,
    DecisionLogEntry,
    DecisionTrigger,
    ResponseRecord,
    SimulationResult,
    WithdrawnDecision,
)
from zhike_offers.domain.propensity import PropensityModel
from zhike_offers.transport import codec
from zhike_runtime.errors import FieldViolation, InvalidArgument
from zhike_runtime.paging import DEFAULT_PAGE_SIZE
from zhike_runtime.validation import Violations

from ..domain.builders import shared_environment

PARTY = str(uuid.uuid4())
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def environment() -> RuleEnvironment:
    return shared_environment()


def numbers(descriptor: EnumDescriptor) -> set[int]:
    return {value.number for value in descriptor.values if value.number != 0}


def fields_of(error: InvalidArgument) -> list[str]:
    return [violation.field for violation in error.violations]


def described(error: InvalidArgument, field: str) -> str:
    return " | ".join(v.description for v in error.violations if v.field == field)


def app_offer(**fields: Any) -> offers_pb2.Offer:
    """A valid marketing offer on the app, in the contract, with `fields` replaced."""
    message = offers_pb2.Offer(
        offer_id="test_offer",
        names=offers_pb2.OfferNames(zh_cn="测试优惠", en="Test offer"),
        product_code="TEST_OFFER",
        category=offers_pb2.OFFER_CATEGORY_MARKETING,
        channels=[offers_pb2.CHANNEL_MOBILE_APP],
        value_cny="100",
    )
    for name, value in fields.items():
        message.ClearField(name)  # type: ignore[arg-type]  # a field name from the test
        if isinstance(value, list):
            getattr(message, name).extend(value)
        elif isinstance(value, dict):
            getattr(message, name).update(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def compiled(message: offers_pb2.Offer, environment: RuleEnvironment, version: int = 1) -> Offer:
    """What the service does with a created offer: decode, stamp the version, compile; every
    problem named by the request's fields."""
    v = Violations()
    document = codec.offer_document(v, "offer", message)
    v.raise_if_any()
    try:
        return compile_offer({**document, "version": version}, environment)
    except InvalidArgument as error:
        raise codec.offer_error(error, "offer", message) from None


def refused(message: offers_pb2.Offer, environment: RuleEnvironment) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        compiled(message, environment)
    return caught.value


# --- enums, both ways -----------------------------------------------------------------------


def test_every_channel_maps_both_ways_onto_the_domains_channels() -> None:
    assert set(codec.CHANNELS) == numbers(offers_pb2.Channel.DESCRIPTOR)
    assert sorted(codec.CHANNELS.values()) == sorted(CHANNELS)
    for number, name in codec.CHANNELS.items():
        assert codec.channel_number(name) == number


def test_every_category_and_fact_kind_maps_both_ways() -> None:
    assert set(codec.CATEGORIES) == numbers(offers_pb2.OfferCategory.DESCRIPTOR)
    assert set(codec.CATEGORIES.values()) == set(Category)
    for number, category in codec.CATEGORIES.items():
        assert codec.category_number(category) == number
    assert set(codec.FACT_KINDS) == numbers(offers_pb2.FactKind.DESCRIPTOR)
    assert set(codec.FACT_KINDS.values()) == set(FactKind)
    for number, kind in codec.FACT_KINDS.items():
        assert codec.fact_kind_number(kind) == number


def test_every_product_risk_is_its_level() -> None:
    assert set(codec.PRODUCT_RISKS) == {0, *numbers(source_pb.ProductRisk.DESCRIPTOR)}
    assert dict(codec.PRODUCT_RISKS) == {number: number for number in range(6)}


def test_every_response_kind_maps_both_ways_and_only_callers_kinds_are_accepted() -> None:
    assert set(codec.RESPONSE_KINDS) == numbers(pb.ResponseKind.DESCRIPTOR)
    for number, kind in codec.RESPONSE_KINDS.items():
        assert codec.response_kind_number(kind) == number
    # Decided and delivered are the service's own records, not a caller's response.
    assert set(ContactKind) - set(codec.RESPONSE_KINDS.values()) == {
        ContactKind.DECIDED_OUTBOUND,
        ContactKind.DELIVERED,
    }


def test_every_not_chosen_reason_and_suppression_rule_has_its_own_number() -> None:
    reasons = {r: n for r, n in codec.NOT_CHOSEN_REASONS.items() if r is not Reason.RETIRED}
    assert set(codec.NOT_CHOSEN_REASONS) == set(Reason)
    assert sorted(reasons.values()) == sorted(numbers(offers_pb2.NotChosenReason.DESCRIPTOR))
    assert set(codec.SUPPRESSION_RULES) == set(SuppressionRule)
    assert sorted(codec.SUPPRESSION_RULES.values()) == sorted(
        numbers(offers_pb2.SuppressionRule.DESCRIPTOR)
    )
    for rule, number in codec.SUPPRESSION_RULES.items():
        # The same words on both sides: SuppressionRule.DECLINE_COOL_DOWN ↔ …_DECLINE_COOL_DOWN.
        name = offers_pb2.SuppressionRule.Name(number)
        assert name == f"SUPPRESSION_RULE_{rule.name}"


def test_every_withdraw_reason_is_reached_and_other_suppressions_do_not_withdraw() -> None:
    def why(reason: Reason, rule: SuppressionRule | None = None) -> NotChosen:
        return NotChosen("o", 1, reason, "", suppression=rule)

    reached = {
        codec.withdraw_reason(why(reason))
        for reason in Reason
        if reason not in (Reason.SUPPRESSED, Reason.BELOW_CUTOFF)
    } | {
        codec.withdraw_reason(why(Reason.SUPPRESSED, rule))
        for rule in (
            SuppressionRule.DO_NOT_CONTACT,
            SuppressionRule.CHANNEL_OPTED_OUT,
            SuppressionRule.NO_CONSENT,
        )
    }
    assert reached == numbers(offers_pb2.WithdrawReason.DESCRIPTOR)
    for rule in (SuppressionRule.BUDGET, SuppressionRule.IGNORED, SuppressionRule.OFFER_CAP):
        with pytest.raises(ValueError, match="does not withdraw"):
            codec.withdraw_reason(why(Reason.SUPPRESSED, rule))
    with pytest.raises(ValueError, match="does not withdraw"):
        codec.withdraw_reason(why(Reason.BELOW_CUTOFF))


# --- offers both ways ------------------------------------------------------------------------


def test_every_default_offer_survives_the_contract_both_ways(environment: RuleEnvironment) -> None:
    for offer in load_catalogue(environment).offers:
        message = codec.offer_message(offer)
        again = compiled(message, environment, version=offer.version)
        assert again.to_document() == offer.to_document()
        assert codec.offer_message(again) == message


def test_an_offer_in_canonical_form_comes_back_as_it_was_sent(environment: RuleEnvironment) -> None:
    sent = app_offer(
        offer_id="usd_fx_push",
        category=offers_pb2.OFFER_CATEGORY_SERVICE,
        product_risk=source_pb.PRODUCT_RISK_R2,
        channels=[offers_pb2.CHANNEL_MOBILE_APP, offers_pb2.CHANNEL_PUSH],  # sorted by name
        placements=["home_banner"],
        valid_from_time=Timestamp(seconds=1_780_000_000),
        valid_until_time=Timestamp(seconds=1_790_000_000),
        eligibility=['assets["USD"] >= 5000.0'],
        applicability=['!("WM_USD_6M" in products)'],
        value_cny="1234567.89",
        levers="1.5",
        contact_limits=offers_pb2.ContactLimits(max_contacts=2, window_days=30, cool_down_days=0),
        outbound=True,
        templates=[
            offers_pb2.ChannelTemplate(channel=offers_pb2.CHANNEL_PUSH, template_id="push_v1")
        ],
        depends_on=[offers_pb2.FACT_KIND_ASSETS, offers_pb2.FACT_KIND_RISK],
        personalised=True,
        context_boosts={"journey=fx_transfer": "2"},
    )
    offer = compiled(sent, environment, version=3)
    assert offer.value == Decimal("1234567.89")
    assert offer.contact_limits.cool_down_days == 0  # present and 0: no cool-down at all
    sent.version = 3
    assert codec.offer_message(offer) == sent


def test_money_is_a_decimal_string_from_request_to_domain_and_back(
    environment: RuleEnvironment,
) -> None:
    message = app_offer(value_cny="0.10", levers="0.3")
    v = Violations()
    document = codec.offer_document(v, "offer", message)

    def leaves(value: object) -> Iterable[object]:
        if isinstance(value, Mapping):
            for item in value.values():
                yield from leaves(item)
        elif isinstance(value, list):
            for item in value:
                yield from leaves(item)
        else:
            yield value

    assert not any(isinstance(leaf, float) for leaf in leaves(document))
    assert document["value"] == "0.10"
    offer = compiled(message, environment)
    assert (offer.value, offer.levers) == (Decimal("0.1"), Decimal("0.3"))
    back = codec.offer_message(offer)
    assert (back.value_cny, back.levers) == ("0.1", "0.3")  # exact, not 0.30000000000000004


def test_absent_optional_fields_take_the_documented_defaults(environment: RuleEnvironment) -> None:
    offer = compiled(app_offer(), environment)
    assert offer.levers == Decimal(1)
    assert offer.personalised is True  # absent in a request: true
    assert (offer.contact_limits.max_contacts, offer.contact_limits.window_days) == (3, 30)
    assert offer.contact_limits.cool_down_days is None  # the policy's default
    assert compiled(app_offer(personalised=False), environment).personalised is False


# --- bad offers, named as the request names them --------------------------------------------


def test_cel_unknown_name_and_type_error_name_the_clause_and_the_position(
    environment: RuleEnvironment,
) -> None:
    error = refused(
        app_offer(
            eligibility=["balance > 1.0"],
            applicability=["tier == 'gold'", 'assets["USD"] >= 5000'],
        ),
        environment,
    )
    assert fields_of(error) == ["offer.eligibility[0]", "offer.applicability[1]"]
    assert "at 1:1: undeclared reference to 'balance'" in described(error, "offer.eligibility[0]")
    type_error = described(error, "offer.applicability[1]")
    assert "at 1:15:" in type_error
    assert "(double, int)" in type_error


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"channels": []}, "offer.channels", "at least one channel"),
        ({"channels": [offers_pb2.CHANNEL_UNSPECIFIED]}, "offer.channels[0]", "is required"),
        ({"channels": [offers_pb2.CHANNEL_SMS, 99]}, "offer.channels[1]", "unknown Channel"),
        ({"category": 7}, "offer.category", "unknown OfferCategory value 7"),
        ({"category": 0}, "offer.category", "missing"),
        ({"product_risk": 9}, "offer.product_risk", "unknown ProductRisk value 9"),
        ({"depends_on": [offers_pb2.FACT_KIND_TIER, 40]}, "offer.depends_on[1]", "FactKind"),
        ({"depends_on": [0]}, "offer.depends_on[0]", "is required"),
        ({"offer_id": "X"}, "offer.offer_id", "a-z"),
        ({"value_cny": ""}, "offer.value_cny", "missing"),
        ({"value_cny": "12,50"}, "offer.value_cny", "not a decimal"),
        ({"value_cny": "-1"}, "offer.value_cny", "must be from 0"),
        ({"levers": "0"}, "offer.levers", "above 0"),
        ({"product_code": ""}, "offer.product_code", "is required"),
        ({"placements": ["Home Banner"]}, "offer.placements[0]", "a-z"),
        ({"context_boosts": {"journey": "2"}}, "offer.context_boosts.journey", "journey="),
        (
            {"contact_limits": offers_pb2.ContactLimits(max_contacts=101)},
            "offer.contact_limits.max_contacts",
            "from 1 to 100",
        ),
        (
            {"contact_limits": offers_pb2.ContactLimits(window_days=-1)},
            "offer.contact_limits.window_days",
            "from 1 to 366",
        ),
        (
            {
                "valid_from_time": Timestamp(seconds=1_790_000_000),
                "valid_until_time": Timestamp(seconds=1_780_000_000),
            },
            "offer.valid_until_time",
            "after valid_from",
        ),
        (
            {"valid_from_time": Timestamp(seconds=2**62)},
            "offer.valid_from_time",
            "not a valid time",
        ),
        ({"outbound": True}, "offer.outbound", "needs an outbound channel"),
        ({"eligibility": ["   "]}, "offer.eligibility[0]", "empty clause"),
        ({"eligibility": ["1 + 1"]}, "offer.eligibility[0]", "true or false"),
    ],
)
def test_a_bad_offer_field_is_named_as_the_request_names_it(
    environment: RuleEnvironment, fields: dict[str, Any], field: str, says: str
) -> None:
    error = refused(app_offer(**fields), environment)
    assert field in fields_of(error), error
    assert says in described(error, field)


def test_both_missing_names_are_named(environment: RuleEnvironment) -> None:
    error = refused(app_offer(names=offers_pb2.OfferNames()), environment)
    assert fields_of(error) == ["offer.names.zh_cn"]  # the domain stops at the first language
    error = refused(app_offer(names=offers_pb2.OfferNames(zh_cn="优惠")), environment)
    assert fields_of(error) == ["offer.names.en"]


def test_templates_with_an_unknown_repeated_or_foreign_channel_are_named(
    environment: RuleEnvironment,
) -> None:
    def template(channel: int, template_id: str = "t_v1") -> offers_pb2.ChannelTemplate:
        return offers_pb2.ChannelTemplate(
            channel=offers_pb2.Channel.ValueType(channel), template_id=template_id
        )

    error = refused(app_offer(templates=[template(99)]), environment)
    assert fields_of(error) == ["offer.templates[0].channel"]
    assert "unknown Channel value 99" in described(error, "offer.templates[0].channel")

    error = refused(
        app_offer(
            channels=[offers_pb2.CHANNEL_SMS],
            templates=[template(offers_pb2.CHANNEL_SMS), template(offers_pb2.CHANNEL_SMS)],
        ),
        environment,
    )
    assert fields_of(error) == ["offer.templates[1].channel"]
    assert "repeats templates[0].channel" in described(error, "offer.templates[1].channel")

    # Well-formed, but for a channel the offer is not on, and sms left without one.
    error = refused(
        app_offer(
            channels=[offers_pb2.CHANNEL_MOBILE_APP, offers_pb2.CHANNEL_SMS],
            templates=[
                template(offers_pb2.CHANNEL_MOBILE_APP),
                template(offers_pb2.CHANNEL_EMAIL),
            ],
        ),
        environment,
    )
    assert fields_of(error) == ["offer.templates[1]", "offer.templates"]
    assert "not one of the offer's channels" in described(error, "offer.templates[1]")
    assert "needs a template for sms" in described(error, "offer.templates")

    error = refused(
        app_offer(templates=[template(offers_pb2.CHANNEL_MOBILE_APP, "bad id")]), environment
    )
    assert fields_of(error) == ["offer.templates[0]"]


def test_a_bad_offer_name_is_refused_without_repeating_it(environment: RuleEnvironment) -> None:
    hidden = "王小明\u200b"
    error = refused(app_offer(names=offers_pb2.OfferNames(zh_cn=hidden, en="x")), environment)
    assert fields_of(error) == ["offer.names.zh_cn"]
    assert "王小明" not in str(error)


def test_service_errors_are_renamed_only_under_the_offer() -> None:
    message = app_offer(
        channels=[offers_pb2.CHANNEL_SMS],
        templates=[offers_pb2.ChannelTemplate(channel=offers_pb2.CHANNEL_SMS, template_id="t")],
    )
    error = InvalidArgument(
        [
            FieldViolation("offer.value", "a"),
            FieldViolation("offer.templates.sms", "b"),
            FieldViolation("offer.names.zh-CN", "c"),
            FieldViolation("expected_version", "d"),
        ]
    )
    assert fields_of(codec.offer_error(error, "offer", message)) == [
        "offer.value_cny",
        "offer.templates[0]",
        "offer.names.zh_cn",
        "expected_version",
    ]


# --- requests -------------------------------------------------------------------------------


def decide(**fields: Any) -> pb.DecideOffersRequest:
    request = pb.DecideOffersRequest(party_id=PARTY, channel=offers_pb2.CHANNEL_MOBILE_APP)
    for name, value in fields.items():
        if isinstance(value, dict):
            getattr(request, name).update(value)
        else:
            setattr(request, name, value)
    return request


def test_a_decide_request_becomes_the_domains_request() -> None:
    party, request = codec.decide_request(
        decide(
            channel=offers_pb2.CHANNEL_SMS,
            placement="home_banner",
            explain=True,
            context={"journey": "fx_transfer"},
        ),
        default_max_offers=3,
    )
    assert party == PARTY
    assert (request.channel, request.placement, request.max_offers) == ("sms", "home_banner", 3)
    assert request.explain
    assert dict(request.context) == {"journey": "fx_transfer"}
    assert not request.outbound  # a caller's decision is never a proactive one
    _, request = codec.decide_request(decide(max_offers=5), default_max_offers=3)
    assert request.max_offers == 5


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"channel": offers_pb2.CHANNEL_UNSPECIFIED}, "channel", "is required"),
        ({"channel": 42}, "channel", "unknown Channel value 42"),
        ({"party_id": ""}, "party_id", "is required"),
        ({"party_id": "刘建军"}, "party_id", "must be a UUID"),
        ({"max_offers": 10**6}, "max_offers", "from 1 to 20"),
        ({"max_offers": -1}, "max_offers", "from 1 to 20"),
        ({"placement": "Home"}, "placement", "a-z"),
        ({"context": {f"k{i}": "v" for i in range(17)}}, "context", "at most 16"),
        ({"context": {"journey": "fx transfer"}}, "context.journey", "value"),
    ],
)
def test_a_bad_decide_request_names_the_field(
    fields: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.decide_request(decide(**fields), default_max_offers=1)
    assert fields_of(caught.value) == [field]
    assert says in described(caught.value, field)
    assert "刘建军" not in str(caught.value)


def test_page_sizes_above_the_maximum_are_refused_not_clamped() -> None:
    for size, expected in ((0, min(DEFAULT_PAGE_SIZE, 200)), (1, 1), (200, 200)):
        assert codec.list_offers_request(
            pb.ListOffersRequest(page_size=size), max_page_size=200
        ) == (expected)
    for request in (pb.ListOffersRequest(page_size=10**6), pb.ListOffersRequest(page_size=-1)):
        with pytest.raises(InvalidArgument) as caught:
            codec.list_offers_request(request, max_page_size=200)
        assert fields_of(caught.value) == ["page_size"]
    with pytest.raises(InvalidArgument) as caught:
        codec.list_decisions_request(
            pb.ListDecisionsRequest(party_id=PARTY, page_size=10**6), max_page_size=200
        )
    assert fields_of(caught.value) == ["page_size"]
    assert "at most 200, got 1000000" in described(caught.value, "page_size")


def test_simulation_sample_size_above_the_maximum_is_refused(
    environment: RuleEnvironment,
) -> None:
    document, size, segment = codec.simulate_request(
        pb.SimulateOfferRequest(offer=app_offer(), segment="usd_holder"), max_sample_size=5000
    )
    assert (size, segment) == (0, "usd_holder")  # 0: the service's default
    assert compile_offer({**document, "version": 1}, environment).offer_id == "test_offer"
    for fields, field in (
        ({"sample_size": 10**6}, "sample_size"),
        ({"sample_size": -5}, "sample_size"),
        ({"segment": "usd holder"}, "segment"),
        ({"offer": app_offer(channels=[77])}, "offer.channels[0]"),
    ):
        with pytest.raises(InvalidArgument) as caught:
            codec.simulate_request(
                pb.SimulateOfferRequest(**({"offer": app_offer()} | fields)), max_sample_size=5000
            )
        assert fields_of(caught.value) == [field]


def test_catalogue_requests_name_their_bad_fields() -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.update_request(pb.UpdateOfferRequest(offer=app_offer(category=5)))
    assert fields_of(caught.value) == ["offer.category", "expected_version"]
    with pytest.raises(InvalidArgument) as caught:
        codec.retire_request(pb.RetireOfferRequest(offer_id="Bad Id", reason="\x00"))
    assert fields_of(caught.value) == ["offer_id", "expected_version", "reason"]
    with pytest.raises(InvalidArgument) as caught:
        codec.offer_key(pb.GetOfferRequest(offer_id="", version=-1))
    assert fields_of(caught.value) == ["offer_id", "version"]
    assert codec.offer_key(pb.GetOfferRequest(offer_id="usd_fx_wealth")) == ("usd_fx_wealth", 0)
    assert codec.retire_request(
        pb.RetireOfferRequest(offer_id="usd_fx_wealth", expected_version=2, reason=" ended ")
    ) == ("usd_fx_wealth", 2, "ended")


def test_contact_preferences_need_at_least_one_switch() -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.set_preferences_request(pb.SetContactPreferencesRequest(party_id=PARTY))
    assert fields_of(caught.value) == ["do_not_contact"]
    assert codec.set_preferences_request(
        pb.SetContactPreferencesRequest(party_id=PARTY, personalised_offers=False)
    ) == codec.PreferencesChange(PARTY, None, False, None)
    assert codec.set_preferences_request(
        pb.SetContactPreferencesRequest(party_id=PARTY, do_not_contact=False)
    ) == codec.PreferencesChange(PARTY, False, None, None)
    with pytest.raises(InvalidArgument) as caught:
        codec.party_request("not-a-party")
    assert fields_of(caught.value) == ["party_id"]


def test_opted_out_channels_absent_mean_unchanged_and_present_and_empty_mean_none() -> None:
    none = pb.SetContactPreferencesRequest(
        party_id=PARTY, opted_out_channels=offers_pb2.OptedOutChannels()
    )
    sms_and_push = pb.SetContactPreferencesRequest(
        party_id=PARTY,
        opted_out_channels=offers_pb2.OptedOutChannels(
            channels=[offers_pb2.CHANNEL_PUSH, offers_pb2.CHANNEL_SMS, offers_pb2.CHANNEL_SMS]
        ),
    )

    assert codec.set_preferences_request(none).opted_out_channels == frozenset()
    assert codec.set_preferences_request(sms_and_push).opted_out_channels == frozenset(
        {"sms", "push"}
    )


def test_an_unknown_or_inbound_opted_out_channel_is_refused_naming_its_place() -> None:
    request = pb.SetContactPreferencesRequest(
        party_id=PARTY,
        opted_out_channels=offers_pb2.OptedOutChannels(
            channels=[offers_pb2.CHANNEL_SMS, 99, offers_pb2.CHANNEL_BRANCH]  # type: ignore[list-item]
        ),
    )

    with pytest.raises(InvalidArgument) as caught:
        codec.set_preferences_request(request)

    assert fields_of(caught.value) == [
        "opted_out_channels.channels[1]",
        "opted_out_channels.channels[2]",
    ]


# --- decisions out --------------------------------------------------------------------------


def test_a_not_chosen_offer_carries_its_clause_rule_and_factors() -> None:
    factors = Factors(0.1, 1.0, 0.6, 1.0, 0.06)
    ineligible = codec.not_chosen_message(
        NotChosen(
            "usd_fx_wealth",
            2,
            Reason.INELIGIBLE,
            'eligibility[0] is false: assets["USD"] >= 5000.0',
            clause_index=0,
            clause_text='assets["USD"] >= 5000.0',
        )
    )
    assert ineligible.reason == offers_pb2.NOT_CHOSEN_REASON_INELIGIBLE
    assert ineligible.HasField("clause")
    assert not ineligible.HasField("factors")
    assert (ineligible.clause.index, ineligible.clause.expression) == (0, 'assets["USD"] >= 5000.0')
    assert ineligible.suppression_rule == offers_pb2.SUPPRESSION_RULE_UNSPECIFIED
    suppressed = codec.not_chosen_message(
        NotChosen(
            "card",
            1,
            Reason.SUPPRESSED,
            "ignored",
            suppression=SuppressionRule.IGNORED,
            factors=factors,
        )
    )
    assert suppressed.suppression_rule == offers_pb2.SUPPRESSION_RULE_IGNORED
    assert not suppressed.HasField("clause")
    assert suppressed.factors == offers_pb2.PriorityFactors(
        propensity=0.1, context_weight=1.0, value=0.6, levers=1.0, priority=0.06
    )


def test_times_are_utc_timestamps() -> None:
    at = dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert codec.timestamp(at).ToDatetime(tzinfo=dt.UTC) == at


# --- responses in, decisions out ------------------------------------------------------------


def response(**fields: Any) -> pb.RecordResponseRequest:
    request = pb.RecordResponseRequest(
        response_id=str(uuid.uuid4()),
        decision_id=str(uuid.uuid4()),
        offer_id="usd_fx_wealth",
        party_id=PARTY,
        kind=pb.RESPONSE_KIND_IGNORE,
        channel=offers_pb2.CHANNEL_SMS,
    )
    for name, value in fields.items():
        if hasattr(value, "DESCRIPTOR"):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


def test_a_response_without_a_time_is_recorded_now() -> None:
    sent = response()
    record = codec.response_record(sent, NOW)
    assert record == ResponseRecord(
        sent.response_id, sent.decision_id, "usd_fx_wealth", PARTY, ContactKind.IGNORE, "sms", NOW
    )
    earlier = NOW - dt.timedelta(hours=2)
    stamped = codec.response_record(response(response_time=codec.timestamp(earlier)), NOW)
    assert stamped.at == earlier


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"response_id": ""}, "response_id", "is required"),
        ({"response_id": "r-1"}, "response_id", "UUID"),
        ({"decision_id": "d"}, "decision_id", "UUID"),
        ({"offer_id": "USD"}, "offer_id", "a-z"),
        ({"party_id": ""}, "party_id", "is required"),
        ({"kind": 0}, "kind", "is required: one of RESPONSE_KIND_IMPRESSION"),
        ({"kind": 9}, "kind", "unknown ResponseKind value 9"),
        ({"channel": 0}, "channel", "is required"),
        ({"channel": 12}, "channel", "unknown Channel value 12"),
        (
            {"response_time": codec.timestamp(NOW + dt.timedelta(hours=1))},
            "response_time",
            "in the future",
        ),
        ({"response_time": Timestamp(seconds=-(2**40))}, "response_time", "not a valid time"),
    ],
)
def test_a_bad_response_names_the_field(fields: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        codec.response_record(response(**fields), NOW)
    assert fields_of(caught.value) == [field]
    assert says in described(caught.value, field)


def test_every_decision_trigger_has_its_own_number() -> None:
    assert set(codec.DECISION_TRIGGERS) == set(DecisionTrigger)
    assert sorted(codec.DECISION_TRIGGERS.values()) == sorted(
        numbers(pb.DecisionTrigger.DESCRIPTOR)
    )


def decided(environment: RuleEnvironment) -> Decided:
    """An app decision between two everyone-offers and one for USD holders only (not chosen)."""
    offers = [
        compiled(app_offer(offer_id=name, value_cny=value), environment)
        for name, value in (("card_a", "300"), ("card_b", "100"))
    ]
    usd = compiled(
        app_offer(offer_id="usd_only", eligibility=['assets["USD"] >= 5000.0']), environment
    )
    catalogue = Catalogue([*offers, usd], environment)
    request = decisions.decision_request(channel="mobile_app", max_offers=2, explain=True)
    decision = decisions.decide(
        OfferFacts(PARTY), catalogue, ContactHistory(), PropensityModel(), request, NOW
    )
    arbitration = "6a0c3e2e-9b3a-4c55-8d1e-7f0a1b2c3d00"
    return Decided(
        decision,
        arbitration,
        tuple(
            DecidedOffer(chosen, f"{arbitration[:-2]}0{chosen.rank}", offers[chosen.rank - 1])
            for chosen in decision.chosen
        ),
    )


def test_a_decision_returns_its_ranked_offers_and_explains_only_when_asked(
    environment: RuleEnvironment,
) -> None:
    result = decided(environment)
    explained = codec.decide_response(result, explain=True)
    assert [(d.offer_id, d.rank, d.product_code) for d in explained.decisions] == [
        ("card_a", 1, "TEST_OFFER"),
        ("card_b", 2, "TEST_OFFER"),
    ]
    first = explained.decisions[0]
    assert first.decision_id == result.offers[0].decision_id
    assert first.names == offers_pb2.OfferNames(zh_cn="测试优惠", en="Test offer")
    assert first.category == offers_pb2.OFFER_CATEGORY_MARKETING
    assert first.factors.priority == pytest.approx(
        first.factors.propensity
        * first.factors.context_weight
        * first.factors.value
        * first.factors.levers
    )
    assert [(n.offer_id, n.reason, n.clause.index) for n in explained.not_chosen] == [
        ("usd_only", offers_pb2.NOT_CHOSEN_REASON_INELIGIBLE, 0)
    ]
    assert explained.personalised
    assert explained.arbitration_id == result.arbitration_id
    assert explained.decide_time.ToDatetime(tzinfo=dt.UTC) == NOW
    assert explained.catalogue_version == result.decision.catalogue_version
    quiet = codec.decide_response(result, explain=False)
    assert list(quiet.not_chosen) == []
    assert list(quiet.decisions) == list(explained.decisions)


def test_a_log_entry_carries_its_trigger_digest_explanations_and_withdrawals(
    environment: RuleEnvironment,
) -> None:
    result = decided(environment)
    gone = NotChosen(
        "usd_fx_wealth", 1, Reason.INELIGIBLE, 'eligibility[0] is false: assets["USD"] >= 5000.0'
    )
    entry = DecisionLogEntry(
        arbitration_id=result.arbitration_id,
        party_id=PARTY,
        trigger=DecisionTrigger.PROFILE_CHANGE,
        decided_at=NOW,
        channel="mobile_app",
        placement="",
        chosen=result.offers,
        not_chosen=result.decision.not_chosen,
        inputs_digest="ab" * 32,
        catalogue_version=result.decision.catalogue_version,
        model_version="beta-0",
        profile_version=7,
        personalised=True,
        withdrawn=(WithdrawnDecision("d-1", "usd_fx_wealth", 1, "sms", gone, NOW),),
        requested_by="",
    )
    message = codec.log_entry_message(entry)
    assert message.trigger == pb.DECISION_TRIGGER_PROFILE_CHANGE
    assert message.channel == offers_pb2.CHANNEL_MOBILE_APP
    assert (message.inputs_digest, message.profile_version) == ("ab" * 32, 7)
    assert [d.offer_id for d in message.decisions] == ["card_a", "card_b"]
    assert [n.offer_id for n in message.not_chosen] == ["usd_only"]
    assert list(message.withdrawn) == [
        pb.WithdrawnDecision(
            decision_id="d-1",
            offer_id="usd_fx_wealth",
            reason=offers_pb2.WITHDRAW_REASON_INELIGIBLE,
            detail=gone.explanation,
        )
    ]


def test_default_preferences_have_no_update_time() -> None:
    default = codec.preferences_message(ContactPreferences(PARTY))
    assert (default.do_not_contact, default.personalised_offers) == (False, True)
    assert not default.HasField("update_time")
    changed = codec.preferences_message(
        ContactPreferences(PARTY, personalised_offers=False, version=1, updated_at=NOW)
    )
    assert not changed.personalised_offers
    assert changed.update_time.ToDatetime(tzinfo=dt.UTC) == NOW


def test_a_simulation_reports_counts_and_competitors_by_name(environment: RuleEnvironment) -> None:
    rival = compiled(app_offer(offer_id="rival"), environment, version=4)
    message = codec.simulation_response(
        SimulationResult(
            population_size=100,
            sample_size=50,
            eligible=40,
            applicable=30,
            suitable=20,
            contactable=10,
            expected_contacts_per_day=1.5,
            competing=((rival, 7),),
        )
    )
    assert (message.eligible_count, message.contactable_count) == (40, 10)
    assert list(message.competing_offers) == [
        pb.CompetingOffer(
            offer_id="rival", offer_version=4, names=codec.names_message(rival), overlap_count=7
        )
    ]
