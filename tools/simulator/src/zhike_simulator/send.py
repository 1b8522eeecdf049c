"""Sending a simulation through the platform's real doors, as the bank's source systems would:
each record to identity's LinkSourceRecord, then the events to profile's IngestSourceEvents in
batches, at most `rate` events a second.

Records first: the profile holds an event whose record is not linked yet and applies it when
the link arrives, so the order is not needed for correctness, but a newcomer watching profiles
fill sees whole customers sooner.

Identity may refuse a field of a messy record (an ID number whose check character is wrong):
the record is linked again without the fields it names, as an adapter would, and the refusal is
reported. A party named in an early answer may be merged into another by a later record (the
answers say which parties a link merged), so each record's party is followed to the survivor.

Retries: a batch the service could not take (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED)
is sent again, which is safe because ingestion is idempotent per source system and event id;
any other error stops the run (a refused event is a bug in the simulator, named by its field).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc as identity_grpc
from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.tls import open_channel
from zhike_simulator.simulation import SimulatedRecord

R = TypeVar("R")

MAX_BATCH = 500  # IngestSourceEvents takes at most this many events per call
LINK_CONCURRENCY = 8
RETRIED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
_STATUS_DETAILS = "grpc-status-details-bin"
# The SourceRecord fields a record can be linked without (all but its key).
DROPPABLE: tuple[
    Literal[
        "full_name", "id_type", "id_number", "phone", "email", "birth_date", "gender", "address"
    ],
    ...,
] = ("full_name", "id_type", "id_number", "phone", "email", "birth_date", "gender", "address")

Progress = Callable[[str, int], None]
"""Called with a stage ("records" or "events") and how many more are done."""


class SendFailed(Exception):
    """A service refused or could not take what was sent (the message names the call)."""


@dataclass
class Sent:
    """What the platform was told, and what it answered."""

    parties: dict[tuple[str, str], str] = field(default_factory=dict)  # record key → party
    refused_fields: list[tuple[tuple[str, str], str]] = field(default_factory=list)
    unlinked: list[tuple[str, str]] = field(default_factory=list)
    events: int = 0
    duplicates: int = 0
    seconds: float = 0.0


def batch_size_for(rate: float, largest: int) -> int:
    """Batches of about a fifth of a second's events (so a slow rate still moves smoothly),
    never more than `largest` nor the service's maximum."""
    if rate <= 0:
        return min(largest, MAX_BATCH)
    return max(1, min(largest, MAX_BATCH, round(rate / 5)))


def _violations(error: grpc.aio.AioRpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The field violations of a google.rpc.BadRequest in the error's details."""
    found: list[error_details_pb2.BadRequest.FieldViolation] = []
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS:
            for detail in status_pb2.Status.FromString(value).details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    found += bad_request.field_violations
    return found


def _failed(call: str, error: grpc.aio.AioRpcError) -> SendFailed:
    named = "; ".join(f"{v.field}: {v.description}" for v in _violations(error)[:3])
    return SendFailed(f"{call}: {error.code().name}: {named or error.details()}")


async def _retrying(call: Callable[[], Awaitable[R]]) -> R:
    """The call's answer, after retrying what a busy or restarting service answers."""
    for pause in BACKOFF_SECONDS:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRIED:
                raise
            await asyncio.sleep(pause)
    return await call()


async def send(
    records: Sequence[SimulatedRecord],
    events: Sequence[source_pb.SourceEvent],
    *,
    identity_target: str,
    profile_target: str,
    token: str,
    credentials: grpc.ChannelCredentials | None = None,
    rate: float = 0.0,
    batch_size: int = 100,
    progress: Progress | None = None,
    connect_timeout: float = 5.0,
) -> Sent:
    """Links every record, then sends every event: `rate` events a second at most (0: as fast
    as the service takes them). Raises SendFailed when a service refuses or cannot be reached."""
    report = progress or (lambda _stage, _count: None)
    sent = Sent()
    started = time.monotonic()
    interceptors = [BearerToken(token)]
    async with (
        open_channel(identity_target, credentials, interceptors=interceptors) as identity,
        open_channel(profile_target, credentials, interceptors=interceptors) as profile,
    ):
        # Both first: a wrong address is one clear line now, not retries after linking.
        await _reachable(identity, identity_target, connect_timeout)
        await _reachable(profile, profile_target, connect_timeout)
        await _link_all(identity_grpc.IdentityServiceStub(identity), records, sent, report)
        stub = profile_grpc.ProfileServiceStub(profile)
        await _ingest_all(stub, events, sent, report, rate, batch_size_for(rate, batch_size))
    sent.seconds = time.monotonic() - started
    return sent


async def _reachable(channel: grpc.aio.Channel, target: str, timeout: float) -> None:
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout)
    except TimeoutError as error:
        raise SendFailed(f"{target}: UNAVAILABLE: not reachable within {timeout:g} s") from error


# --- records ----------------------------------------------------------------------------------


async def _link_all(
    stub: identity_grpc.IdentityServiceStub,
    records: Sequence[SimulatedRecord],
    sent: Sent,
    report: Progress,
) -> None:
    answered: dict[tuple[str, str], str] = {}
    merged_into: dict[str, str] = {}  # a party merged away → the party it went into
    pending: Iterator[SimulatedRecord] = iter(records)

    async def worker() -> None:
        for simulated in pending:
            answer = await _link(stub, simulated, sent)
            if answer is not None:
                answered[simulated.key] = answer.party_id
                for gone in answer.merged_party_ids:
                    merged_into[gone] = answer.party_id
            report("records", 1)

    await asyncio.gather(*(worker() for _ in range(LINK_CONCURRENCY)))

    def survivor(party_id: str) -> str:
        seen: set[str] = set()
        while party_id in merged_into and party_id not in seen:
            seen.add(party_id)
            party_id = merged_into[party_id]
        return party_id

    sent.parties = {key: survivor(party) for key, party in answered.items()}


async def _link(
    stub: identity_grpc.IdentityServiceStub, simulated: SimulatedRecord, sent: Sent
) -> identity_pb.LinkSourceRecordResponse | None:
    """The service's answer; None when it refused the record even with only its key and name."""
    record = party_pb2.SourceRecord()
    record.CopyFrom(simulated.record)
    while True:
        request = identity_pb.LinkSourceRecordRequest(source_record=record)
        try:
            answer: identity_pb.LinkSourceRecordResponse = await _retrying(
                partial(stub.LinkSourceRecord, request, timeout=30)
            )
            return answer
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.INVALID_ARGUMENT:
                raise _failed(f"LinkSourceRecord {'/'.join(simulated.key)}", error) from error
            # Leave out what the service refused (source_record.id_number → id_number), as an
            # adapter would, and link the rest; each round drops at least one field.
            named = {v.field.rsplit(".", 1)[-1] for v in _violations(error)}
            if named & {"id_type", "id_number"}:
                named |= {"id_type", "id_number"}  # a document's type and number go together
            present = {f.name for f, _ in record.ListFields()}
            dropped = [name for name in DROPPABLE if name in named and name in present]
            if not dropped:
                sent.unlinked.append(simulated.key)
                return None
            for name in dropped:
                record.ClearField(name)
            sent.refused_fields += [(simulated.key, name) for name in dropped if name != "id_type"]


# --- events -----------------------------------------------------------------------------------


async def _ingest_all(
    stub: profile_grpc.ProfileServiceStub,
    events: Sequence[source_pb.SourceEvent],
    sent: Sent,
    report: Progress,
    rate: float,
    size: int,
) -> None:
    started = time.monotonic()
    for offset in range(0, len(events), size):
        batch = events[offset : offset + size]
        if rate > 0:  # this batch is due when the ones before it fill the rate
            delay = started + offset / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        request = profile_pb.IngestSourceEventsRequest(events=batch)
        try:
            answer: profile_pb.IngestSourceEventsResponse = await _retrying(
                partial(stub.IngestSourceEvents, request, timeout=60)
            )
        except grpc.aio.AioRpcError as error:
            call = f"IngestSourceEvents (events {offset + 1}-{offset + len(batch)})"
            raise _failed(call, error) from error
        sent.events += len(batch)
        sent.duplicates += sum(1 for receipt in answer.receipts if receipt.duplicate)
        report("events", len(batch))
