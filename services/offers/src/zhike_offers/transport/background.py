"""The offers' background work, as loops the runtime runs while the service runs: the catalogue
and the propensity counts read again, what outlived its retention deleted, and the decision
store's connections given back at shutdown."""

from __future__ import annotations

import asyncio
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
