"""The one shape every channel adapter has, and what a send gives back.

`Provider.send(message)` hands one message to a provider and returns `ProviderAccepted` once the
provider has taken responsibility for it, or raises `ProviderError`, whose `kind` is the domain's
`ErrorKind` (retry.py decides what follows from it):

- TRANSIENT: not accepted; may succeed later or through another provider (connection refused, a
  connect time-out, HTTP 5xx/408/425/429, SMTP 4yz, a drop before the message was handed over);
- AMBIGUOUS: the message may have been accepted (a time-out or a dropped connection after it was
  handed over): retried at the same provider only, with the same `out_id`;
- PERMANENT: will never succeed as it is (another HTTP 4xx, SMTP 5yz).

Every message carries an `out_id`, stable across the attempts of one notification, that the
provider deduplicates on (an HTTP idempotency key, the e-mail's Message-ID): a resend after a crash
between the provider's accept and our commit is recognised and not delivered twice.

Personal data (the address, the text) is never in a log line or an exception text: errors carry a
code made of the protocol's numbers (`http_503`, `smtp_451`, `timeout`), and the message's repr
shows only its out-id and channel.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Protocol

from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.retry import ErrorKind

# Dot-atom text, so that the out-id can be an e-mail Message-ID's left part as it is.
OUT_ID = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
MAX_OUT_ID_LENGTH = 128


@dataclass(frozen=True)
class OutboundMessage:
    """One message for one recipient, rendered and ready to send."""

    out_id: str  # what the provider deduplicates on: the same for every attempt of a notification
    channel: Channel
    to: str = field(repr=False)  # a phone number (E.164), an e-mail address or a device token
    body: str = field(repr=False)
    subject: str = field(default="", repr=False)  # an e-mail's subject, a push notification's title
    # A marketing e-mail's one-click unsubscribe link (List-Unsubscribe, RFC 8058).
    unsubscribe_url: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        # Programming errors, not the customer's input: the texts name rules, never values.
        if len(self.out_id) > MAX_OUT_ID_LENGTH or not OUT_ID.fullmatch(self.out_id):
            raise ValueError(
                f"out_id must be 1-{MAX_OUT_ID_LENGTH} characters of A-Z, a-z, 0-9, '_', '-' "
                "in dot-separated parts"
            )
        if not self.to:
            raise ValueError("to is required")
        if not self.body:
            raise ValueError("body is required")


@dataclass(frozen=True)
class ProviderAccepted:
    provider: str
    # The provider's id for the message (its receipts name it); for e-mail the Message-ID.
    provider_message_id: str


class ProviderError(Exception):
    """A send that did not end in an accept, classified for the retry policy."""

    def __init__(
        self,
        provider: str,
        kind: ErrorKind,
        code: str,
        retry_after: dt.timedelta | None = None,
    ) -> None:
        super().__init__(f"{provider}: {code} ({kind.value})")
        self.provider = provider
        self.kind = kind
        self.code = code  # protocol numbers and fixed words only: safe to record and log
        self.retry_after = retry_after  # how long the provider asked us to wait, if it did


def connection_refused(error: BaseException) -> bool:
    """Whether a connect failure was a refusal (nothing listens), through wrapped causes."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Provider(Protocol):
    """A channel adapter: one provider account, reached over one protocol."""

    @property
    def name(self) -> str: ...

    @property
    def channel(self) -> Channel: ...

    async def send(self, message: OutboundMessage) -> ProviderAccepted:
        """Hands `message` over; raises `ProviderError` when the provider did not accept it."""
        ...

    async def aclose(self) -> None:
        """Releases connections; the provider is not used afterwards."""
        ...
