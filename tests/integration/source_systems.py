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
