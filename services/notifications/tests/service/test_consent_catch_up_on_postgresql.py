"""A consent that lands while a dispatch is deciding, on PostgreSQL, where the profile's consumer
commits beside the dispatcher (READ COMMITTED: each statement sees what was committed before
it): the offer decided on that consent's profile version is waited for and sent, never refused.

The consent is made to land at the worst moment: right after the dispatch has read the party's
consents, before it judges whether they are behind the decision.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike_notifications.domain.ports import HeldConsents
from zhike_notifications.storage.repository import SqlConsentStore
from zhike_notifications.testing import every_day_working_calendar, midday_zone
from zhike_runtime.testing.processes import NatsServer, PostgresCluster
from zhike_runtime.testing.services import eventually

from ..flows import consent_on_profile_stream, link_person, offer_taken
from ..stack import Stack, notifications_stack

ENDED = (
    model_pb.NOTIFICATION_STATUS_SENT,
    model_pb.NOTIFICATION_STATUS_SUPPRESSED,
    model_pb.NOTIFICATION_STATUS_FAILED,
)
DECIDED_ON = 1000  # the profile version offers decided on (above the profile's own, for now)


async def test_a_consent_committed_right_after_the_dispatch_read_consents_is_waited_for_and_sent(
    nats_server: NatsServer,
    tmp_path: Path,
    postgres_cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with notifications_stack(
        nats_server,
        tmp_path,
        database_url=postgres_cluster.create_database(),
        calendar_file=every_day_working_calendar(tmp_path / "calendar.yaml"),
    ) as stack:
        party_id = await link_person(stack, "RACE-1", number=911)
        await stack.set_preferences("RACE-1", party_id, time_zone=midday_zone())
        read = SqlConsentStore.held
        first_read: list[HeldConsents] = []

        async def consent_lands_after_the_read(store: SqlConsentStore, asked: str) -> HeldConsents:
            held = await read(store, asked)
            if asked == party_id and not first_read:
                first_read.append(held)
                # The profile's consumer applies the consent and its version, and commits,
                # while this dispatch's transaction is still open.
                await consent_on_profile_stream(stack, party_id, DECIDED_ON)
                await stack.consent_arrives(party_id)
            return held

        monkeypatch.setattr(SqlConsentStore, "held", consent_lands_after_the_read)
        decision_id = f"d-{uuid.uuid4().hex}"

        await offer_taken(stack, party_id, decision_id, profile_version=DECIDED_ON)
        ended = await ended_as(stack, f"offer-{decision_id}")

        [before] = first_read
        assert before.entries == ()
        assert before.profile_version < DECIDED_ON
        assert model_pb.NotificationStatus.Name(ended.status) == "NOTIFICATION_STATUS_SENT"
        assert [sms["out_id"] for sms in stack.sms()] == [ended.notification_id]


async def ended_as(stack: Stack, notification_id: str) -> model_pb.Notification:
    """The notification once it is sent, suppressed or failed."""

    async def ended() -> bool:
        return (await stack.notification(notification_id)).status in ENDED

    await eventually(ended, timeout=20)
    return await stack.notification(notification_id)
