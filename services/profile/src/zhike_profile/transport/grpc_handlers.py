"""gRPC handlers: decode, call the use case, encode. Errors are mapped by the runtime."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeAlias
from zoneinfo import ZoneInfo

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import Error as JetStreamError

from zhike.profile.v1 import profile_pb2
from zhike.profile.v1 import profile_service_pb2 as pb
from zhike.profile.v1 import profile_service_pb2_grpc as pb_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.domain.model import SearchCriteria
from zhike_profile.domain.service import ProfileQueries
from zhike_profile.transport import codec
from zhike_profile.transport.source_codec import (
    decode_source_event,
    is_same_event,
    message_id,
    published,
    stream_headers,
    subject_for,
)
from zhike_runtime.auth.access import current_call
from zhike_runtime.errors import FailedPrecondition, Unavailable
from zhike_runtime.events.bus import PayloadTooLarge
from zhike_runtime.telemetry import inject_context
from zhike_runtime.validation import Violations

Context: TypeAlias = "grpc.aio.ServicerContext[object, object]"
MAX_EVENTS_PER_CALL = 500
PUBLISH_ERRORS = (NatsError, JetStreamError, OSError, TimeoutError, PayloadTooLarge)


class Publisher(Protocol):
    """Publishes to JetStream and returns its ack, and reads a stream back
    (zhike_runtime.events.bus.EventBus)."""

    def publish(
        self, subject: str, payload: bytes, *, headers: dict[str, str], timeout: float | None = None
    ) -> Awaitable[PubAck]: ...

    @property
    def js(self) -> JetStreamContext: ...


def _read_mask(v: Violations, mask: FieldMask) -> FieldMask | None:
    """The mask, with every path checked against Profile; None for "all fields"."""
    if not mask.paths:
        return None
    for index, path in enumerate(mask.paths):
        if not FieldMask(paths=[path]).IsValidForDescriptor(profile_pb2.Profile.DESCRIPTOR):
            v.add(f"read_mask.paths[{index}]", f"unknown field path {path!r} of Profile")
    return mask


def _applied(mask: FieldMask | None, full: profile_pb2.Profile) -> profile_pb2.Profile:
    if mask is None:
        return full
    masked = profile_pb2.Profile()
    mask.MergeMessage(full, masked)
    return masked


class ProfileHandlers(pb_grpc.ProfileServiceServicer):
    def __init__(
        self,
        queries: ProfileQueries,
        publisher: Publisher,
        *,
        zone: ZoneInfo,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        publish_timeout_seconds: float = 5.0,
    ) -> None:
        self._queries = queries
        self._publisher = publisher
        self._zone = zone  # the bank's: a source event's dates are measured from its day there
        self._now = now
        self._publish_timeout = publish_timeout_seconds

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: Context
    ) -> pb.GetProfileResponse:
        v = Violations()
        by_key = request.HasField("source_record")
        if by_key and request.party_id:
            v.add("source_record", "set party_id or source_record, not both")
        source = None
        if by_key:
            key = request.source_record
            v.token("source_record.source_system", key.source_system)
            v.text(
                "source_record.source_record_id",
                key.source_record_id,
                required=True,
                max_length=128,
            )
            source = codec.domain_key(key)
        mask = _read_mask(v, request.read_mask)
        v.raise_if_any()
        needs_facts = mask is None or any(
            path.split(".")[0] in codec.FACT_FIELDS for path in mask.paths
        )
        view = await self._queries.get_profile(request.party_id, source, with_facts=needs_facts)
        call = current_call()
        call.about_party(view.profile.party_id)
        full = codec.profile_message(view, unmasked=call.unmasked)
        return pb.GetProfileResponse(profile=_applied(mask, full))

    async def ListHoldings(
        self, request: pb.ListHoldingsRequest, context: Context
    ) -> pb.ListHoldingsResponse:
        view = await self._queries.get_profile(request.party_id)
        call = current_call()
        call.about_party(view.profile.party_id)
        assert view.facts is not None  # asked with facts
        holdings = [
            codec.holding_message(holding, unmasked=call.unmasked)
            for holding in view.facts.holdings
            if request.include_closed or holding.is_open
        ]
        return pb.ListHoldingsResponse(party_id=view.profile.party_id, holdings=holdings)

    async def ListInteractions(
        self, request: pb.ListInteractionsRequest, context: Context
    ) -> pb.ListInteractionsResponse:
        page = await self._queries.list_interactions(
            request.party_id, request.page_size, request.page_token
        )
        current_call().about_party(page.party_id)
        return pb.ListInteractionsResponse(
            party_id=page.party_id,
            interactions=[codec.interaction_message(i) for i in page.interactions],
            next_page_token=page.next_page_token,
        )

    async def SearchProfiles(
        self, request: pb.SearchProfilesRequest, context: Context
    ) -> pb.SearchProfilesResponse:
        criteria = SearchCriteria(
            tier=request.tier,
            segment=request.segment,
            value_band=request.value_band,
            min_total_assets_cny_minor=(
                request.min_total_assets_minor_units
                if request.HasField("min_total_assets_minor_units")
                else None
            ),
            max_total_assets_cny_minor=(
                request.max_total_assets_minor_units
                if request.HasField("max_total_assets_minor_units")
                else None
            ),
        )
        page = await self._queries.search(criteria, request.page_size, request.page_token)
        return pb.SearchProfilesResponse(
            profiles=[codec.summary_message(row) for row in page.profiles],
            next_page_token=page.next_page_token,
        )

    async def IngestSourceEvents(
        self, request: pb.IngestSourceEventsRequest, context: Context
    ) -> pb.IngestSourceEventsResponse:
        """Validates the whole batch first (one bad event refuses it all, naming the field),
        then publishes every event and answers once JetStream has stored each one.

        An event id already used for another event is refused after publishing, as only then
        does JetStream say it holds the id: the other events of the batch are stored, as when
        the stream fails halfway, and a resent batch gets them back as duplicates."""
        v = Violations()
        events: Sequence[source_pb.SourceEvent] = request.events
        cleaned = [published(message) for message in events]
        if not events:
            v.add("events", "send at least one event")
        elif len(events) > MAX_EVENTS_PER_CALL:
            v.add("events", f"at most {MAX_EVENTS_PER_CALL} events per call, got {len(events)}")
        else:
            now = self._now()
            seen: dict[str, int] = {}
            for index, message in enumerate(events):
                decoded = decode_source_event(v, f"events[{index}]", message, now, self._zone)
                if decoded is None:
                    continue
                key = message_id(decoded.source.source_system, decoded.event_id)
                if key in seen and cleaned[seen[key]] != cleaned[index]:
                    v.add(
                        f"events[{index}].event_id",
                        f"repeats events[{seen[key]}].event_id with another event",
                    )
                seen.setdefault(key, index)
        v.raise_if_any()
        acks = await asyncio.gather(*(self._publish(message) for message in cleaned))
        duplicates = [index for index, ack in enumerate(acks) if ack.duplicate]
        another = await asyncio.gather(
            *(self._holds_another(cleaned[index], acks[index]) for index in duplicates)
        )
        reused = [
            f"events[{i}].event_id" for i, held in zip(duplicates, another, strict=True) if held
        ]
        if reused:
            also = f"; so were {', '.join(reused[1:])}" if reused[1:] else ""
            raise FailedPrecondition(
                f"already used for another event, which is kept: this one was not stored "
                f"(send it with a new event id){also}",
                reused[0],
            )
        return pb.IngestSourceEventsResponse(
            receipts=[
                pb.IngestReceipt(event_id=message.event_id, duplicate=bool(ack.duplicate))
                for message, ack in zip(events, acks, strict=True)
            ]
        )

    async def _publish(self, message: source_pb.SourceEvent) -> PubAck:
        headers: dict[str, str] = {}
        inject_context(headers)
        headers |= stream_headers(message)
        try:
            return await self._publisher.publish(
                subject_for(message.source_record.source_system),
                message.SerializeToString(),
                headers=headers,
                timeout=self._publish_timeout,
            )
        except PUBLISH_ERRORS as error:
            # Not stored: the caller retries the batch (idempotent per event id).
            raise Unavailable("the source event stream is unavailable") from error

    async def _holds_another(self, message: source_pb.SourceEvent, ack: PubAck) -> bool:
        """Whether the event JetStream dropped as a duplicate differs from the one it holds
        under that key. A duplicate's ack carries the sequence of the event held (the stream
        has no limit that would remove it before the duplicate window ends)."""
        try:
            held = await self._publisher.js.get_msg(ack.stream, seq=ack.seq)
        except PUBLISH_ERRORS as error:
            # Not known to be the same event: not answered as stored. Once the duplicate
            # window has passed, a resend is stored, and the consumer's inbox applies it once.
            raise Unavailable("the source event stream is unavailable") from error
        return not is_same_event(held.data or b"", message)

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ProfileServiceServicer_to_server(self, server)
