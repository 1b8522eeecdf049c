"""IngestSourceEvents with the profile connected as its own NATS user (the allow-list of
zhike_runtime.events.nats_permissions, as in production): it tells an event sent again from
another event under a used event id, which takes reading back what ZHIKE_SOURCE holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest

from zhike.profile.v1 import profile_service_pb2 as pb
from zhike.profile.v1 import profile_service_pb2_grpc
from zhike_profile.app import DEFINITION as PROFILE
from zhike_runtime.testing.nats_users import PermissionedNats
from zhike_runtime.testing.services import authorised_channel, running_service, wait_serving

from ..source_facts import account_opened, balance_changed, source_event
from ..streams import declare_notifications_stream

if TYPE_CHECKING:
    from zhike.profile.v1.profile_service_pb2_grpc import ProfileServiceAsyncStub


async def test_a_resent_event_and_a_reused_event_id_are_told_apart_with_the_profiles_own_user(
    permissioned_nats: PermissionedNats, tmp_path: Path
) -> None:
    nats = permissioned_nats
    # The streams the profile's consumers wait for, each declared by its producer's user.
    identity = await nats.connect("identity")
    await identity.jetstream().add_stream(name="ZHIKE_IDENTITY", subjects=["zhike.identity.v1.>"])
    await identity.close()
    notifications = await nats.connect("notifications")
    await declare_notifications_stream(notifications)
    await notifications.close()
    batch = [
        source_event("core", "A-1", "e-1", 1, **account_opened("ACC-1", "USD")),
        source_event("core", "A-1", "e-2", 2, **balance_changed("ACC-1", "USD", 600000)),
    ]
    reused = source_event("core", "A-1", "e-2", 2, **balance_changed("ACC-1", "USD", 1))
    async with running_service(
        PROFILE,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'profile.db'}",
        nats_url=nats.url,
        nats_nkey_seed_file=nats.seed_files["profile"],
    ) as profile:
        await wait_serving(profile.grpc_port)
        async with authorised_channel(f"127.0.0.1:{profile.grpc_port}") as channel:
            api = cast(
                "ProfileServiceAsyncStub", profile_service_pb2_grpc.ProfileServiceStub(channel)
            )
            request = pb.IngestSourceEventsRequest(events=batch)
            await api.IngestSourceEvents(request, timeout=10)

            again = await api.IngestSourceEvents(request, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await api.IngestSourceEvents(
                    pb.IngestSourceEventsRequest(events=[reused]), timeout=10
                )

    assert [r.duplicate for r in again.receipts] == [True, True]
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Violation" not in nats.server.log_file.read_text(errors="replace")
