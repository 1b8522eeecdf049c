"""Inspecting and replaying the dead-letter stream (`zhike dlq list|replay`).

A replay republishes the payload to its original subject with the original event id in
`Zhike-Event-Id`, so every consumer's inbox absorbs it if it was applied already, and with a new
`Nats-Msg-Id` (`<event id>:replay:<dead-letter seq>`): reusing the original one would make
JetStream drop the replay as a duplicate while still inside the duplicate window.

A replay goes letter by letter: one that cannot be replayed is left parked and reported with a
plain reason (never its payload or a value from it), and the others are replayed all the same.
A letter parked without its payload (the event was too large to park with the letter's
headers) is replayed with the event read back from its original stream, at the sequence the
letter names, once that message is found to be the same event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.message import Message
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM, DLQ_SUBJECT_PREFIX, dlq_subject
from zhike_runtime.events.outbox import OutgoingEvent
from zhike_runtime.redaction import describe_error, redact_text

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


@dataclass(frozen=True)
class Skipped:
    """A letter a replay left parked, and why: a plain reason, never its payload or values."""

    sequence: int  # in the ZHIKE_DLQ stream
    event_id: str
    reason: str


@dataclass
class ReplayResult:
    replayed: int = 0
    skipped: list[Skipped] = field(default_factory=list)


class _NotReplayable(Exception):
    """One letter cannot be replayed; the message is the reason, free of values."""


async def replay(js: JetStreamContext, letters: Iterable[DeadLetter]) -> ReplayResult:
    """Republishes each letter to its original subject, then removes it from the dead letters.
    A letter that cannot be replayed is skipped, with its reason, and the run goes on: one bad
    letter (or a NATS error on one) must not leave the letters after it parked."""
    result = ReplayResult()
    streams: dict[str, str] = {}  # original subject -> its stream, looked up once per run
    for letter in letters:
        try:
            await _replay_one(js, letter, streams)
        except _NotReplayable as error:
            result.skipped.append(Skipped(letter.sequence, letter.event_id, str(error)))
        else:
            result.replayed += 1
    return result


async def _replay_one(js: JetStreamContext, letter: DeadLetter, streams: dict[str, str]) -> None:
    if not letter.original_subject or not letter.event_id:
        raise _NotReplayable("it lacks its original subject or event id")
    payload = letter.payload
    if h.PAYLOAD_OMITTED in letter.headers:
        # Replayed empty, the event would be lost for good: it is still in its stream.
        payload = await _payload_from_stream(js, letter, streams)
    headers = {k: v for k, v in letter.headers.items() if k not in _DLQ_ONLY}
    headers[h.MSG_ID] = f"{letter.event_id}:replay:{letter.sequence}"
    headers[h.EVENT_ID] = letter.event_id
    try:
        await js.publish(letter.original_subject, payload, headers=headers)
    except (NatsError, OSError) as error:
        raise _NotReplayable(f"republishing failed: {describe_error(error)}") from error
    try:
        await js.delete_msg(DLQ_STREAM, letter.sequence)
    except (NatsError, OSError) as error:
        # Replaying it again is harmless: JetStream drops the same replay id inside its
        # duplicate window, and every consumer's inbox absorbs the event id after it.
        raise _NotReplayable(
            f"republished, but not removed from {DLQ_STREAM}: {describe_error(error)}"
        ) from error


async def _payload_from_stream(
    js: JetStreamContext, letter: DeadLetter, streams: dict[str, str]
) -> bytes:
    """The event of a letter parked without its payload, read from its original stream at the
    sequence the letter names, provided the message there is that event."""
    named = letter.headers.get(h.ORIGINAL_SEQUENCE, "")
    if not (named.isascii() and named.isdecimal()) or int(named) < 1:
        raise _NotReplayable("parked without its payload, and without its event's stream sequence")
    sequence = int(named)
    subject = letter.original_subject
    try:
        if subject not in streams:
            streams[subject] = await js.find_stream_name_by_subject(subject)
        stream = streams[subject]
    except NotFoundError:
        raise _NotReplayable(
            f"parked without its payload, and no stream holds its subject {subject}"
        ) from None
    except (NatsError, OSError) as error:
        raise _NotReplayable(
            f"parked without its payload, and its stream could not be found: "
            f"{describe_error(error)}"
        ) from error
    try:
        original = await js.get_msg(stream, seq=sequence)
    except NotFoundError:
        raise _NotReplayable(
            f"parked without its payload, which is no longer in its stream {stream} at "
            f"sequence {sequence} (past the stream's age limit, or removed)"
        ) from None
    except (NatsError, OSError) as error:
        raise _NotReplayable(
            f"parked without its payload, and reading it from {stream} at sequence {sequence} "
            f"failed: {describe_error(error)}"
        ) from error
    found = dict(original.headers or {})
    # The event id as the consumer read it when it parked the letter.
    if (found.get(h.EVENT_ID) or found.get(h.MSG_ID)) != letter.event_id:
        raise _NotReplayable(
            f"parked without its payload, and sequence {sequence} of {stream} holds another event"
        )
    return original.data or b""
