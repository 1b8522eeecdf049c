"""SMS and push through an HTTP provider API (httpx, async).

The API (what the local gateway serves; an adapter for a vendor's own API has the same shape):

    POST {base_url}/v1/sms   {"out_id": …, "to": "+86…", "text": …}
    POST {base_url}/v1/push  {"out_id": …, "device_token": …, "title": …, "body": …}
    Idempotency-Key: <out_id>          Authorization: Bearer <api key>   (when configured)
    → 2xx {"message_id": "…"}          the same answer again for an out-id already accepted

How an answer or a failure is classified (`ErrorKind`):

| what happened | kind | code |
|---|---|---|
| connection refused or unreachable, connect or pool time-out | TRANSIENT | `connection_refused`, `connect_failed`, `connect_timeout`, `pool_timeout` |
| 5xx, 408, 425, 429 (Retry-After honoured) | TRANSIENT | `http_503` … |
| any other 4xx (and 3xx: a wrong URL) | PERMANENT | `http_400` …, with the provider's error word when it gives one |
| read or write time-out, connection dropped after the request went out | AMBIGUOUS | `timeout`, `connection_lost` |
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from types import TracebackType
from typing import Any, Self

import httpx

from zhike_notifications.domain.model import Channel, is_error_code
from zhike_notifications.domain.retry import ErrorKind, classify_http_status
from zhike_notifications.providers.base import (
    OutboundMessage,
    ProviderAccepted,
    ProviderError,
    connection_refused,
)

logger = logging.getLogger(__name__)

PATHS = {Channel.SMS: "/v1/sms", Channel.PUSH: "/v1/push"}
IDEMPOTENCY_HEADER = "Idempotency-Key"


class HttpProvider:
    """An SMS or push provider account reached over the HTTP API above."""

    def __init__(
        self,
        name: str,
        channel: Channel,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
    ) -> None:
        if channel not in PATHS:
            raise ValueError(f"an HTTP provider sends sms or push, not {channel.value}")
        self._name = name
        self._channel = channel
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout or timeout),
            # A redirect would resend the message somewhere else: treated as an error instead.
            follow_redirects=False,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def channel(self) -> Channel:
        return self._channel

    async def send(self, message: OutboundMessage) -> ProviderAccepted:
        if message.channel is not self._channel:
            raise ValueError(f"{self._name} sends {self._channel.value}, not {message.channel}")
        try:
            response = await self._client.post(
                PATHS[self._channel],
                json=_payload(message),
                headers={IDEMPOTENCY_HEADER: message.out_id},
            )
        except httpx.TransportError as error:
            raise self._failed(message, _transport_failure(self._name, error)) from None
        if not response.is_success:
            kind = classify_http_status(response.status_code)
            code = f"http_{response.status_code}"
            word = _error_word(response)
            if word:
                code = f"{code}:{word}"
            retry_after = retry_after_delay(
                response.headers.get("Retry-After"), dt.datetime.now(dt.UTC)
            )
            raise self._failed(message, ProviderError(self._name, kind, code, retry_after))
        provider_message_id = _message_id(response)
        if not provider_message_id:
            # Accepted all the same (2xx); the out-id still names the message at this provider.
            logger.warning(
                "provider accepted a message without an id",
                extra={"provider": self._name, "out_id": message.out_id},
            )
            provider_message_id = message.out_id
        logger.debug(
            "provider accepted a message",
            extra={
                "provider": self._name,
                "channel": self._channel.value,
                "out_id": message.out_id,
            },
        )
        return ProviderAccepted(self._name, provider_message_id)

    def _failed(self, message: OutboundMessage, error: ProviderError) -> ProviderError:
        logger.warning(
            "provider did not accept a message",
            extra={
                "provider": self._name,
                "channel": self._channel.value,
                "out_id": message.out_id,
                "error_kind": error.kind.value,
                "error_code": error.code,
            },
        )
        return error

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _payload(message: OutboundMessage) -> dict[str, str]:
    if message.channel is Channel.SMS:
        return {"out_id": message.out_id, "to": message.to, "text": message.body}
    return {
        "out_id": message.out_id,
        "device_token": message.to,
        "title": message.subject,
        "body": message.body,
    }


def _transport_failure(name: str, error: httpx.TransportError) -> ProviderError:
    """Before the request was written (connecting, waiting for a pooled connection) nothing can
    have been accepted: TRANSIENT. Once it went out, a time-out or a drop may hide an accept."""
    if isinstance(error, httpx.ConnectTimeout):
        return ProviderError(name, ErrorKind.TRANSIENT, "connect_timeout")
    if isinstance(error, httpx.PoolTimeout):
        return ProviderError(name, ErrorKind.TRANSIENT, "pool_timeout")
    if isinstance(error, httpx.ConnectError):
        code = "connection_refused" if connection_refused(error) else "connect_failed"
        return ProviderError(name, ErrorKind.TRANSIENT, code)
    if isinstance(error, httpx.TimeoutException):
        return ProviderError(name, ErrorKind.AMBIGUOUS, "timeout")
    if isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError):
        return ProviderError(name, ErrorKind.AMBIGUOUS, "connection_lost")
    # A local protocol error or an unsupported proxy: the request never left.
    return ProviderError(name, ErrorKind.TRANSIENT, "request_failed")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _message_id(response: httpx.Response) -> str:
    value = _json(response).get("message_id")
    return value if isinstance(value, str) else ""


def _error_word(response: httpx.Response) -> str:
    value = _json(response).get("error")
    return value if isinstance(value, str) and is_error_code(value) else ""


# The longest Retry-After read: the longest ZHIKE_RETRY_MAX_SECONDS (the retry policy limits it
# to its own), and short enough to add to any time.
RETRY_AFTER_CEILING = dt.timedelta(days=1)


def retry_after_delay(value: str | None, now: dt.datetime) -> dt.timedelta | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3), at most `RETRY_AFTER_CEILING`;
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to isdigit(), not to int()
        digits = value.lstrip("0") or "0"
        # Seven digits or more are past the ceiling anyway (and int() refuses thousands).
        seconds = int(digits) if len(digits) <= 6 else RETRY_AFTER_CEILING.total_seconds()
        return min(dt.timedelta(seconds=seconds), RETRY_AFTER_CEILING)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return min(max(when - now, dt.timedelta(0)), RETRY_AFTER_CEILING)
