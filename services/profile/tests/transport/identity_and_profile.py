"""Identity and the profile in-process on one real nats-server, with a gRPC stub for each."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

from zhike.identity.v1 import identity_service_pb2_grpc
from zhike.profile.v1 import profile_service_pb2_grpc
from zhike_identity.app import DEFINITION as IDENTITY
from zhike_identity.settings import IdentitySettings
from zhike_profile.app import DEFINITION as PROFILE
from zhike_profile.settings import ProfileSettings
from zhike_runtime.app import RunningService
from zhike_runtime.testing.services import authorised_channel, running_service, wait_serving

from ..streams import declare_notifications_stream_at

if TYPE_CHECKING:
    from zhike.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub
    from zhike.profile.v1.profile_service_pb2_grpc import ProfileServiceAsyncStub


@dataclasses.dataclass(frozen=True)
class Stack:
    identity_service: RunningService[IdentitySettings]
    profile_service: RunningService[ProfileSettings]
    identity: IdentityServiceAsyncStub
    profile: ProfileServiceAsyncStub


@asynccontextmanager
async def identity_and_profile(nats_url: str, directory: Path) -> AsyncIterator[Stack]:
    # Identity first: it owns the ZHIKE_IDENTITY stream the profile consumer binds to.
    async with running_service(
        IDENTITY,
        database_url=f"sqlite+aiosqlite:///{directory / 'identity.db'}",
        nats_url=nats_url,
    ) as identity:
        await wait_serving(identity.grpc_port)
        # Notifications' stream, as notifications declares it (the profile's consumer waits).
        await declare_notifications_stream_at(nats_url)
        async with running_service(
            PROFILE,
            database_url=f"sqlite+aiosqlite:///{directory / 'profile.db'}",
            nats_url=nats_url,
        ) as profile:
            await wait_serving(profile.grpc_port)
            async with (
                authorised_channel(f"127.0.0.1:{identity.grpc_port}") as identity_channel,
                authorised_channel(f"127.0.0.1:{profile.grpc_port}") as profile_channel,
            ):
                yield Stack(
                    identity,
                    profile,
                    cast(
                        "IdentityServiceAsyncStub",
                        identity_service_pb2_grpc.IdentityServiceStub(identity_channel),
                    ),
                    cast(
                        "ProfileServiceAsyncStub",
                        profile_service_pb2_grpc.ProfileServiceStub(profile_channel),
                    ),
                )
