"""ProfileChanged messages as the profile publishes them, for the offers' tests."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import events_pb2 as pb
from zhike.source.v1 import source_event_pb2 as source_pb

# Tuesday 1 December 2026, 10:00 UTC (as the domain tests' NOW).
T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
# Valid on any day the tests run: the transport tests' services read the real clock, and an
# assessment expired by then makes every investment offer unsuitable.
RISK_VALID_UNTIL = dt.date(2099, 12, 31)


def timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def date(value: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def changed(
    party_id: str,
    version: int,
    *facts: pb.ProfileFact,
    at: dt.datetime = T0,
    merged_into: str = "",
    forwarding_ended: bool = False,
) -> pb.ProfileChanged:
    return pb.ProfileChanged(
        party_id=party_id,
        profile_version=version,
        change_time=timestamp(at),
        cause=pb.CHANGE_CAUSE_SOURCE_EVENT,
        facts=list(facts),
        merged_into_party_id=merged_into,
        forwarding_ended=forwarding_ended,
    )


def balance(currency: str, after: int, *, liabilities: bool = False) -> pb.ProfileFact:
    side = pb.BALANCE_SIDE_LIABILITIES if liabilities else pb.BALANCE_SIDE_ASSETS
    return pb.ProfileFact(
        balance_changed=pb.BalanceChanged(
            currency_code=currency, side=side, after_minor_units=after
        )
    )


def usd(major: int) -> pb.ProfileFact:
    return balance("USD", major * 100)


def consent(
    channel: int, given: bool, purpose: int = source_pb.CONTACT_PURPOSE_MARKETING
) -> pb.ProfileFact:
    return pb.ProfileFact(
        consent_changed=pb.ConsentChanged(channel=channel, purpose=purpose, given=given)  # type: ignore[arg-type]
    )


def sms_marketing(given: bool = True) -> pb.ProfileFact:
    return consent(source_pb.CONTACT_CHANNEL_SMS, given)


def risk(level: int, expires: dt.date | None = RISK_VALID_UNTIL) -> pb.ProfileFact:
    change = pb.RiskLevelChanged(after=level)  # type: ignore[arg-type]
    if expires is not None:
        change.expire_date.CopyFrom(date(expires))
    return pb.ProfileFact(risk_level_changed=change)


def risk_expired(level: int, expired_on: dt.date) -> pb.ProfileFact:
    return pb.ProfileFact(
        risk_assessment_expired=pb.RiskAssessmentExpired(
            customer_risk=level,  # type: ignore[arg-type]
            expire_date=date(expired_on),
        )
    )


def holding(
    account_id: str,
    product_code: str,
    *,
    line: int = source_pb.PRODUCT_LINE_INVESTMENT,
    currency: str = "USD",
    opened: bool = True,
    record: str = "R1",
) -> pb.ProfileFact:
    fields = {
        "source_record": party_pb2.SourceRecordKey(source_system="wealth", source_record_id=record),
        "account_id": account_id,
        "product_line": line,
        "product_code": product_code,
        "currency_code": currency,
    }
    if opened:
        return pb.ProfileFact(holding_opened=pb.HoldingOpened(**fields))  # type: ignore[arg-type]
    return pb.ProfileFact(holding_closed=pb.HoldingClosed(**fields))  # type: ignore[arg-type]


def segment(name: str, entered: bool = True) -> pb.ProfileFact:
    if entered:
        return pb.ProfileFact(segment_entered=pb.SegmentEntered(segment=name))
    return pb.ProfileFact(segment_left=pb.SegmentLeft(segment=name))


def tier(after: str) -> pb.ProfileFact:
    return pb.ProfileFact(tier_changed=pb.TierChanged(after=after))


def value_band(after: str) -> pb.ProfileFact:
    return pb.ProfileFact(value_band_changed=pb.ValueBandChanged(after=after))


def age(after: int | None, before: int | None = None) -> pb.ProfileFact:
    """The customer's age in whole years; `after` None: not known any more."""
    change = pb.AgeChanged()
    if before is not None:
        change.before_years = before
    if after is not None:
        change.after_years = after
    return pb.ProfileFact(age_changed=change)
