"""Source events as the banks' systems send them, for the profile's tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2
from nats.js import JetStreamContext
from nats.js.api import PubAck

from zhike.identity.v1 import party_pb2
from zhike.source.v1 import source_event_pb2 as pb
from zhike_runtime.events import headers as h

T0 = dt.datetime(2026, 11, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
SOURCE_EVENT = pb.SourceEvent.DESCRIPTOR.full_name


def timestamp(at: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def source_event(
    system: str,
    record: str,
    event_id: str,
    sequence: int,
    at: dt.datetime = T0,
    **fact: Any,
) -> pb.SourceEvent:
    """`fact` is one keyword: the oneof field and its message, e.g. balance_changed=…."""
    return pb.SourceEvent(
        source_record=party_pb2.SourceRecordKey(source_system=system, source_record_id=record),
        event_id=event_id,
        event_time=timestamp(at),
        sequence=sequence,
        **fact,
    )


def account_opened(
    account_id: str,
    currency: str = "CNY",
    line: int = pb.PRODUCT_LINE_CURRENT_ACCOUNT,
    product_code: str = "CUR-STD",
    branch_code: str = "0101",
    opened: dt.date = dt.date(2024, 3, 1),
) -> dict[str, Any]:
    return {
        "account_opened": pb.AccountOpened(
            account_id=account_id,
            product_line=line,  # type: ignore[arg-type]
            product_code=product_code,
            currency=currency,
            branch_code=branch_code,
            open_date=date(opened),
        )
    }


def account_closed(account_id: str, closed: dt.date = dt.date(2026, 11, 2)) -> dict[str, Any]:
    return {"account_closed": pb.AccountClosed(account_id=account_id, close_date=date(closed))}


def balance_changed(
    account_id: str, currency: str, balance: int, change: int = 0
) -> dict[str, Any]:
    return {
        "balance_changed": pb.BalanceChanged(
            account_id=account_id,
            currency=currency,
            change_minor_units=change,
            balance_minor_units=balance,
        )
    }


def salary_paid(account_id: str, amount: int = 1_500_000) -> dict[str, Any]:
    """A payroll credit (CNY 15,000.00 by default)."""
    return {
        "transaction_posted": pb.TransactionPosted(
            account_id=account_id,
            currency="CNY",
            amount_minor_units=amount,
            direction=pb.DIRECTION_CREDIT,
            channel=pb.TRANSACTION_CHANNEL_AUTOMATIC,
            salary=True,
        )
    }


def card_issued(
    account_id: str,
    tier: int = pb.CARD_TIER_GOLD,
    card_type: int = pb.CARD_TYPE_CREDIT,
    product_code: str = "CC-GOLD",
) -> dict[str, Any]:
    return {
        "card_issued": pb.CardIssued(
            account_id=account_id,
            card_type=card_type,  # type: ignore[arg-type]
            card_tier=tier,  # type: ignore[arg-type]
            product_code=product_code,
            currency="CNY",
            branch_code="0202",
            issue_date=date(dt.date(2025, 5, 1)),
        )
    }


def loan_drawn(account_id: str, outstanding: int, currency: str = "CNY") -> dict[str, Any]:
    return {
        "loan_drawn": pb.LoanDrawn(
            account_id=account_id,
            loan_type=pb.LOAN_TYPE_MORTGAGE,
            product_code="MTG-30Y",
            currency=currency,
            amount_minor_units=outstanding,
            outstanding_minor_units=outstanding,
            branch_code="0303",
            draw_date=date(dt.date(2023, 8, 1)),
        )
    }


def interaction(
    kind: int = pb.INTERACTION_KIND_BRANCH_VISIT, branch: str = "0101"
) -> dict[str, Any]:
    return {
        "interaction_recorded": pb.InteractionRecorded(
            kind=kind,  # type: ignore[arg-type]
            branch_code=branch,
        )
    }


def consent(
    given: bool, channel: int = pb.CONTACT_CHANNEL_SMS, at: dt.datetime = T0
) -> dict[str, Any]:
    evidence = pb.ConsentEvidence(
        captured_where="mobile app 5.2", capture_time=timestamp(at), text_version="v3"
    )
    if given:
        return {
            "consent_given": pb.ConsentGiven(
                channel=channel,  # type: ignore[arg-type]
                purpose=pb.CONTACT_PURPOSE_MARKETING,
                evidence=evidence,
            )
        }
    return {
        "consent_withdrawn": pb.ConsentWithdrawn(
            channel=channel,  # type: ignore[arg-type]
            purpose=pb.CONTACT_PURPOSE_MARKETING,
            evidence=evidence,
        )
    }


def risk_assessed(level: int, assessed: dt.date, expires: dt.date) -> dict[str, Any]:
    return {
        "risk_assessment_completed": pb.RiskAssessmentCompleted(
            customer_risk=level,  # type: ignore[arg-type]
            assess_date=date(assessed),
            expire_date=date(expires),
        )
    }


def adapter_headers(event: pb.SourceEvent) -> dict[str, str]:
    """What a streaming adapter sends with each event (proto/zhike/source/v1)."""
    key = f"{event.source_record.source_system}:{event.event_id}"
    return {h.MSG_ID: key, h.EVENT_TYPE: SOURCE_EVENT, h.CONTENT_TYPE: h.PROTOBUF}


async def publish(js: JetStreamContext, event: pb.SourceEvent) -> PubAck:
    """Publishes as a streaming adapter does: to zhike.source.v1.<source_system>."""
    return await js.publish(
        f"zhike.source.v1.{event.source_record.source_system}",
        event.SerializeToString(),
        headers=adapter_headers(event),
    )
