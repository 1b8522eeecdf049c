"""Every stream holds at most its byte limit (ZHIKE_STREAM_MAX_BYTES, or the stream's own in
ZHIKE_STREAM_MAX_BYTES_BY_STREAM) and refuses new events once there (DiscardPolicy.NEW), so
one stream filling up cannot fill the server's JetStream store and stop every stream with it:
its producers are refused with an error naming it, their events wait in the outbox, and the
other streams and the dead letters keep taking events. Nothing acknowledged is dropped, and a
stream an earlier release created without a limit gets it at the next start with every event
it holds."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import nats
import pytest
import sqlalchemy as sa
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import Error as JetStreamError
from pydantic import ValidationError

from zhike_runtime.app import Platform, RunningService, ServiceDefinition, Wiring
from zhike_runtime.events.bus import DLQ_STREAM, DLQ_SUBJECT_PREFIX, StreamSpec, dlq_subject
from zhike_runtime.events.outbox import add_to_outbox
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import TEST_SETTINGS, eventually, running_service

from ..conftest import PING_SUBJECT, TEST_STREAM, ping
from .configured_nats import ConfiguredNats

MIB = 1024 * 1024
Service = RunningService[ServiceSettings]
WEEK = 7 * 86400
# A second stream of the same service, as the profile owns ZHIKE_PROFILE and ZHIKE_SOURCE.
OTHER_STREAM = StreamSpec("ZHIKE_TESTING_OTHER", ("zhike.testing_other.v1.>",))
# About 4 KB each, so a 1 MiB stream is full after about 250 of them.
PAYLOAD = "x" * 4000
# Larger than any room a full stream has left (less than one of those events).
LARGER = ("y" * 8000).encode()


def streams_only(_platform: Platform[ServiceSettings]) -> Wiring:
    return Wiring()


PRODUCER = ServiceDefinition(
    name="producer",
    settings_type=ServiceSettings,
    grpc_service_names=(),
    migrations=None,
    stream=TEST_STREAM,
    extra_streams=(OTHER_STREAM,),
    wire=streams_only,
)


def producer(tmp_path: Path, nats_url: str) -> AbstractAsyncContextManager[Service]:
    """The producer on SQLite, each of its streams limited to 1 MiB."""
    return running_service(
        PRODUCER,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'producer.db'}",
        nats_url=nats_url,
        stream_max_bytes=MIB,
    )


async def published(service: RunningService[ServiceSettings]) -> int:
    """Outbox rows JetStream acknowledged (the relay marks them after the ack)."""
    async with service.database.session() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).where(outbox_event.c.published_at.is_not(None))
        )
    return int(count or 0)


async def relay_settled(service: RunningService[ServiceSettings]) -> None:
    """Waits until the relay publishes nothing more (what is left keeps being refused)."""

    async def nothing_more_goes_out() -> bool:
        before = await published(service)
        await asyncio.sleep(0.5)
        return before > 0 and await published(service) == before

    await eventually(nothing_more_goes_out, timeout=60, interval=0)


def logged(lines: list[str], message: str) -> list[dict[str, Any]]:
    return [entry for entry in map(json.loads, lines) if entry["message"] == message]


async def test_a_full_stream_refuses_its_producers_and_the_other_streams_and_dead_letters_work(
    tmp_path: Path,
) -> None:
    # A store of 5 MiB, less than the 6 MiB of events below: without limits on the streams,
    # the first stream fills the store, and every stream is refused with it.
    server = ConfiguredNats(tmp_path / "nats", max_file_store=5 * MIB)
    server.start()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'producer.db'}"
    events = [ping(f"{n:04d}{PAYLOAD}") for n in range(1500)]
    try:
        with captured_json_logs() as lines:
            async with producer(tmp_path, server.url) as service:
                await service.bus.wait_ready()
                async with service.database.session() as session, session.begin():
                    await add_to_outbox(session, events)
                service.relay.notify()
                await relay_settled(service)

                # The other stream of the same service, and the dead letters, still take events.
                other = await service.bus.publish(
                    "zhike.testing_other.v1.ping", b"other", headers={"Nats-Msg-Id": "other-1"}
                )
                assert other.stream == OTHER_STREAM.name
                parked = await service.bus.publish(
                    dlq_subject("consumer-testing"), b"", headers={"Nats-Msg-Id": "dead-1"}
                )
                assert parked.stream == DLQ_STREAM

                # The full stream holds no more than its limit, and refuses, naming itself.
                state = (await service.bus.js.stream_info(TEST_STREAM.name)).state
                assert state.bytes <= MIB
                with pytest.raises(JetStreamError) as refused:
                    await service.bus.publish(
                        PING_SUBJECT, LARGER, headers={"Nats-Msg-Id": "one-more"}
                    )
                assert f"stream {TEST_STREAM.name} is full" in str(refused.value)

                # Every acknowledged event is in the stream once; the refused ones wait.
                acknowledged = await published(service)
                assert state.messages == acknowledged
                assert 0 < acknowledged < len(events)
                assert await service.relay.backlog() == len(events) - acknowledged

        # The relay said why: the stream is full, by name.
        [first, *_] = logged(lines, "outbox relay: NATS refused events; they stay in the outbox")
        assert f"stream {TEST_STREAM.name} is full" in first["error"]

        # The operator raises that stream's limit: the next start applies it, and more of the
        # kept events go out, still each one once.
        async with running_service(
            PRODUCER,
            database_url=database_url,
            nats_url=server.url,
            stream_max_bytes=MIB,
            stream_max_bytes_by_stream={TEST_STREAM.name: 2 * MIB},
        ) as service:
            await service.bus.wait_ready()
            await relay_settled(service)
            info = await service.bus.js.stream_info(TEST_STREAM.name)
            assert info.config.max_bytes == 2 * MIB
            assert info.state.messages == await published(service) > acknowledged
            assert await service.relay.backlog() == len(events) - info.state.messages
    finally:
        server.stop()


async def test_a_stream_created_without_a_byte_limit_gets_it_and_keeps_every_event(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # The streams as an earlier release declared them: no byte limit, and discarding the
    # oldest events when a limit is reached.
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    for name, subjects in (
        (TEST_STREAM.name, list(TEST_STREAM.subjects)),
        (DLQ_STREAM, [f"{DLQ_SUBJECT_PREFIX}.>"]),
    ):
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=subjects,
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                max_age=WEEK,
                discard=DiscardPolicy.OLD,
            )
        )
    for n in range(400):  # about 1.6 MiB, more than the limit the new release sets
        await js.publish(PING_SUBJECT, PAYLOAD.encode(), headers={"Nats-Msg-Id": f"old-{n}"})
    held = (await js.stream_info(TEST_STREAM.name)).state
    assert held.bytes > MIB

    with captured_json_logs() as lines:
        async with running_service(
            PRODUCER,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'producer.db'}",
            nats_url=nats_server.url,
            stream_max_age_seconds=WEEK,
            stream_max_bytes=MIB,
        ) as service:
            await service.bus.wait_ready()
            for name in (TEST_STREAM.name, DLQ_STREAM):
                config = (await js.stream_info(name)).config
                assert (config.max_bytes, config.discard, config.max_age) == (
                    MIB,
                    DiscardPolicy.NEW,
                    WEEK,
                )
            # Not one event removed to fit: the stream refuses new ones until max_age frees
            # room (or the limit is raised).
            state = (await js.stream_info(TEST_STREAM.name)).state
            assert (state.messages, state.first_seq, state.bytes) == (400, 1, held.bytes)
            with pytest.raises(JetStreamError) as refused:
                await service.bus.publish(PING_SUBJECT, LARGER, headers={"Nats-Msg-Id": "new"})
            assert f"stream {TEST_STREAM.name} is full" in str(refused.value)
    await client.close()

    # The start said so, naming the stream and what it holds against its limit.
    [over] = logged(lines, "stream at or over its byte limit: it refuses new events")
    assert over["severity"] == "ERROR"
    assert over["stream"] == TEST_STREAM.name
    assert over["max_bytes_mib"] == 1
    assert over["held_mib"] >= 1.5


async def test_byte_limits_the_jetstream_store_cannot_hold_stop_the_declaration_naming_the_stream(
    tmp_path: Path,
) -> None:
    # Three streams of 1 MiB (the service's two and the dead letters) do not fit in 2 MiB.
    server = ConfiguredNats(tmp_path / "nats", max_file_store=2 * MIB)
    server.start()
    try:
        with captured_json_logs() as lines:
            async with producer(tmp_path, server.url) as service:

                async def refused() -> bool:
                    return bool(logged(lines, "declaring streams failed; retrying"))

                await eventually(refused, timeout=15)
                assert not service.bus.is_connected  # the outbox keeps the events meanwhile
        [failure, *_] = logged(lines, "declaring streams failed; retrying")
        assert failure["severity"] == "ERROR"
        assert "with max_bytes 1 MiB" in failure["error"]
        assert "insufficient storage resources" in failure["error"]
    finally:
        server.stop()


def test_byte_limits_default_to_bounded_sizes_and_refuse_unbounded_or_unnamed_ones() -> None:
    settings = ServiceSettings(**TEST_SETTINGS)
    assert settings.stream_max_bytes == 128 * MIB
    assert settings.stream_max_bytes_by_stream == {"ZHIKE_SOURCE": 512 * MIB}
    for bad in (
        {"stream_max_bytes": -1},  # JetStream's "no limit"
        {"stream_max_bytes": 0},
        {"stream_max_bytes": 64 * 1024},  # less than one largest message (max_payload)
        {"stream_max_bytes_by_stream": {"ZHIKE_SOURCE": -1}},
        {"stream_max_bytes_by_stream": {"zhike.source.v1.>": MIB}},  # subjects are not streams
    ):
        with pytest.raises(ValidationError):
            ServiceSettings(**(TEST_SETTINGS | bad))


async def test_the_stream_fill_gauge_reads_each_streams_bytes_over_its_byte_limit(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    names = {TEST_STREAM.name, OTHER_STREAM.name, DLQ_STREAM}
    async with producer(tmp_path, nats_server.url) as service:
        # Read once the streams are declared: each of the service's streams, empty.
        async def first_reading() -> bool:
            return set(service.telemetry.gauges.stream_fill) == names

        await eventually(first_reading)
        assert service.telemetry.gauges.stream_fill == dict.fromkeys(names, 0.0)

        for n in range(100):
            await service.bus.publish(
                PING_SUBJECT, PAYLOAD.encode(), headers={"Nats-Msg-Id": f"fill-{n}"}
            )
        fill = await service.bus.stream_fill()
        held = (await service.bus.js.stream_info(TEST_STREAM.name)).state.bytes
        assert fill == {TEST_STREAM.name: held / MIB, OTHER_STREAM.name: 0.0, DLQ_STREAM: 0.0}
        assert 0.35 < fill[TEST_STREAM.name] < 0.45  # 100 events of about 4 KB in 1 MiB


async def test_a_stream_jetstream_does_not_tell_is_logged_and_the_others_are_still_read(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with producer(tmp_path, nats_server.url) as service:
        await service.bus.wait_ready()
        # Gone from under the service (as a stream its NATS user may not read would be).
        await service.bus.js.delete_stream(OTHER_STREAM.name)

        with captured_json_logs() as lines:
            fill = await service.bus.stream_fill()

        assert set(fill) == {TEST_STREAM.name, DLQ_STREAM}
        # (The service's own first reading may have met the deleted stream too.)
        told = logged(lines, "stream fill not read")
        assert told
        assert {line["stream"] for line in told} == {OTHER_STREAM.name}
