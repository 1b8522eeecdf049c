"""What the bank's source systems send the profile, and how a journey watches what it tells."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import nats
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import events_pb2
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike.source.v1 import source_event_pb2 as pb


def fact(system: str, record: str, event_id: str, sequence: int, **fact: Any) -> pb.SourceEvent:
    """A source event stamped now; `fact` is its one fact, e.g. balance_changed=…."""
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC))
    return pb.SourceEvent(
        source_record=party_pb2.SourceRecordKey(source_system=system, source_record_id=record),
        event_id=event_id,
        event_time=stamp,
        sequence=sequence,
        **fact,
    )


def day(value: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


# The FX story's customer: a USD savings account at core deposits, record D-1.
FX_SYSTEM, FX_RECORD, FX_ACCOUNT = "core_deposits", "D-1", "D-0001-USD"
# The consent text version the FX customer was shown (policy/consent_texts.yaml knows it).
FX_CONSENT_TEXT = "mkt-sms-2026-01"


def fx_customer(today: dt.date, consent_text: str = FX_CONSENT_TEXT) -> list[pb.SourceEvent]:
    """What core deposits knows of the FX customer before any USD arrives: consent to marketing
    SMS given at a branch a month ago, a valid C3 risk assessment, a USD savings account."""
    consent_time = Timestamp()
    consent_time.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    return [
        fact(
            FX_SYSTEM,
            FX_RECORD,
            "consent-sms-1",
            1,
            consent_given=pb.ConsentGiven(
                channel=pb.CONTACT_CHANNEL_SMS,
                purpose=pb.CONTACT_PURPOSE_MARKETING,
                evidence=pb.ConsentEvidence(
                    captured_where="branch 0101",
                    capture_time=consent_time,
                    text_version=consent_text,
                ),
            ),
        ),
        fact(
            FX_SYSTEM,
            FX_RECORD,
            "risk-1",
            1,
            risk_assessment_completed=pb.RiskAssessmentCompleted(
                customer_risk=pb.CUSTOMER_RISK_C3,
                assess_date=day(today - dt.timedelta(days=10)),
                expire_date=day(today + dt.timedelta(days=355)),
            ),
        ),
        fx_usd_account(),
    ]


def fx_customer_record() -> party_pb2.SourceRecord:
    """The FX customer's record as core deposits links it at identity."""
    return party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(source_system=FX_SYSTEM, source_record_id=FX_RECORD),
        full_name="刘建军",
        phone="13812345678",
    )


def fx_usd_account() -> pb.SourceEvent:
    """The FX customer's USD savings account opened at core deposits."""
    return fact(
        FX_SYSTEM,
        FX_RECORD,
        "open-1",
        1,
        account_opened=pb.AccountOpened(
            account_id=FX_ACCOUNT,
            product_line=pb.PRODUCT_LINE_SAVINGS,
            product_code="SAV-USD",
            currency="USD",
            branch_code="0101",
            open_date=day(dt.date(2024, 3, 1)),
        ),
    )


def usd_balance(event_id: str, sequence: int, change: int, after: int) -> pb.SourceEvent:
    """The FX customer's USD balance changed by `change` to `after` (minor units)."""
    return fact(
        FX_SYSTEM,
        FX_RECORD,
        event_id,
        sequence,
        balance_changed=pb.BalanceChanged(
            account_id=FX_ACCOUNT,
            currency="USD",
            change_minor_units=change,
            balance_minor_units=after,
        ),
    )


async def ingest(channel: grpc.aio.Channel, *events: pb.SourceEvent) -> None:
    """IngestSourceEvents: answers once JetStream has stored them all."""
    stub = profile_grpc.ProfileServiceStub(channel)
    await stub.IngestSourceEvents(profile_pb.IngestSourceEventsRequest(events=events), timeout=10)


@asynccontextmanager
async def profile_changes(nats_url: str) -> AsyncIterator[asyncio.Queue[events_pb2.ProfileChanged]]:
    """The ProfileChanged events published from now on, as a consumer (offers) sees them."""
    connection = await nats.connect(nats_url)
    received: asyncio.Queue[events_pb2.ProfileChanged] = asyncio.Queue()

    async def keep(message: Msg) -> None:
        received.put_nowait(events_pb2.ProfileChanged.FromString(message.data))

    try:
        await connection.jetstream().subscribe(
            "zhike.profile.v1.profile_changed",
            cb=keep,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        yield received
    finally:
        await connection.close()
