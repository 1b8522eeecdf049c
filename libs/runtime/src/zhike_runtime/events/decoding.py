"""Reading an incoming event's fields: a field that can never be applied is a
`PermanentEventError` naming the event and the field ("OfferDecided.decide_time is missing"),
so the consumer dead-letters it at once instead of retrying it. Values are never quoted."""

from __future__ import annotations

import datetime as dt
import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from zhike_runtime.events.consumer import PermanentEventError


def malformed(event: str, field: str, why: str) -> PermanentEventError:
    return PermanentEventError(f"{event}.{field} {why}")


# Times in the last year protobuf can hold overflow when a consumer puts them in a zone east of
# UTC (the bank's day, a customer's): refused as impossible rather than failing on every delivery.
LAST_POSSIBLE_YEAR = 9998


def event_time(stamp: Timestamp, event: str, field: str) -> dt.datetime:
    """The time, in UTC; an unset (zero) or impossible one is malformed."""
    if not stamp.seconds and not stamp.nanos:
        raise malformed(event, field, "is missing")
    try:
        at = stamp.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise malformed(event, field, "is not a possible time") from None
    if at.year > LAST_POSSIBLE_YEAR:
        raise malformed(event, field, "is not a possible time")
    return at


# How far ahead of this replica's clock a producer's time may be: clocks differ a little, and
# a time further ahead would stay the newest for good wherever the newest wins (a consent, a
# golden record's name).
CLOCK_AHEAD = dt.timedelta(days=1)


def recent_event_time(stamp: Timestamp, event: str, field: str) -> dt.datetime:
    """`event_time`, and at most `CLOCK_AHEAD` after this replica's clock."""
    at = event_time(stamp, event, field)
    if at > dt.datetime.now(dt.UTC) + CLOCK_AHEAD:
        raise malformed(event, field, "is more than a day in the future")
    return at


def platform_id(value: str, event: str, field: str, what: str) -> str:
    """An id this platform issues (a canonical lower-case UUID); `what` names it in the error
    ("a party id")."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise malformed(event, field, f"is not {what}") from None
    if str(parsed) != value:
        raise malformed(event, field, f"is not {what}")
    return value
