"""The unsubscribe link in a marketing e-mail still works once the service that sent it has been
restarted (a pod rescheduled, a rolling update), with no link key configured: the key is derived
from the blind-index key every replica holds, not made up by each process."""

from __future__ import annotations

from pathlib import Path

import httpx

from zhike.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, party_pb2
from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.local_gateways.store import stored_emails
from zhike_notifications.testing import every_day_working_calendar, midday_zone
from zhike_runtime.testing.processes import NatsServer, free_port
from zhike_runtime.testing.services import authorised_channel

from ..stack import notifications_stack

MARKETING_EMAIL = "offer_mortgage_refinance_email_v1"


async def test_a_link_sent_before_a_restart_unsubscribes_after_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    async with notifications_stack(
        nats_server,
        tmp_path,
        calendar_file=every_day_working_calendar(tmp_path / "calendar.yaml"),
        webhook_port=port,
        webhook_public_url=f"http://127.0.0.1:{port}",
        unsubscribe_link_key=None,
    ) as stack:
        record_id = "MAIL-1"
        async with authorised_channel(stack.address(stack.identity)) as channel:
            linked = await identity_service_pb2_grpc.IdentityServiceStub(channel).LinkSourceRecord(
                identity_service_pb2.LinkSourceRecordRequest(
                    source_record=party_pb2.SourceRecord(
                        key=party_pb2.SourceRecordKey(
                            source_system="core", source_record_id=record_id
                        ),
                        full_name="张伟",
                        email="zhang.wei.1988@163.com",
                    )
                ),
                timeout=10,
            )
        party_id = linked.party_id
        await stack.set_preferences(record_id, party_id, time_zone=midday_zone())
        await stack.give_consent(
            record_id, source_pb.CONTACT_CHANNEL_EMAIL, source_pb.CONTACT_PURPOSE_MARKETING
        )
        await stack.consent_arrives(party_id)
        sent = await stack.send(
            party_id,
            MARKETING_EMAIL,
            channel=model_pb.NOTIFICATION_CHANNEL_EMAIL,
            category=model_pb.NOTIFICATION_CATEGORY_MARKETING,
            key="mail-1",
        )
        await stack.status_becomes(sent.notification_id, model_pb.NOTIFICATION_STATUS_SENT)
        [mail] = stored_emails(stack.state_dir)
        link = str(mail["List-Unsubscribe"]).strip("<>")
        assert link.startswith(f"http://127.0.0.1:{port}/unsubscribe/")

        await stack.restart_notifications()

        async with httpx.AsyncClient() as client:
            answer = await client.post(
                link,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=10,
            )
        assert answer.status_code == 200
        assert "您已退订" in answer.text
