"""`zhike dlq replay` letter by letter: a letter parked without its payload is replayed from its
original stream, and one that cannot be replayed (its event gone from the stream, another event
at the sequence it names, a NATS error) is skipped and named while the run goes on, ending with
"replayed N, skipped M" and exit 1. `zhike dlq list` prints each letter as one line, its
publisher's headers escaped."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from zhike.testing.v1 import events_pb2
from zhike_runtime import cli
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM, EventBus, dlq_subject
from zhike_runtime.events.dead_letters import list_dead_letters
from zhike_runtime.testing.processes import NatsServer

from ..conftest import PING_SUBJECT, TEST_STREAM

DURABLE = "tests-replay"
PING = "zhike.testing.v1.Ping"
# In a payload, never in what the command prints.
SECRET_KEY = "13671829305"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def zhike(argv: list[str]) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[EventBus]:
    """A connection that has declared the test stream and the dead-letter stream."""
    bus = EventBus(nats_server.url, client_name="operator")
    bus.add_stream(TEST_STREAM)
    await bus.run()
    yield bus
    await bus.close()


async def publish_event(bus: EventBus, event_id: str, key: str) -> int:
    """An event on the test stream, as a relay publishes it; returns its stream sequence."""
    ack = await bus.js.publish(
        PING_SUBJECT,
        events_pb2.Ping(key=key).SerializeToString(),
        headers={h.MSG_ID: event_id, h.EVENT_ID: event_id, h.EVENT_TYPE: PING},
    )
    return int(ack.seq)


async def park(
    bus: EventBus,
    event_id: str,
    key: str,
    *,
    subject: str = PING_SUBJECT,
    original_sequence: int | None = None,
) -> int:
    """A dead letter of DURABLE as the consumer parks it: with its payload, or, given the
    event's sequence in its stream, without it. Returns its sequence in ZHIKE_DLQ."""
    payload = events_pb2.Ping(key=key).SerializeToString()
    headers = {
        h.MSG_ID: f"{DURABLE}:{event_id}:parked",
        h.EVENT_ID: event_id,
        h.EVENT_TYPE: PING,
        h.ORIGINAL_SUBJECT: subject,
        h.CONSUMER: DURABLE,
        h.DELIVERIES: "5",
        h.LAST_ERROR: "RuntimeError: downstream rejects it",
    }
    if original_sequence is not None:
        headers |= {
            h.PAYLOAD_OMITTED: str(len(payload)),
            h.ORIGINAL_SEQUENCE: str(original_sequence),
        }
        payload = b""
    ack = await bus.js.publish(dlq_subject(DURABLE), payload, headers=headers)
    return int(ack.seq)


async def replayed_events(bus: EventBus, after: int) -> list[tuple[str, str]]:
    """(event id, key) of each message on the test stream after sequence `after`."""
    info = await bus.js.stream_info(TEST_STREAM.name)
    found: list[tuple[str, str]] = []
    for sequence in range(after + 1, int(info.state.last_seq) + 1):
        message = await bus.js.get_msg(TEST_STREAM.name, seq=sequence)
        headers = dict(message.headers or {})
        found.append((headers[h.EVENT_ID], events_pb2.Ping.FromString(message.data or b"").key))
    return found


async def replay_all(nats_server: NatsServer) -> Ran:
    argv = ["dlq", "replay", "--nats", nats_server.url, "--consumer", DURABLE]
    return await asyncio.to_thread(zhike, argv)


async def test_a_letter_parked_without_its_payload_is_replayed_from_its_stream_with_the_others(
    nats_server: NatsServer, bus: EventBus
) -> None:
    large = await publish_event(bus, "e-large", "large")
    await park(bus, "e-first", "first")
    await park(bus, "e-large", "large", original_sequence=large)
    await park(bus, "e-third", "third")

    ran = await replay_all(nats_server)

    assert (ran.code, ran.err) == (0, "")
    assert ran.out == f"replayed 3 dead letter(s) of {DURABLE}\n"
    assert await replayed_events(bus, after=large) == [
        ("e-first", "first"),
        ("e-large", "large"),
        ("e-third", "third"),
    ]
    assert (await bus.js.stream_info(DLQ_STREAM)).state.messages == 0


@pytest.mark.parametrize("original", ["expired", "another_event"])
async def test_a_letter_whose_event_is_no_longer_at_its_sequence_is_skipped_and_named(
    nats_server: NatsServer, bus: EventBus, original: str
) -> None:
    large = await publish_event(bus, "e-large", SECRET_KEY)
    other = await publish_event(bus, "e-other", SECRET_KEY)
    if original == "expired":
        # As the stream's age limit removes it.
        await bus.js.delete_msg(TEST_STREAM.name, large)
        named, reason = large, "no longer in its stream"
    else:
        named, reason = other, "holds another event"
    await park(bus, "e-first", "first")
    skipped = await park(bus, "e-large", SECRET_KEY, original_sequence=named)
    await park(bus, "e-third", "third")

    ran = await replay_all(nats_server)

    assert ran.code == 1
    assert ran.out == f"replayed 2, skipped 1 dead letter(s) of {DURABLE}\n"
    [line] = ran.err.splitlines()
    assert f"dead letter {skipped} (event e-large) skipped: " in line
    assert reason in line
    assert SECRET_KEY not in ran.out + ran.err
    assert await replayed_events(bus, after=other) == [("e-first", "first"), ("e-third", "third")]
    assert [letter.sequence for letter in await list_dead_letters(bus.js, DURABLE)] == [skipped]


async def test_a_nats_error_on_one_letter_skips_it_and_the_replay_goes_on(
    nats_server: NatsServer, bus: EventBus
) -> None:
    await park(bus, "e-first", "first")
    # No stream takes its subject: the republish gets no acknowledgement.
    lost = await park(bus, "e-lost", "lost", subject="zhike.nowhere.v1.ping")
    await park(bus, "e-third", "third")

    ran = await replay_all(nats_server)

    assert ran.code == 1
    assert ran.out == f"replayed 2, skipped 1 dead letter(s) of {DURABLE}\n"
    [line] = ran.err.splitlines()
    assert line.startswith(f"dead letter {lost} (event e-lost) skipped: ")
    assert [letter.sequence for letter in await list_dead_letters(bus.js, DURABLE)] == [lost]


async def test_dlq_list_prints_a_letter_whose_headers_hold_control_characters_as_one_escaped_line(
    nats_server: NatsServer, bus: EventBus
) -> None:
    # A publisher's event id with a tab (a forged column) and a terminal escape (ESC [2J clears
    # the screen).
    sequence = await park(bus, "e-1\tforged\x1b[2J", "first")

    ran = await asyncio.to_thread(
        zhike, ["dlq", "list", "--nats", nats_server.url, "--consumer", DURABLE]
    )

    assert (ran.code, ran.err) == (0, "")
    assert ran.out.splitlines() == [
        f"{sequence}\t{DURABLE}\t{PING_SUBJECT}\te-1\\tforged\\u001b[2J\tdeliveries=5\t"
        "RuntimeError: downstream rejects it",
        "1 dead letter(s)",
    ]
