"""Translation between the contract (zhike.profile.v1) and the domain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2, timeofday_pb2

from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import events_pb2, profile_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.domain.assessment import Assessment
from zhike_profile.domain.assessment.changes import (
    AgeChanged,
    RiskLevelChanged,
    RiskLevelExpired,
    SegmentEntered,
    SegmentLeft,
    TierChanged,
    ValueBandChanged,
)
from zhike_profile.domain.assessment.risk import RiskStatus
from zhike_profile.domain.facts import (
    CardTier,
    Consent,
    ConsentEvidence,
    CustomerRisk,
    Holding,
    PartyFacts,
    Preferences,
    ProductRisk,
    SourceKey,
)
from zhike_profile.domain.model import Profile, ProfileRow, ProfileView
from zhike_profile.domain.ports import StoredInteraction
from zhike_profile.domain.snapshot import (
    BalanceChanged,
    BalanceSide,
    ChangeCause,
    ConsentChanged,
    HoldingClosed,
    HoldingKey,
    HoldingLine,
    HoldingOpened,
    ProfileChanged,
    ProfileFact,
)
from zhike_profile.transport.notifications_codec import MESSAGE_CHANNEL_NUMBERS
from zhike_profile.transport.source_codec import (
    CONTACT_CHANNELS,
    CONTACT_PURPOSES,
    PRODUCT_LINE_NUMBERS,
)
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.masking import mask_account_id

SUBJECT_PREFIX = "zhike.profile.v1"
PROFILE_CHANGED_SUBJECT = f"{SUBJECT_PREFIX}.profile_changed"

_CHANNEL_NUMBERS = {channel: number for number, channel in CONTACT_CHANNELS.items()}
_PURPOSE_NUMBERS = {purpose: number for number, purpose in CONTACT_PURPOSES.items()}
_INTERACTION_NUMBERS = {
    "branch_visit": source_pb.INTERACTION_KIND_BRANCH_VISIT,
    "call_centre_call": source_pb.INTERACTION_KIND_CALL_CENTRE_CALL,
    "app_login": source_pb.INTERACTION_KIND_APP_LOGIN,
    "atm_use": source_pb.INTERACTION_KIND_ATM_USE,
    "message_sent": source_pb.INTERACTION_KIND_MESSAGE_SENT,
}
_RISK_STATUSES = {
    RiskStatus.NOT_ASSESSED: profile_pb2.RISK_STATUS_NONE,
    RiskStatus.VALID: profile_pb2.RISK_STATUS_VALID,
    RiskStatus.EXPIRED: profile_pb2.RISK_STATUS_EXPIRED,
    # Assessed after the day asked about: nothing holds on that day.
    RiskStatus.NOT_YET_VALID: profile_pb2.RISK_STATUS_NONE,
}
_CAUSES = {
    ChangeCause.SOURCE_EVENT: events_pb2.CHANGE_CAUSE_SOURCE_EVENT,
    ChangeCause.IDENTITY: events_pb2.CHANGE_CAUSE_IDENTITY,
    ChangeCause.TIME: events_pb2.CHANGE_CAUSE_TIME,
    ChangeCause.NOTIFICATIONS: events_pb2.CHANGE_CAUSE_NOTIFICATIONS,
}
_SIDES = {
    BalanceSide.ASSETS: events_pb2.BALANCE_SIDE_ASSETS,
    BalanceSide.LIABILITIES: events_pb2.BALANCE_SIDE_LIABILITIES,
}

# The Profile fields that need the party's facts (the others come from its links alone).
FACT_FIELDS = frozenset(
    {
        "holdings",
        "balances",
        "totals",
        "tier",
        "value",
        "segments",
        "consents",
        "preferences",
        "risk",
    }
)


def timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def date(value: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def time_of_day(value: dt.time) -> timeofday_pb2.TimeOfDay:
    return timeofday_pb2.TimeOfDay(hours=value.hour, minutes=value.minute, seconds=value.second)


def source_key(key: SourceKey) -> party_pb2.SourceRecordKey:
    return party_pb2.SourceRecordKey(
        source_system=key.source_system, source_record_id=key.source_record_id
    )


def domain_key(message: party_pb2.SourceRecordKey) -> SourceKey:
    return SourceKey(message.source_system, message.source_record_id)


def money(currency: str, minor_units: int) -> profile_pb2.Money:
    return profile_pb2.Money(currency_code=currency, minor_units=minor_units)


def _account(value: str, unmasked: bool) -> str:
    return value if unmasked else mask_account_id(value)


# The domain's enums carry the contract's numbers (CardTier.GOLD is CARD_TIER_GOLD, 2).
def _card_tier(tier: CardTier | None) -> source_pb.CardTier.ValueType:
    return source_pb.CardTier.ValueType(int(tier) if tier is not None else 0)


def _product_risk(risk: ProductRisk | None) -> source_pb.ProductRisk.ValueType:
    return source_pb.ProductRisk.ValueType(int(risk) if risk is not None else 0)


def _customer_risk(level: CustomerRisk | None) -> source_pb.CustomerRisk.ValueType:
    return source_pb.CustomerRisk.ValueType(int(level) if level is not None else 0)


def holding_message(holding: Holding, *, unmasked: bool) -> profile_pb2.Holding:
    message = profile_pb2.Holding(
        source_record=source_key(holding.source),
        account_id=_account(holding.account_id, unmasked),
        product_line=PRODUCT_LINE_NUMBERS[holding.product_line],
        product_code=holding.product_code,
        balance=money(holding.balance.currency, holding.balance.minor_units),
        card_tier=_card_tier(holding.card_tier),
        product_risk=_product_risk(holding.risk),
        overdue_days=holding.overdue_days,
        branch_code=holding.branch_code,
        liability=holding.is_liability,
    )
    if holding.opened_on != dt.date.min:
        message.open_date.CopyFrom(date(holding.opened_on))
    if holding.closed_on is not None:
        message.close_date.CopyFrom(date(holding.closed_on))
    return message


def _balances(facts: PartyFacts) -> list[profile_pb2.CurrencyBalance]:
    sums: dict[str, list[int]] = {}
    for holding in facts.holdings:
        if not holding.is_open:
            continue
        minor = holding.balance.minor_units
        pair = sums.setdefault(holding.balance.currency, [0, 0])
        if minor and holding.is_liability == (minor > 0):
            pair[1] += abs(minor)
        else:
            pair[0] += abs(minor)
    return [
        profile_pb2.CurrencyBalance(
            currency_code=currency, assets_minor_units=pair[0], liabilities_minor_units=pair[1]
        )
        for currency, pair in sorted(sums.items())
    ]


def _evidence(evidence: ConsentEvidence) -> profile_pb2.ConsentEvidence:
    return profile_pb2.ConsentEvidence(
        captured_where=evidence.where,
        capture_time=timestamp(evidence.captured_at),
        text_version=evidence.text_version,
    )


def _consent(consent: Consent) -> profile_pb2.Consent:
    return profile_pb2.Consent(
        channel=_CHANNEL_NUMBERS[consent.channel],
        purpose=_PURPOSE_NUMBERS[consent.purpose],
        given=consent.given,
        evidence=_evidence(consent.evidence),
    )


def _preferences(preferences: Preferences) -> profile_pb2.Preferences:
    message = profile_pb2.Preferences(
        language=preferences.language, time_zone=preferences.time_zone
    )
    if preferences.quiet_hours is not None:
        message.quiet_hours_start.CopyFrom(time_of_day(preferences.quiet_hours.start))
        message.quiet_hours_end.CopyFrom(time_of_day(preferences.quiet_hours.end))
    if preferences.preferred_channel is not None:
        message.preferred_channel = _CHANNEL_NUMBERS[preferences.preferred_channel]
    return message


def _assessed(message: profile_pb2.Profile, assessment: Assessment) -> None:
    totals = assessment.totals
    message.totals.CopyFrom(
        profile_pb2.Totals(
            assets=money(totals.assets.currency, totals.assets.minor_units),
            liabilities=money(totals.liabilities.currency, totals.liabilities.minor_units),
            rates_used=[
                profile_pb2.FxRate(
                    currency_code=rate.currency,
                    cny_per_unit=f"{rate.cny_per_unit:f}",
                    valid_from=date(rate.valid_from),
                )
                for rate in totals.rates_used
            ],
            unpriced_currencies=list(totals.unpriced_currencies),
        )
    )
    tier = assessment.tier
    message.tier.CopyFrom(
        profile_pb2.Tier(
            name=tier.name,
            label=tier.label,
            reason=tier.reason,
            reasons=list(tier.reasons),
            entitlements=[
                profile_pb2.Entitlement(code=e.code, description=e.description)
                for e in assessment.entitlements
            ],
        )
    )
    value = assessment.value
    rfm = profile_pb2.Rfm(
        frequency=value.rfm.frequency,
        monetary=money("CNY", value.rfm.monetary_cny_minor),
        recency_score=value.rfm.recency_score,
        frequency_score=value.rfm.frequency_score,
        monetary_score=value.rfm.monetary_score,
    )
    if value.rfm.recency_days is not None:
        rfm.recency_days = value.rfm.recency_days
    message.value.CopyFrom(
        profile_pb2.CustomerValue(
            annual_revenue=money("CNY", value.annual_revenue_cny_minor),
            band=value.band,
            band_label=value.band_label,
            contributions=[
                profile_pb2.ValueContribution(
                    product_line=PRODUCT_LINE_NUMBERS[c.product_line],
                    annual_revenue=money("CNY", c.annual_revenue_cny_minor),
                    explanation=c.explanation,
                )
                for c in value.contributions
            ],
            drivers=list(value.drivers),
            rfm=rfm,
        )
    )
    message.segments.extend(
        profile_pb2.Segment(name=s.name, description=s.description) for s in assessment.segments
    )
    risk = assessment.risk
    risk_message = profile_pb2.RiskAssessment(
        status=_RISK_STATUSES[risk.status], customer_risk=_customer_risk(risk.level)
    )
    if risk.assessed_on is not None:
        risk_message.assess_date.CopyFrom(date(risk.assessed_on))
    if risk.expires_on is not None:
        risk_message.expire_date.CopyFrom(date(risk.expires_on))
    message.risk.CopyFrom(risk_message)


def profile_message(view: ProfileView, *, unmasked: bool) -> profile_pb2.Profile:
    """The whole profile (GetProfile applies its read mask to it); account ids masked unless
    the caller may read them."""
    profile: Profile = view.profile
    message = profile_pb2.Profile(
        party_id=profile.party_id,
        source_records=[
            profile_pb2.LinkedSourceRecord(
                source_system=r.source_system,
                source_record_id=r.source_record_id,
                link_time=timestamp(r.linked_at),
            )
            for r in profile.source_records
        ],
        create_time=timestamp(profile.created_at),
        update_time=timestamp(profile.updated_at),
        display_name=profile.display_name,
        profile_version=profile.version,
    )
    facts = view.facts
    if facts is not None:
        message.holdings.extend(holding_message(h, unmasked=unmasked) for h in facts.holdings)
        message.balances.extend(_balances(facts))
        message.consents.extend(_consent(c) for c in facts.consents)
        message.preferences.CopyFrom(_preferences(facts.preferences))
    if view.assessment is not None:
        _assessed(message, view.assessment)
    return message


def interaction_message(stored: StoredInteraction) -> profile_pb2.Interaction:
    interaction = stored.interaction
    message = profile_pb2.Interaction(
        kind=_INTERACTION_NUMBERS.get(
            interaction.kind.value, source_pb.INTERACTION_KIND_UNSPECIFIED
        ),
        interaction_time=timestamp(interaction.at),
        branch_code=stored.branch_code,
        detail=stored.detail,
    )
    sent = stored.message
    if sent is None:
        message.source_record.CopyFrom(source_key(interaction.source))
    else:
        # The party's own (facts.notifications_record): no source record to name.
        message.message.CopyFrom(
            profile_pb2.SentMessage(
                notification_id=sent.notification_id,
                channel=MESSAGE_CHANNEL_NUMBERS[sent.channel],
                template_id=sent.template_id,
                offer_id=sent.offer_id,
                decision_id=sent.decision_id,
            )
        )
    return message


def summary_message(row: ProfileRow) -> profile_pb2.ProfileSummary:
    return profile_pb2.ProfileSummary(
        party_id=row.party_id,
        display_name=row.display_name,
        tier=row.tier,
        value_band=row.value_band,
        segments=list(row.segments),
        total_assets=money("CNY", row.total_assets_cny_minor),
    )


# --- ProfileChanged -------------------------------------------------------------------------


def _holding_opened(key: HoldingKey, line: HoldingLine) -> events_pb2.HoldingOpened:
    return events_pb2.HoldingOpened(
        source_record=source_key(key.source),
        account_id=key.account_id,
        product_line=PRODUCT_LINE_NUMBERS[line.product_line],
        product_code=line.product_code,
        currency_code=key.currency,
    )


def _fact(fact: ProfileFact) -> events_pb2.ProfileFact:
    match fact:
        case HoldingOpened():
            return events_pb2.ProfileFact(holding_opened=_holding_opened(fact.key, fact.line))
        case HoldingClosed():
            # The same fields as HoldingOpened, by design.
            closed = events_pb2.HoldingClosed.FromString(
                _holding_opened(fact.key, fact.line).SerializeToString()
            )
            return events_pb2.ProfileFact(holding_closed=closed)
        case BalanceChanged():
            return events_pb2.ProfileFact(
                balance_changed=events_pb2.BalanceChanged(
                    currency_code=fact.currency,
                    side=_SIDES[fact.side],
                    before_minor_units=fact.before_minor,
                    after_minor_units=fact.after_minor,
                )
            )
        case ConsentChanged():
            consent = events_pb2.ConsentChanged(
                channel=_CHANNEL_NUMBERS[fact.channel],
                purpose=_PURPOSE_NUMBERS[fact.purpose],
                given=fact.given,
            )
            if fact.evidence is not None:
                consent.evidence.CopyFrom(_evidence(fact.evidence))
            return events_pb2.ProfileFact(consent_changed=consent)
        case TierChanged():
            return events_pb2.ProfileFact(
                tier_changed=events_pb2.TierChanged(
                    before=fact.before, after=fact.after, reason=fact.reason
                )
            )
        case ValueBandChanged():
            return events_pb2.ProfileFact(
                value_band_changed=events_pb2.ValueBandChanged(before=fact.before, after=fact.after)
            )
        case SegmentEntered():
            return events_pb2.ProfileFact(
                segment_entered=events_pb2.SegmentEntered(segment=fact.segment)
            )
        case SegmentLeft():
            return events_pb2.ProfileFact(segment_left=events_pb2.SegmentLeft(segment=fact.segment))
        case RiskLevelChanged():
            changed = events_pb2.RiskLevelChanged(
                before=_customer_risk(fact.before), after=_customer_risk(fact.after)
            )
            if fact.expires_on is not None:
                changed.expire_date.CopyFrom(date(fact.expires_on))
            return events_pb2.ProfileFact(risk_level_changed=changed)
        case RiskLevelExpired():
            return events_pb2.ProfileFact(
                risk_assessment_expired=events_pb2.RiskAssessmentExpired(
                    customer_risk=_customer_risk(fact.level), expire_date=date(fact.expired_on)
                )
            )
        case AgeChanged():
            # The age in whole years only: the birth date it comes from is never published.
            age = events_pb2.AgeChanged()
            if fact.before is not None:
                age.before_years = fact.before
            if fact.after is not None:
                age.after_years = fact.after
            return events_pb2.ProfileFact(age_changed=age)


def profile_changed_message(event: ProfileChanged) -> events_pb2.ProfileChanged:
    return events_pb2.ProfileChanged(
        party_id=event.party_id,
        profile_version=event.version,
        change_time=timestamp(event.at),
        cause=_CAUSES[event.cause],
        facts=[_fact(fact) for fact in event.facts],
        merged_into_party_id=event.merged_into,
        forwarding_ended=event.forwarding_ended,
    )


def outgoing_event(event: ProfileChanged) -> OutgoingEvent:
    return OutgoingEvent(PROFILE_CHANGED_SUBJECT, profile_changed_message(event))


Encode = Callable[[ProfileChanged], OutgoingEvent]
