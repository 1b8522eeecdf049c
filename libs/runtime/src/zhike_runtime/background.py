"""Background work as loops the runtime runs while a service runs (`Wiring.background`): a
round every so often (offers' catalogue refresh, retention), rounds as long as they find work
and then a nap until woken (notifications' dispatcher), and something closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from zhike_runtime.redaction import describe_error

log = logging.getLogger(__name__)


def every(
    seconds: float, what: str, action: Callable[[], Awaitable[object]]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A loop that runs `action` now and then every `seconds`; a failure is logged (without
    values) and the next round tries again, keeping whatever the last good round left."""

    async def loop() -> None:
        while True:
            try:
                await action()
            except Exception as error:  # noqa: BLE001 - the next round tries again
                log.warning(
                    f"{what} failed; will try again", extra={"error": describe_error(error)}
                )
            await asyncio.sleep(seconds)

    return loop


def closing_at_shutdown(
    close: Callable[[], Awaitable[object]],
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A loop that waits for the service to stop (the runtime cancels its background loops
    then, before it closes the database) and calls `close` on the way out."""

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await close()

    return loop


def while_working(
    what: str,
    round_: Callable[[], Awaitable[int]],
    wake: asyncio.Event,
    idle_seconds: float,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A loop that runs `round_` again at once while it reports work done (a count above 0),
    and otherwise naps until `wake` is set or `idle_seconds` pass. A failure is logged (without
    values) and the loop naps before the next round."""

    async def loop() -> None:
        while True:
            # Cleared before the round, not after it: work that arrives while the round runs
            # (after its query found nothing) leaves `wake` set, and the nap ends at once.
            wake.clear()
            try:
                if await round_():
                    continue
            except Exception as error:  # noqa: BLE001 - the next round tries again
                log.warning(
                    f"{what} failed; will try again", extra={"error": describe_error(error)}
                )
            await nap(wake, idle_seconds)

    return loop


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """Waits until `wake` is set or `seconds` pass, and stays cancellable throughout.

    asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when the wake-up and
    a cancellation land in the same turn, so a loop being stopped would never stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()
