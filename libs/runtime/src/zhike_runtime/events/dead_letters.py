"""Inspecting and replaying the dead-letter stream (`zhike dlq list|replay`).

A replay republishes the payload to its original subject with the original event id in
`Zhike-Event-Id`, so every consumer's inbox absorbs it if it was applied already, and with a new
`Nats-Msg-Id` (`<event id>:replay:<dead-letter seq>`): reusing the original one would make
JetStream drop the replay as a duplicate while still inside the duplicate window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM, DLQ_SUBJECT_PREFIX, dlq_subject
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.redaction import redact_text

# Headers the dead-lettering added: not part of the original event.
_DLQ_ONLY = {
    h.ORIGINAL_SUBJECT,
    h.LAST_ERROR,
    h.CONSUMER,
    h.DELIVERIES,
    h.MSG_ID,
    h.PAYLOAD_OMITTED,
    h.ORIGINAL_SEQUENCE,
}


@dataclass(frozen=True)
class DeadLetter:
    sequence: int  # in the ZHIKE_DLQ stream
    consumer: str
    original_subject: str
    event_id: str
    event_type: str
    deliveries: str
    last_error: str
    headers: dict[str, str]
    payload: bytes


def dead_letter_event(
    consumer: str, original_subject: str, message: Message, *, deliveries: int, last_error: str
) -> OutgoingEvent:
    """A dead letter a service parks itself, through its outbox (in the transaction that
    decided it), as `list_dead_letters` reads and `replay` republishes a consumer's: `message`
    goes to `original_subject` when the letter is replayed, and `consumer` (the durable that
    applies it there) names the letter. `last_error` is a code, never personal data."""
    return OutgoingEvent(
        dlq_subject(consumer),
        message,
        headers={
            h.ORIGINAL_SUBJECT: original_subject,
            h.CONSUMER: consumer,
            h.DELIVERIES: str(deliveries),
            h.LAST_ERROR: redact_text(last_error),
        },
    )


async def list_dead_letters(js: JetStreamContext, consumer: str | None = None) -> list[DeadLetter]:
    subject = dlq_subject(consumer) if consumer else f"{DLQ_SUBJECT_PREFIX}.>"
    letters: list[DeadLetter] = []
    sequence = 1
    while True:
        try:
            raw = await js.get_msg(DLQ_STREAM, seq=sequence, subject=subject, next=True)
        except NotFoundError:
            return letters
        headers: dict[str, str] = dict(raw.headers or {})
        # Written value-free by the consumer; masked again for letters parked by older releases,
        # whose last error was the exception's full text.
        if h.LAST_ERROR in headers:
            headers[h.LAST_ERROR] = redact_text(headers[h.LAST_ERROR])
        letters.append(
            DeadLetter(
                sequence=int(raw.seq or 0),
                consumer=headers.get(h.CONSUMER, ""),
                original_subject=headers.get(h.ORIGINAL_SUBJECT, ""),
                event_id=headers.get(h.EVENT_ID, ""),
                event_type=headers.get(h.EVENT_TYPE, ""),
                deliveries=headers.get(h.DELIVERIES, ""),
                last_error=headers.get(h.LAST_ERROR, ""),
                headers=headers,
                payload=raw.data or b"",
            )
        )
        sequence = int(raw.seq or sequence) + 1


async def replay(js: JetStreamContext, letters: Iterable[DeadLetter]) -> int:
    """Republishes each letter to its original subject, then removes it from the dead letters."""
    replayed = 0
    for letter in letters:
        if not letter.original_subject or not letter.event_id:
            raise ValueError(f"dead letter {letter.sequence} lacks its subject or event id")
        if h.PAYLOAD_OMITTED in letter.headers:
            # Replayed empty, the event would be lost for good: it is still in its stream.
            raise ValueError(
                f"dead letter {letter.sequence} was parked without its payload, which is in its "
                f"stream at sequence {letter.headers.get(h.ORIGINAL_SEQUENCE, '?')}"
            )
        headers = {k: v for k, v in letter.headers.items() if k not in _DLQ_ONLY}
        headers[h.MSG_ID] = f"{letter.event_id}:replay:{letter.sequence}"
        headers[h.EVENT_ID] = letter.event_id
        await js.publish(letter.original_subject, letter.payload, headers=headers)
        await js.delete_msg(DLQ_STREAM, letter.sequence)
        replayed += 1
    return replayed
