"""Translation between the contract (zhike.offers.v1) and the domain (pure: no I/O).

Requests become domain inputs here, every problem named by its field in the request
(`offer.eligibility[1]`, `channel`). Enum numbers map to the domain's names through tables, both
ways; a number a table does not know (a newer client's value, or garbage) is refused naming the
field and the values it may take, never guessed.

An offer travels as the same document the YAML catalogue uses, so `compile_offer` stays the one
place that validates offers. Its problems name document fields ("value", "templates.sms"); the
transport renames them to the request's ("offer.value_cny", "offer.templates[0]").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from zhike.offers.v1 import offers_pb2
from zhike.offers.v1 import offers_service_pb2 as pb
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_offers.domain.catalogue import (
    OFFER_ID_PATTERN,
    CatalogueError,
    Category,
    Offer,
)
from zhike_offers.domain.contact_policy import CLOCK_SKEW, ContactKind, SuppressionRule
from zhike_offers.domain.decision import (
    DecisionRequest,
    Factors,
    NotChosen,
    Reason,
    decision_request,
)
from zhike_offers.domain.eligibility import OUTBOUND_CHANNELS
from zhike_offers.domain.facts import FactKind
from zhike_offers.domain.model import (
    ContactPreferences,
    Decided,
    DecidedOffer,
    DecisionLogEntry,
    DecisionTrigger,
    OfferPage,
    ResponseRecord,
    SimulationResult,
    StoredOffer,
    WithdrawnDecision,
)
from zhike_runtime import paging
from zhike_runtime.errors import FieldViolation, InvalidArgument
from zhike_runtime.validation import Violations

T = TypeVar("T")

# The contract's limits that the domain does not hold itself.
MAX_REASON_LENGTH = 500  # RetireOfferRequest.reason

# --- enums, both ways -----------------------------------------------------------------------

CHANNELS: Mapping[int, str] = MappingProxyType(
    {
        offers_pb2.CHANNEL_BRANCH: "branch",
        offers_pb2.CHANNEL_CALL_CENTRE: "call_centre",
        offers_pb2.CHANNEL_MOBILE_APP: "mobile_app",
        offers_pb2.CHANNEL_SMS: "sms",
        offers_pb2.CHANNEL_EMAIL: "email",
        offers_pb2.CHANNEL_PUSH: "push",
    }
)
CATEGORIES: Mapping[int, Category] = MappingProxyType(
    {
        offers_pb2.OFFER_CATEGORY_MARKETING: Category.MARKETING,
        offers_pb2.OFFER_CATEGORY_SERVICE: Category.SERVICE,
    }
)
FACT_KINDS: Mapping[int, FactKind] = MappingProxyType(
    {
        offers_pb2.FACT_KIND_ASSETS: FactKind.ASSETS,
        offers_pb2.FACT_KIND_HOLDINGS: FactKind.HOLDINGS,
        offers_pb2.FACT_KIND_TIER: FactKind.TIER,
        offers_pb2.FACT_KIND_SEGMENTS: FactKind.SEGMENTS,
        offers_pb2.FACT_KIND_RISK: FactKind.RISK,
        offers_pb2.FACT_KIND_CONSENT: FactKind.CONSENT,
        offers_pb2.FACT_KIND_VALUE_BAND: FactKind.VALUE_BAND,
        offers_pb2.FACT_KIND_LIABILITIES: FactKind.LIABILITIES,
        offers_pb2.FACT_KIND_AGE: FactKind.AGE,
    }
)
# 0 (unspecified) is a value here: not an investment product.
PRODUCT_RISKS: Mapping[int, int] = MappingProxyType(
    {
        source_pb.PRODUCT_RISK_UNSPECIFIED: 0,
        source_pb.PRODUCT_RISK_R1: 1,
        source_pb.PRODUCT_RISK_R2: 2,
        source_pb.PRODUCT_RISK_R3: 3,
        source_pb.PRODUCT_RISK_R4: 4,
        source_pb.PRODUCT_RISK_R5: 5,
    }
)
# What a caller may report; the other contact kinds are the service's own.
RESPONSE_KINDS: Mapping[int, ContactKind] = MappingProxyType(
    {
        pb.RESPONSE_KIND_IMPRESSION: ContactKind.IMPRESSION,
        pb.RESPONSE_KIND_CLICK: ContactKind.CLICK,
        pb.RESPONSE_KIND_ACCEPT: ContactKind.ACCEPT,
        pb.RESPONSE_KIND_DECLINE: ContactKind.DECLINE,
        pb.RESPONSE_KIND_IGNORE: ContactKind.IGNORE,
    }
)
NOT_CHOSEN_REASONS: Mapping[Reason, offers_pb2.NotChosenReason.ValueType] = MappingProxyType(
    {
        Reason.NOT_VALID_NOW: offers_pb2.NOT_CHOSEN_REASON_NOT_VALID_NOW,
        Reason.CHANNEL: offers_pb2.NOT_CHOSEN_REASON_CHANNEL,
        Reason.NOT_PERSONALISED: offers_pb2.NOT_CHOSEN_REASON_NOT_PERSONALISED,
        Reason.INELIGIBLE: offers_pb2.NOT_CHOSEN_REASON_INELIGIBLE,
        Reason.NOT_APPLICABLE: offers_pb2.NOT_CHOSEN_REASON_NOT_APPLICABLE,
        Reason.UNSUITABLE: offers_pb2.NOT_CHOSEN_REASON_UNSUITABLE,
        Reason.SUPPRESSED: offers_pb2.NOT_CHOSEN_REASON_SUPPRESSED,
        Reason.BELOW_CUTOFF: offers_pb2.NOT_CHOSEN_REASON_BELOW_CUTOFF,
        # Only ever a withdrawal's reason: a retired offer is no candidate (WithdrawReason has it).
        Reason.RETIRED: offers_pb2.NOT_CHOSEN_REASON_UNSPECIFIED,
    }
)
SUPPRESSION_RULES: Mapping[SuppressionRule, offers_pb2.SuppressionRule.ValueType] = (
    MappingProxyType(
        {
            SuppressionRule.BUDGET: offers_pb2.SUPPRESSION_RULE_BUDGET,
            SuppressionRule.OFFER_CAP: offers_pb2.SUPPRESSION_RULE_OFFER_CAP,
            SuppressionRule.DECLINE_COOL_DOWN: offers_pb2.SUPPRESSION_RULE_DECLINE_COOL_DOWN,
            SuppressionRule.IGNORED: offers_pb2.SUPPRESSION_RULE_IGNORED,
            SuppressionRule.DO_NOT_CONTACT: offers_pb2.SUPPRESSION_RULE_DO_NOT_CONTACT,
            SuppressionRule.CHANNEL_OPTED_OUT: offers_pb2.SUPPRESSION_RULE_CHANNEL_OPTED_OUT,
            SuppressionRule.NO_CONSENT: offers_pb2.SUPPRESSION_RULE_NO_CONSENT,
        }
    )
)
_WITHDRAW_REASONS: Mapping[Reason, offers_pb2.WithdrawReason.ValueType] = MappingProxyType(
    {
        Reason.RETIRED: offers_pb2.WITHDRAW_REASON_RETIRED,
        Reason.NOT_VALID_NOW: offers_pb2.WITHDRAW_REASON_EXPIRED,
        # The offer was changed and no longer goes out on the decision's channel, or no longer
        # goes out at all: as good as retired for that decision.
        Reason.CHANNEL: offers_pb2.WITHDRAW_REASON_RETIRED,
        Reason.NOT_PERSONALISED: offers_pb2.WITHDRAW_REASON_NOT_PERSONALISED,
        Reason.INELIGIBLE: offers_pb2.WITHDRAW_REASON_INELIGIBLE,
        Reason.NOT_APPLICABLE: offers_pb2.WITHDRAW_REASON_NOT_APPLICABLE,
        Reason.UNSUITABLE: offers_pb2.WITHDRAW_REASON_UNSUITABLE,
    }
)
_WITHDRAW_SUPPRESSIONS: Mapping[SuppressionRule, offers_pb2.WithdrawReason.ValueType] = (
    MappingProxyType(
        {
            SuppressionRule.DO_NOT_CONTACT: offers_pb2.WITHDRAW_REASON_DO_NOT_CONTACT,
            SuppressionRule.CHANNEL_OPTED_OUT: offers_pb2.WITHDRAW_REASON_CHANNEL_OPTED_OUT,
            SuppressionRule.NO_CONSENT: offers_pb2.WITHDRAW_REASON_CONSENT_WITHDRAWN,
        }
    )
)

DECISION_TRIGGERS: Mapping[DecisionTrigger, pb.DecisionTrigger.ValueType] = MappingProxyType(
    {
        DecisionTrigger.REQUEST: pb.DECISION_TRIGGER_REQUEST,
        DecisionTrigger.PROFILE_CHANGE: pb.DECISION_TRIGGER_PROFILE_CHANGE,
        DecisionTrigger.CATALOGUE_OR_PREFERENCE: pb.DECISION_TRIGGER_CATALOGUE_OR_PREFERENCE,
    }
)

_CHANNEL_NUMBERS = {name: number for number, name in CHANNELS.items()}
_CATEGORY_NUMBERS = {category: number for number, category in CATEGORIES.items()}
_FACT_KIND_NUMBERS = {kind: number for number, kind in FACT_KINDS.items()}
_RESPONSE_KIND_NUMBERS = {kind: number for number, kind in RESPONSE_KINDS.items()}


def channel_number(channel: str) -> offers_pb2.Channel.ValueType:
    return offers_pb2.Channel.ValueType(_CHANNEL_NUMBERS[channel])


def category_number(category: Category) -> offers_pb2.OfferCategory.ValueType:
    return offers_pb2.OfferCategory.ValueType(_CATEGORY_NUMBERS[category])


def fact_kind_number(kind: FactKind) -> offers_pb2.FactKind.ValueType:
    return offers_pb2.FactKind.ValueType(_FACT_KIND_NUMBERS[kind])


def response_kind_number(kind: ContactKind) -> pb.ResponseKind.ValueType:
    return pb.ResponseKind.ValueType(_RESPONSE_KIND_NUMBERS[kind])


def withdraw_reason(why: NotChosen) -> offers_pb2.WithdrawReason.ValueType:
    """The contract's reason for an outbound decision that `withdrawal_reason` says no longer
    holds. Of the contact rules only consent and do-not-contact withdraw a decision."""
    if why.reason is Reason.SUPPRESSED:
        if why.suppression is None or why.suppression not in _WITHDRAW_SUPPRESSIONS:
            raise ValueError(f"{why.suppression} does not withdraw a decision")
        return _WITHDRAW_SUPPRESSIONS[why.suppression]
    if why.reason not in _WITHDRAW_REASONS:
        raise ValueError(f"{why.reason} does not withdraw a decision")
    return _WITHDRAW_REASONS[why.reason]


def _enum(
    v: Violations,
    field: str,
    number: int,
    table: Mapping[int, T],
    descriptor: EnumDescriptor,
    *,
    required: bool = True,
) -> T | None:
    """The domain value of an enum number; None (and a violation naming `field`, unless the
    number is 0 and not required) when the table does not hold it."""
    if number in table:
        return table[number]
    known = ", ".join(descriptor.values_by_number[n].name for n in sorted(table) if n != 0)
    if number == 0:
        if required:
            v.add(field, f"is required: one of {known}")
    else:
        v.add(field, f"unknown {descriptor.name} value {number}; one of {known}")
    return None


def channel(v: Violations, field: str, number: int) -> str:
    """A required channel's domain name ("" with a violation when missing or unknown)."""
    return _enum(v, field, number, CHANNELS, offers_pb2.Channel.DESCRIPTOR) or ""


# --- times, paging --------------------------------------------------------------------------


def timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _time(v: Violations, field: str, stamp: Timestamp) -> dt.datetime | None:
    try:
        return stamp.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError, OSError):
        v.add(field, "is not a valid time (0001-01-01 to 9999-12-31 UTC)")
        return None


def page_size(v: Violations, field: str, requested: int, *, maximum: int) -> int:
    """The page size to list with. The contract refuses a size above the configured maximum
    (INVALID_ARGUMENT) where the runtime's helper would clamp it; 0 gives the default."""
    return paging.page_size(v, field, requested, maximum=maximum, refuse_above=True)


def _offer_id(v: Violations, field: str, value: str) -> str:
    if not value:
        v.add(field, "is required")
    elif not OFFER_ID_PATTERN.fullmatch(value):
        v.add(field, "3 to 64 of a-z, 0-9, '_' and '-'")
    else:
        return value
    return ""


# --- offers ---------------------------------------------------------------------------------


def offer_document(v: Violations, field: str, message: offers_pb2.Offer) -> dict[str, Any]:
    """The catalogue document of a requested offer, for `compile_offer` (which checks the rest).

    Enum numbers are checked here, against the contract. Fields the service sets (version,
    retired, update_time) are left out; so is anything proto3 leaves at its zero value where the
    document's default says the same ("levers", "personalised", the contact limits).
    """
    document: dict[str, Any] = {
        "offer_id": message.offer_id,
        "names": {"zh-CN": message.names.zh_cn, "en": message.names.en},
        "product_code": message.product_code,
        "placements": list(message.placements),
        "eligibility": list(message.eligibility),
        "applicability": list(message.applicability),
        "outbound": message.outbound,
        "context_boosts": dict(message.context_boosts),
    }
    # Unspecified is left out: compile_offer names it as missing.
    category = _enum(
        v,
        f"{field}.category",
        message.category,
        CATEGORIES,
        offers_pb2.OfferCategory.DESCRIPTOR,
        required=False,
    )
    if category is not None:
        document["category"] = category.value
    risk = _enum(
        v,
        f"{field}.product_risk",
        message.product_risk,
        PRODUCT_RISKS,
        source_pb.ProductRisk.DESCRIPTOR,
    )
    document["product_risk"] = risk or 0
    document["channels"] = [
        channel(v, f"{field}.channels[{index}]", number)
        for index, number in enumerate(message.channels)
    ]
    if message.HasField("valid_from_time"):
        document["valid_from"] = _time(v, f"{field}.valid_from_time", message.valid_from_time)
    if message.HasField("valid_until_time"):
        document["valid_until"] = _time(v, f"{field}.valid_until_time", message.valid_until_time)
    # Money stays a decimal string all the way to the domain's Decimal: never a float.
    if message.value_cny:
        document["value"] = message.value_cny
    if message.levers:
        document["levers"] = message.levers
    if message.HasField("contact_limits"):
        limits: dict[str, int] = {}
        if message.contact_limits.max_contacts:
            limits["max_contacts"] = message.contact_limits.max_contacts
        if message.contact_limits.window_days:
            limits["window_days"] = message.contact_limits.window_days
        if message.contact_limits.HasField("cool_down_days"):
            limits["cool_down_days"] = message.contact_limits.cool_down_days
        document["contact_limits"] = limits
    templates: dict[str, str] = {}
    first_of: dict[str, int] = {}
    for index, template in enumerate(message.templates):
        where = f"{field}.templates[{index}].channel"
        name = channel(v, where, template.channel)
        if not name:
            continue
        if name in first_of:
            v.add(where, f"repeats templates[{first_of[name]}].channel")
            continue
        first_of[name] = index
        templates[name] = template.template_id
    document["templates"] = templates
    kinds = [
        _enum(v, f"{field}.depends_on[{index}]", number, FACT_KINDS, offers_pb2.FactKind.DESCRIPTOR)
        for index, number in enumerate(message.depends_on)
    ]
    document["depends_on"] = [kind.value for kind in kinds if kind is not None]
    if message.HasField("personalised"):
        document["personalised"] = message.personalised
    return document


# Document fields whose name in the contract differs.
_PROTO_FIELDS = {
    "value": "value_cny",
    "valid_from": "valid_from_time",
    "valid_until": "valid_until_time",
    "names.zh-CN": "names.zh_cn",
}


def offer_field(field: str, document_field: str, message: offers_pb2.Offer) -> str:
    """The request field (`offer.value_cny`) of a document field (`value` or `offer.value`)
    of the offer `message` at `field`."""
    name = document_field.removeprefix(f"{field}.")
    if name in ("(document)", field):
        return field
    head, _, rest = name.partition(".")
    if head == "templates" and rest:
        # The document keys templates by channel; the request lists them.
        for index, template in enumerate(message.templates):
            if CHANNELS.get(template.channel) == rest:
                return f"{field}.templates[{index}]"
        return f"{field}.templates"
    return f"{field}.{_PROTO_FIELDS.get(name, name)}"


def offer_error(error: InvalidArgument, field: str, message: offers_pb2.Offer) -> InvalidArgument:
    """`error` with the offer's problems named by the request's fields. A `CatalogueError` is
    all about the offer; of another InvalidArgument only fields under `field` are."""
    renamed = [
        FieldViolation(offer_field(field, violation.field, message), violation.description)
        if isinstance(error, CatalogueError) or violation.field.startswith(f"{field}.")
        else violation
        for violation in error.violations
    ]
    return InvalidArgument(renamed)


def offer_message(offer: Offer, *, update_time: dt.datetime | None = None) -> offers_pb2.Offer:
    """An offer in the contract, from its canonical document form (decimals as their text)."""
    document = offer.to_document()
    limits = offers_pb2.ContactLimits(
        max_contacts=offer.contact_limits.max_contacts,
        window_days=offer.contact_limits.window_days,
    )
    if offer.contact_limits.cool_down_days is not None:
        limits.cool_down_days = offer.contact_limits.cool_down_days
    message = offers_pb2.Offer(
        offer_id=offer.offer_id,
        version=offer.version,
        names=names_message(offer),
        product_code=offer.product_code,
        category=category_number(offer.category),
        product_risk=source_pb.ProductRisk.ValueType(offer.product_risk),
        channels=[channel_number(name) for name in offer.channels],
        placements=list(offer.placements),
        eligibility=[clause.text for clause in offer.eligibility],
        applicability=[clause.text for clause in offer.applicability],
        value_cny=document["value"],
        levers=document["levers"],
        contact_limits=limits,
        outbound=offer.outbound,
        templates=[
            offers_pb2.ChannelTemplate(channel=channel_number(name), template_id=template)
            for name, template in document["templates"].items()
        ],
        depends_on=[fact_kind_number(FactKind(kind)) for kind in document["depends_on"]],
        personalised=offer.personalised,
        retired=offer.retired,
        context_boosts=document["context_boosts"],
    )
    if offer.valid_from is not None:
        message.valid_from_time.CopyFrom(timestamp(offer.valid_from))
    if offer.valid_until is not None:
        message.valid_until_time.CopyFrom(timestamp(offer.valid_until))
    if update_time is not None:
        message.update_time.CopyFrom(timestamp(update_time))
    return message


def names_message(offer: Offer) -> offers_pb2.OfferNames:
    return offers_pb2.OfferNames(zh_cn=offer.names.get("zh-CN", ""), en=offer.names.get("en", ""))


# --- decisions ------------------------------------------------------------------------------


def factors_message(factors: Factors) -> offers_pb2.PriorityFactors:
    # Scores, not amounts: doubles are right here (value_cny stays a decimal string).
    return offers_pb2.PriorityFactors(
        propensity=factors.propensity,
        context_weight=factors.context_weight,
        value=factors.value,
        levers=factors.levers,
        priority=factors.priority,
    )


def not_chosen_message(item: NotChosen) -> offers_pb2.NotChosenOffer:
    message = offers_pb2.NotChosenOffer(
        offer_id=item.offer_id,
        offer_version=item.version,
        reason=NOT_CHOSEN_REASONS[item.reason],
        detail=item.explanation,
    )
    if item.clause_index is not None:
        message.clause.CopyFrom(
            offers_pb2.Clause(index=item.clause_index, expression=item.clause_text)
        )
    if item.suppression is not None:
        message.suppression_rule = SUPPRESSION_RULES[item.suppression]
    if item.factors is not None:
        message.factors.CopyFrom(factors_message(item.factors))
    return message


def decided_offer_message(decided: DecidedOffer) -> offers_pb2.OfferDecision:
    chosen = decided.chosen
    return offers_pb2.OfferDecision(
        offer_id=chosen.offer_id,
        rank=chosen.rank,
        decision_id=decided.decision_id,
        offer_version=chosen.version,
        names=names_message(decided.offer),
        template_id=chosen.template_id,
        factors=factors_message(chosen.factors),
        category=category_number(chosen.category),
        product_code=decided.offer.product_code,
    )


def decide_response(
    decided: Decided, *, explain: bool, with_factors: bool = True
) -> pb.DecideOffersResponse:
    """The ranked offers; the candidates not chosen only when the caller asked (the decision
    log keeps them either way); the priority factors only `with_factors` (not to a customer's
    app: propensity and value are what the bank reckons of him)."""
    decision = decided.decision
    decisions = [decided_offer_message(offer) for offer in decided.offers]
    if not with_factors:
        for message in decisions:
            message.ClearField("factors")
    return pb.DecideOffersResponse(
        decisions=decisions,
        personalised=decision.personalised,
        not_chosen=[not_chosen_message(item) for item in decision.not_chosen] if explain else [],
        arbitration_id=decided.arbitration_id,
        model_version=decision.model_version,
        catalogue_version=decision.catalogue_version,
        decide_time=timestamp(decision.decided_at),
    )


def stored_offer_message(stored: StoredOffer) -> offers_pb2.Offer:
    return offer_message(stored.offer, update_time=stored.saved_at)


def offer_page_response(page: OfferPage) -> pb.ListOffersResponse:
    return pb.ListOffersResponse(
        offers=[stored_offer_message(stored) for stored in page.offers],
        next_page_token=page.next_page_token,
        catalogue_version=page.catalogue_version,
    )


def withdrawn_message(withdrawn: WithdrawnDecision) -> pb.WithdrawnDecision:
    return pb.WithdrawnDecision(
        decision_id=withdrawn.decision_id,
        offer_id=withdrawn.offer_id,
        reason=withdraw_reason(withdrawn.why),
        detail=withdrawn.why.explanation,
    )


def log_entry_message(entry: DecisionLogEntry) -> pb.DecisionLogEntry:
    return pb.DecisionLogEntry(
        arbitration_id=entry.arbitration_id,
        party_id=entry.party_id,
        trigger=DECISION_TRIGGERS[entry.trigger],
        channel=channel_number(entry.channel),
        placement=entry.placement,
        decide_time=timestamp(entry.decided_at),
        profile_version=entry.profile_version,
        inputs_digest=entry.inputs_digest,
        model_version=entry.model_version,
        catalogue_version=entry.catalogue_version,
        personalised=entry.personalised,
        decisions=[decided_offer_message(offer) for offer in entry.chosen],
        not_chosen=[not_chosen_message(item) for item in entry.not_chosen],
        withdrawn=[withdrawn_message(item) for item in entry.withdrawn],
        requested_by=entry.requested_by,
    )


def simulation_response(result: SimulationResult) -> pb.SimulateOfferResponse:
    return pb.SimulateOfferResponse(
        population_size=result.population_size,
        sample_size=result.sample_size,
        eligible_count=result.eligible,
        applicable_count=result.applicable,
        suitable_count=result.suitable,
        contactable_count=result.contactable,
        expected_contacts_per_day=result.expected_contacts_per_day,
        competing_offers=[
            pb.CompetingOffer(
                offer_id=offer.offer_id,
                offer_version=offer.version,
                names=names_message(offer),
                overlap_count=overlap,
            )
            for offer, overlap in result.competing
        ],
    )


def channel_numbers(channels: Iterable[str]) -> list[offers_pb2.Channel.ValueType]:
    """Channel names as enum values, in enum order."""
    return [offers_pb2.Channel.ValueType(n) for n in sorted(_CHANNEL_NUMBERS[c] for c in channels)]


def preferences_message(preferences: ContactPreferences) -> offers_pb2.ContactPreferences:
    message = offers_pb2.ContactPreferences(
        party_id=preferences.party_id,
        do_not_contact=preferences.do_not_contact,
        personalised_offers=preferences.personalised_offers,
        opted_out_channels=channel_numbers(preferences.opted_out_channels),
        version=preferences.version,
    )
    if preferences.updated_at is not None:
        message.update_time.CopyFrom(timestamp(preferences.updated_at))
    return message


# --- requests -------------------------------------------------------------------------------


def decide_request(
    request: pb.DecideOffersRequest, *, default_max_offers: int
) -> tuple[str, DecisionRequest]:
    """The party and the checked request of a DecideOffers call; InvalidArgument names every
    bad field."""
    v = Violations()
    party_id = v.uuid("party_id", request.party_id)
    name = channel(v, "channel", request.channel)
    checked: DecisionRequest | None = None
    try:
        checked = decision_request(
            channel=name,
            placement=request.placement,
            max_offers=request.max_offers or default_max_offers,
            explain=request.explain,
            context=dict(request.context),
        )
    except InvalidArgument as error:
        for violation in error.violations:
            if violation.field == "channel" and not name:
                continue  # named above, by the contract's enum
            v.add(violation.field, violation.description)
    v.raise_if_any()
    assert checked is not None  # raised otherwise
    return party_id, checked


# Versions are stored as INTEGER: a larger one asked for is refused before the query.
MAX_OFFER_VERSION = 2**31 - 1


def offer_key(request: pb.GetOfferRequest) -> tuple[str, int]:
    """GetOffer: the offer id and the version asked for (0: the latest)."""
    v = Violations()
    offer_id = _offer_id(v, "offer_id", request.offer_id)
    if request.version < 0:
        v.add("version", "must not be negative (0: the latest)")
    elif request.version > MAX_OFFER_VERSION:
        v.add("version", f"must be at most {MAX_OFFER_VERSION}")
    v.raise_if_any()
    return offer_id, request.version


def _expected_version(v: Violations, value: int) -> int:
    if value < 1:
        v.add("expected_version", "is required: the version the caller read (1 or more)")
    return value


def create_request(request: pb.CreateOfferRequest) -> dict[str, Any]:
    v = Violations()
    document = offer_document(v, "offer", request.offer)
    v.raise_if_any()
    return document


def update_request(request: pb.UpdateOfferRequest) -> tuple[dict[str, Any], int]:
    v = Violations()
    document = offer_document(v, "offer", request.offer)
    expected = _expected_version(v, request.expected_version)
    v.raise_if_any()
    return document, expected


def retire_request(request: pb.RetireOfferRequest) -> tuple[str, int, str]:
    v = Violations()
    offer_id = _offer_id(v, "offer_id", request.offer_id)
    expected = _expected_version(v, request.expected_version)
    reason = v.text("reason", request.reason, max_length=MAX_REASON_LENGTH)
    v.raise_if_any()
    return offer_id, expected, reason


def list_offers_request(request: pb.ListOffersRequest, *, max_page_size: int) -> int:
    """ListOffers: the page size (the token is the service's to read)."""
    v = Violations()
    size = page_size(v, "page_size", request.page_size, maximum=max_page_size)
    v.raise_if_any()
    return size


def simulate_request(
    request: pb.SimulateOfferRequest, *, max_sample_size: int
) -> tuple[dict[str, Any], int, str]:
    """SimulateOffer: the draft's document, the sample size (0: the service's default) and the
    segment ("" for all parties)."""
    v = Violations()
    document = offer_document(v, "offer", request.offer)
    if request.sample_size < 0:
        v.add("sample_size", "must not be negative (0: the default)")
    elif request.sample_size > max_sample_size:
        v.add("sample_size", f"must be at most {max_sample_size}, got {request.sample_size}")
    segment = v.token("segment", request.segment, required=False)
    v.raise_if_any()
    return document, request.sample_size, segment


def list_decisions_request(
    request: pb.ListDecisionsRequest, *, max_page_size: int
) -> tuple[str, int]:
    """ListDecisions: the party and the page size."""
    v = Violations()
    party_id = v.uuid("party_id", request.party_id)
    size = page_size(v, "page_size", request.page_size, maximum=max_page_size)
    v.raise_if_any()
    return party_id, size


def party_request(party_id: str) -> str:
    """A request naming only a party (GetContactPreferences)."""
    v = Violations()
    checked = v.uuid("party_id", party_id)
    v.raise_if_any()
    return checked


@dataclass(frozen=True)
class PreferencesChange:
    """SetContactPreferences: the party and the switches to change (None: unchanged)."""

    party_id: str
    do_not_contact: bool | None
    personalised_offers: bool | None
    opted_out_channels: frozenset[str] | None


def set_preferences_request(request: pb.SetContactPreferencesRequest) -> PreferencesChange:
    v = Violations()
    party_id = v.uuid("party_id", request.party_id)
    do_not_contact = request.do_not_contact if request.HasField("do_not_contact") else None
    personalised = request.personalised_offers if request.HasField("personalised_offers") else None
    opted_out: frozenset[str] | None = None
    if request.HasField("opted_out_channels"):
        names = set()
        for index, number in enumerate(request.opted_out_channels.channels):
            field = f"opted_out_channels.channels[{index}]"
            name = _enum(v, field, number, CHANNELS, offers_pb2.Channel.DESCRIPTOR, required=True)
            if name is not None and name not in OUTBOUND_CHANNELS:
                v.add(field, f"{offers_pb2.Channel.Name(number)} is not an outbound channel")
            elif name is not None:
                names.add(name)
        opted_out = frozenset(names)
    if do_not_contact is None and personalised is None and opted_out is None:
        v.add(
            "do_not_contact",
            "set do_not_contact, personalised_offers, opted_out_channels or several",
        )
    v.raise_if_any()
    return PreferencesChange(party_id, do_not_contact, personalised, opted_out)


def response_record(request: pb.RecordResponseRequest, now: dt.datetime) -> ResponseRecord:
    """RecordResponse: the response to record. An absent response_time is `now`; one in the
    future beyond clock skew is refused."""
    v = Violations()
    response_id = v.uuid("response_id", request.response_id)
    decision_id = v.uuid("decision_id", request.decision_id)
    offer_id = _offer_id(v, "offer_id", request.offer_id)
    party_id = v.uuid("party_id", request.party_id)
    kind = _enum(v, "kind", request.kind, RESPONSE_KINDS, pb.ResponseKind.DESCRIPTOR)
    where = channel(v, "channel", request.channel)
    at: dt.datetime | None = now
    if request.HasField("response_time"):
        at = _time(v, "response_time", request.response_time)
        if at is not None and at > now + CLOCK_SKEW:
            v.add("response_time", "is in the future")
    v.raise_if_any()
    if kind is None or at is None:
        raise AssertionError("a violation was raised above")
    return ResponseRecord(response_id, decision_id, offer_id, party_id, kind, where, at)
