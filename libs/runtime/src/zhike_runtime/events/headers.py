"""Message header names, shared by producers, consumers and the dead-letter stream."""

from __future__ import annotations

MSG_ID = "Nats-Msg-Id"  # JetStream de-duplication key = the event id
EVENT_ID = "Zhike-Event-Id"  # the event id again, kept when a message is re-published elsewhere
EVENT_TYPE = (
    "Zhike-Event-Type"  # full protobuf name of the payload, e.g. zhike.identity.v1.PartyCreated
)
CONTENT_TYPE = "Content-Type"
PROTOBUF = "application/x-protobuf"
OCCURRED_AT = "Zhike-Occurred-At"
ORIGINAL_SUBJECT = "Zhike-Original-Subject"
LAST_ERROR = "Zhike-Last-Error"
CONSUMER = "Zhike-Consumer"
DELIVERIES = "Zhike-Deliveries"
# On a dead letter whose event was too large to park with the letter's own headers: the
# payload's size, and where it still is (its sequence in the original stream).
PAYLOAD_OMITTED = "Zhike-Payload-Omitted"
ORIGINAL_SEQUENCE = "Zhike-Original-Sequence"
