"""E-mail over SMTP (aiosmtplib), one connection per message.

The Message-ID is made from the out-id (`<out_id@domain>`), so a resend after a crash carries the
same Message-ID as the first and the receiving server (the local gateway; a provider's relay or a
mailbox) recognises it; it is also the `provider_message_id`, which bounces and receipts quote.

How a failure is classified (`ErrorKind`), by the step it happened at:

| step | reply 4yz | reply 5yz | time-out or dropped connection |
|---|---|---|---|
| connect, greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT | TRANSIENT | PERMANENT | TRANSIENT |
| DATA (the message went out) | TRANSIENT | PERMANENT | AMBIGUOUS |

A refused connection is TRANSIENT (`connection_refused`). Codes are `smtp_<reply code>`; the
server's reply text is not kept (servers quote the address in it).
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
from email.message import EmailMessage
from types import TracebackType
from typing import Self

import aiosmtplib

from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.retry import ErrorKind, classify_smtp_reply
from zhike_notifications.providers.base import (
    OutboundMessage,
    ProviderAccepted,
    ProviderError,
    connection_refused,
)

logger = logging.getLogger(__name__)


class SmtpProvider:
    """An SMTP relay or submission server. TLS: `use_tls` (implicit, port 465) or `start_tls`
    (True requires it; None, the default, upgrades when the server offers it)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,  # "知客银行 <notify@bank.example>"
        *,
        message_id_domain: str | None = None,  # the sender's domain by default
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout: float = 10.0,
    ) -> None:
        _display, address = email.utils.parseaddr(sender)
        if "@" not in address:
            raise ValueError("sender must hold an e-mail address")
        self._name = name
        self._host = host
        self._port = port
        self._sender = sender
        self._envelope_sender = address
        self._domain = message_id_domain or address.rsplit("@", 1)[1]
        self._username = username
        self._password = password
        self._use_tls = use_tls
        self._start_tls = start_tls
        self._timeout = timeout

    @property
    def name(self) -> str:
        return self._name

    @property
    def channel(self) -> Channel:
        return Channel.EMAIL

    def message_id(self, out_id: str) -> str:
        """The Message-ID a message with this out-id is sent with, angle brackets included."""
        return f"<{out_id}@{self._domain}>"

    async def send(self, message: OutboundMessage) -> ProviderAccepted:
        if message.channel is not Channel.EMAIL:
            raise ValueError(f"{self._name} sends email, not {message.channel}")
        message_id = self.message_id(message.out_id)
        utf8 = not message.to.isascii()
        content = self._compose(message, message_id).as_bytes(
            policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
        )
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            use_tls=self._use_tls,
            start_tls=self._start_tls,
            timeout=self._timeout,
        )
        handed_over = False  # True once DATA began: from then on the server may have accepted
        try:
            await client.connect()
            options = ["SMTPUTF8"] if utf8 else []
            encoding = "utf-8" if utf8 else "ascii"
            await client.mail(self._envelope_sender, options=options, encoding=encoding)
            await client.rcpt(message.to, encoding=encoding)
            handed_over = True
            await client.data(content)
        except (aiosmtplib.SMTPException, OSError) as error:
            raise self._failed(message, _classify(self._name, error, handed_over)) from None
        finally:
            await _quit(client)
        logger.debug(
            "provider accepted a message",
            extra={"provider": self._name, "channel": "email", "out_id": message.out_id},
        )
        return ProviderAccepted(self._name, message_id)

    def _compose(self, message: OutboundMessage, message_id: str) -> EmailMessage:
        composed = EmailMessage()
        composed["From"] = self._sender
        composed["To"] = message.to
        composed["Subject"] = message.subject
        composed["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        composed["Message-ID"] = message_id
        if message.unsubscribe_url:
            composed["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            composed["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        composed.set_content(message.body, charset="utf-8")
        return composed

    def _failed(self, message: OutboundMessage, error: ProviderError) -> ProviderError:
        logger.warning(
            "provider did not accept a message",
            extra={
                "provider": self._name,
                "channel": "email",
                "out_id": message.out_id,
                "error_kind": error.kind.value,
                "error_code": error.code,
            },
        )
        return error

    async def aclose(self) -> None:
        """Nothing to release: every message has its own connection."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _classify(provider: str, error: BaseException, handed_over: bool) -> ProviderError:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        # A reply the server gave: 4yz TRANSIENT, 5yz PERMANENT, whatever the step.
        try:
            kind = classify_smtp_reply(error.code)
        except ValueError:  # not a failure code at all (a server off the protocol)
            kind = ErrorKind.AMBIGUOUS if handed_over else ErrorKind.TRANSIENT
        return ProviderError(provider, kind, f"smtp_{error.code}")
    if isinstance(error, aiosmtplib.SMTPConnectTimeoutError):
        return ProviderError(provider, ErrorKind.TRANSIENT, "connect_timeout")
    if isinstance(error, aiosmtplib.SMTPConnectError):
        code = "connection_refused" if connection_refused(error) else "connect_failed"
        return ProviderError(provider, ErrorKind.TRANSIENT, code)
    timed_out = isinstance(error, TimeoutError)  # SMTPTimeoutError is one
    if handed_over:
        # The message may be in the server's queue and only its "250" lost.
        return ProviderError(
            provider, ErrorKind.AMBIGUOUS, "timeout" if timed_out else "connection_lost"
        )
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return ProviderError(provider, ErrorKind.TRANSIENT, "smtp_not_supported")
    return ProviderError(
        provider, ErrorKind.TRANSIENT, "timeout" if timed_out else "connection_lost"
    )


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Says goodbye when still connected; the outcome of the send is already known."""
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
