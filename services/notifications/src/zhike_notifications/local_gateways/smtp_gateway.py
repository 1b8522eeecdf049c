"""The local SMTP server (aiosmtpd): stores every e-mail it accepts as an .eml file, once per
Message-ID, and misbehaves as its fault control says (4yz, 5yz, a late answer)."""

from __future__ import annotations

import asyncio
import email.policy
import logging
from email.parser import BytesHeaderParser

from aiosmtpd.smtp import SMTP, Envelope, Session

from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways.control import FaultControl
from zhike_notifications.local_gateways.store import MessageStore

logger = logging.getLogger(__name__)

# aiosmtpd's own logger writes every envelope address at INFO: kept to warnings and errors.
AIOSMTPD_LOGGER = "mail.log"


class SmtpGatewayHandler:
    """aiosmtpd's handler: called once a whole message has arrived (after the final ".")."""

    def __init__(self, store: MessageStore, control: FaultControl) -> None:
        self.store = store
        self.control = control

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.control.take()
        status = fault.answer_status(Channel.EMAIL)
        if status is not None:
            await asyncio.sleep(fault.delay_ms / 1000)
            logger.info(
                "gateway answered with a fault", extra={"channel": "email", "status": status}
            )
            if status < 500:
                return f"{status} 4.3.0 Try again later (gateway control)"
            return f"{status} 5.0.0 Refused (gateway control)"
        content = envelope.original_content or b""
        message_id = _message_id(content)
        stored = self.store.put(message_id, content)
        logger.info(
            "gateway stored a message" if stored.created else "gateway already had the message",
            extra={"channel": "email", "file": stored.path.name},
        )
        # Late answer: the message is stored, the sender may give up waiting for the "250".
        await asyncio.sleep(fault.delay_ms / 1000)
        return f"250 2.0.0 OK queued as {stored.path.stem}"


def _message_id(content: bytes) -> str | None:
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(content)
    value = headers.get("Message-ID")
    if value is None:
        return None
    stripped = str(value).strip().strip("<>").strip()
    return stripped or None


def smtp_protocol(handler: SmtpGatewayHandler, loop: asyncio.AbstractEventLoop) -> SMTP:
    """One connection's protocol; UTF-8 addresses allowed (SMTPUTF8)."""
    return SMTP(handler, hostname="zhike-local-gateway", enable_SMTPUTF8=True, loop=loop)
