"""Fetches from a durable JetStream pull consumer that return as soon as messages arrive.

nats-py's `PullSubscription.fetch` shares one reply inbox between its pull requests and cannot
tell which request a status belongs to. When a request's `408 Request Timeout` arrives just after
the client gave up on it, the next fetch takes that stale status for its own answer and falls
back to a lingering request that waits for the whole batch; the next message then waits out the
fetch's timeout (up to a second here) on an idle stream (nats-io/nats.py#933; #986 reports it
again in 2.15, and 2.16 does it here). Measured here: the first OfferWithdrawn after the
stream had been idle took 350-440 ms instead of 7.

`PullConsumer.fetch` sends each pull request from a reply subject of its own, under one wildcard
subscription, and never waits for a request that another one may have been served instead of:
- with nothing in hand, it asks for one message with `no_wait` and `expires` (JetStream holds the
  request until a message comes) and waits for the first message, whichever request brings it;
- then, unless that message says nothing more is pending, it asks for the rest with `no_wait`
  alone, which JetStream ends at once (404) after whatever is there;
- a status ends only the request it names; a stale one is ignored. Messages are taken from any
  request: one that arrives after its fetch gave up is handed out by the next fetch.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.errors import APIError

# Statuses that end a pull request with nothing wrong: no messages (now), or it expired. Any
# other (409: the consumer was deleted, too many waiting requests, a leader change...) is
# raised, so the consumer backs off instead of asking again at once.
_ENDED = (api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT)
# How much sooner than the fetch's own deadline JetStream is asked to end a waiting request, so
# that its 408 normally arrives while the fetch still waits for it.
_EXPIRY_MARGIN = 0.05


class PullConsumer:
    """Fetches from one durable pull consumer of one stream (see the module's docstring)."""

    def __init__(self, client: Client, stream: str, durable: str) -> None:
        self._client = client
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = client.new_inbox()
        self._numbers: Callable[[], int] = itertools.count().__next__
        self._arrived: asyncio.Queue[Msg] = asyncio.Queue()
        self._subscription: Subscription | None = None

    @property
    def inbox(self) -> str:
        """The prefix of this consumer's reply subjects (`<inbox>.<n>`)."""
        return self._inbox

    async def start(self) -> None:
        self._subscription = await self._client.subscribe(f"{self._inbox}.*", cb=self._receive)

    async def close(self) -> None:
        """Stops receiving, and hands back (NAKs) what arrived but was not fetched, so another
        replica gets it at once rather than after AckWait."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.unsubscribe()
        while not self._arrived.empty():
            message = self._arrived.get_nowait()
            if _status(message) is None:
                await message.nak()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` messages: those in hand, or else the first to arrive within `timeout`
        seconds, with whatever more is there at once; [] when none came."""
        if batch < 1 or timeout <= 0:
            raise ValueError("a fetch needs a batch of at least 1 and a positive timeout")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        messages = self._in_hand(batch)
        if not messages:
            # One message first: a request for more would take them even if this fetch stopped
            # waiting for it, and they would wait, unprocessed, for the next fetch.
            expires = max(timeout - _EXPIRY_MARGIN, timeout / 2)
            first = await self._wait(
                {"batch": 1, "no_wait": True, "expires": int(expires * 1e9)},
                deadline,
                1,
                holding=False,
            )
            if not first:
                return []
            # It may have come by a request an earlier fetch gave up on (the server serves the
            # oldest first), so this fetch's own may still wait: the rest is asked for anew.
            messages = [*first, *self._in_hand(batch - 1)]
            if _last_there(messages[-1]):
                return messages  # an idle stream's one event: no second request
        if len(messages) < batch:
            wanted = batch - len(messages)
            messages += await self._wait(
                {"batch": wanted, "no_wait": True}, deadline, wanted, holding=True
            )
        return messages

    async def _wait(
        self, request: dict[str, object], deadline: float, wanted: int, *, holding: bool
    ) -> list[Msg]:
        """Sends `request` and returns the messages that arrive until it ends, `wanted` came or
        `deadline` (the loop's time) passes, whichever is first. An error status for it is
        raised only when neither this request nor the fetch (`holding`) has messages to give."""
        reply = f"{self._inbox}.{self._numbers()}"
        await self._client.publish(self._next, json.dumps(request).encode(), reply=reply)
        loop = asyncio.get_running_loop()
        messages: list[Msg] = []
        while len(messages) < wanted:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
                # that lands in the turn a message arrives, and a stopping consumer runs on.
                async with asyncio.timeout(left):
                    message = await self._arrived.get()
            except TimeoutError:
                break
            status = _status(message)
            if status is None:
                messages.append(message)
            elif message.subject == reply:
                if status in _ENDED or messages or holding:
                    break  # messages in hand go out now; a lasting error comes back next fetch
                raise APIError.from_msg(message)
            # Otherwise a status for an earlier request, which its fetch no longer waits for.
        return messages

    def _in_hand(self, batch: int) -> list[Msg]:
        messages: list[Msg] = []
        while len(messages) < batch and not self._arrived.empty():
            message = self._arrived.get_nowait()
            if _status(message) is None:
                messages.append(message)
        return messages

    async def _receive(self, message: Msg) -> None:
        self._arrived.put_nowait(message)


def _last_there(message: Msg) -> bool:
    """Whether nothing else was waiting when the server delivered `message`: no new message
    pending, and it was not itself a redelivery (others handed back may be waiting too, and
    JetStream's pending count leaves them out)."""
    metadata = message.metadata
    return metadata.num_pending == 0 and metadata.num_delivered == 1


def _status(message: Msg) -> str | None:
    return None if message.headers is None else message.headers.get(api.Header.STATUS)
