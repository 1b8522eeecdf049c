"""The bus declares its streams after every (re)connect, retrying while JetStream refuses: with
one declaration at a time, backing off, however often the connection comes back meanwhile.
Each reconnect used to start one more retry loop, each asking every second."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from zhike_runtime.events.bus import EventBus
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.services import eventually

from ..conftest import TEST_STREAM
from .configured_nats import ConfiguredNats

RECONNECTS = 6
WINDOW_SECONDS = 4.0


async def test_reconnects_while_jetstream_is_down_do_not_multiply_the_declaration(
    tmp_path: Path,
) -> None:
    server = ConfiguredNats(tmp_path / "nats", jetstream=False)  # core NATS up, JetStream down
    server.start()
    bus = EventBus(server.url, "producer")
    bus.add_stream(TEST_STREAM)
    with captured_json_logs() as lines:
        running = asyncio.get_running_loop().create_task(bus.run())
        try:
            for _ in range(RECONNECTS):
                server.restart()

                async def reconnected() -> bool:
                    return bool(server.varz()["connections"] == 1)

                await eventually(reconnected, timeout=10)

            # What the server receives from the bus now: its JetStream API requests (one or two
            # a declaration attempt: adding the stream, then updating it), nothing else.
            before = server.varz()["in_msgs"]
            await asyncio.sleep(WINDOW_SECONDS)
            requests = server.varz()["in_msgs"] - before
            # One loop, its attempts seconds apart by now: at most two in the window. A loop
            # per reconnect, each trying every second, makes dozens (30 to 60).
            assert requests <= 4, requests
            assert not bus.is_connected

            # JetStream comes back: that one loop declares the streams.
            server.jetstream = True
            server.restart()

            async def declared() -> bool:
                return bus.is_connected

            await eventually(declared, timeout=20)
            assert (await bus.js.stream_info(TEST_STREAM.name)).config.name == TEST_STREAM.name
        finally:
            await bus.close()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            server.stop()

    failures = [
        line
        for line in map(json.loads, lines)
        if line["message"] == "declaring streams failed; retrying"
    ]
    # Reported at the first failure, then at most once a minute: not at every attempt.
    assert len(failures) == 1, len(failures)
