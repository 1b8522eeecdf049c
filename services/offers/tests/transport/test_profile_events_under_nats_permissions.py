"""S9 for offers: the NATS allow-list is enough to run on. The offers service connects with its
own NKey to a nats-server that knows only the allow-list's users; the profile's user declares
ZHIKE_PROFILE and publishes a ProfileChanged, offers consumes it (durable `offers-profile`) and
publishes OfferDecided on its own stream ZHIKE_OFFERS, and a malformed ProfileChanged is parked on
`zhike.dlq.offers-profile`; the notifications user declares ZHIKE_NOTIFICATIONS and a malformed
NotificationSent is parked on `zhike.dlq.offers-notifications` (durable `offers-notifications`).
The server logs no permissions violation on the way."""

from __future__ import annotations

import uuid
from pathlib import Path

from zhike.notifications.v1 import events_pb2 as notification_events
from zhike.offers.v1 import events_pb2 as offers_events
from zhike_offers.app import DEFINITION, STREAM
from zhike_offers.transport.event_handlers import (
    NOTIFICATIONS_STREAM,
    PROFILE_STREAM,
    PROFILE_SUBJECTS,
)
from zhike_runtime.events import headers as h
from zhike_runtime.ids import new_id
from zhike_runtime.testing.nats_users import OBSERVER, PermissionedNats
from zhike_runtime.testing.services import eventually, running_service, wait_serving

from ..profile_events import changed, risk, sms_marketing, usd


async def test_offers_follows_the_profile_with_only_its_own_nats_permissions(
    permissioned_nats: PermissionedNats, tmp_path: Path
) -> None:
    nats = permissioned_nats
    profile = await nats.connect("profile")
    notifications = await nats.connect("notifications")
    observer = await nats.connect(OBSERVER)
    try:
        profile_js = profile.jetstream()
        await profile_js.add_stream(name=PROFILE_STREAM, subjects=list(PROFILE_SUBJECTS))
        notifications_js = notifications.jetstream()
        await notifications_js.add_stream(
            name=NOTIFICATIONS_STREAM, subjects=["zhike.notifications.v1.>"]
        )
        async with running_service(
            DEFINITION,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'offers.db'}",
            nats_url=nats.url,
            nats_nkey_seed_file=nats.seed_files["offers"],
        ) as offers:
            await wait_serving(offers.grpc_port)
            party_id = str(uuid.uuid4())
            for message in (
                changed(party_id, 1, sms_marketing(), risk(3), usd(6000)),
                changed("not-a-party", 1, usd(6000)),
            ):
                event_id = new_id()
                await profile_js.publish(
                    "zhike.profile.v1.profile_changed",
                    message.SerializeToString(),
                    headers={
                        h.MSG_ID: event_id,
                        h.EVENT_ID: event_id,
                        h.EVENT_TYPE: message.DESCRIPTOR.full_name,
                        h.CONTENT_TYPE: h.PROTOBUF,
                    },
                )
            observed = observer.jetstream()

            async def decided_and_parked() -> bool:
                offered = await observed.stream_info(STREAM.name)
                parked = await observed.stream_info("ZHIKE_DLQ")
                return offered.state.messages == 1 and parked.state.messages == 1

            await eventually(decided_and_parked, timeout=15)
            malformed = notification_events.NotificationSent(notification_id="", party_id=party_id)
            event_id = new_id()
            await notifications_js.publish(
                "zhike.notifications.v1.notification_sent",
                malformed.SerializeToString(),
                headers={
                    h.MSG_ID: event_id,
                    h.EVENT_ID: event_id,
                    h.EVENT_TYPE: malformed.DESCRIPTOR.full_name,
                    h.CONTENT_TYPE: h.PROTOBUF,
                },
            )

            async def both_parked() -> bool:
                parked = await observed.stream_info("ZHIKE_DLQ")
                return parked.state.messages == 2

            await eventually(both_parked, timeout=15)
            stored = await observed.get_msg(STREAM.name, seq=1)
            assert stored.subject == "zhike.offers.v1.offer_decided"
            assert stored.data is not None
            decided = offers_events.OfferDecided.FromString(stored.data)
            assert (decided.party_id, decided.offer_id) == (party_id, "usd_fx_wealth")
            letter = await observed.get_msg("ZHIKE_DLQ", seq=1)
            assert letter.subject == "zhike.dlq.offers-profile"
            letter = await observed.get_msg("ZHIKE_DLQ", seq=2)
            assert letter.subject == "zhike.dlq.offers-notifications"
    finally:
        await profile.close()
        await notifications.close()
        await observer.close()

    log = nats.server.log_file.read_text(errors="replace")
    assert "Violation" not in log
