"""The party directory against real identity and profile services (in-process, real gRPC
servers on SQLite, one real nats-server), with tokens from the tests' development issuer."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.timeofday_pb2 import TimeOfDay
from pydantic import SecretStr

from zhike.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, party_pb2
from zhike.profile.v1 import profile_pb2, profile_service_pb2, profile_service_pb2_grpc
from zhike.source.v1 import source_event_pb2
from zhike_identity.app import DEFINITION as IDENTITY
from zhike_notifications.domain.ports import DirectoryUnavailable
from zhike_notifications.domain.quiet_hours import QuietHours
from zhike_notifications.settings import NotificationsSettings
from zhike_notifications.transport.directory import (
    DirectoryConfigurationError,
    GrpcPartyDirectory,
    ServiceToken,
)
from zhike_profile.app import DEFINITION as PROFILE
from zhike_runtime.app import RunningService, ServiceDefinition
from zhike_runtime.ids import new_id
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    TEST_SETTINGS,
    answer_or_none,
    authorised_channel,
    dispatcher_token,
    eventually,
    running_service,
    wait_serving,
)

PHONE = "+8613671829305"
EMAIL = "liu.xiaoyan@qq.com"
DIRECTORY_LOGGER = "zhike_notifications.transport.directory"


@dataclass
class Services:
    identity: RunningService[Any]
    profile: RunningService[Any]
    identity_stack: AsyncExitStack

    @property
    def identity_address(self) -> str:
        return f"127.0.0.1:{self.identity.grpc_port}"

    @property
    def profile_address(self) -> str:
        return f"127.0.0.1:{self.profile.grpc_port}"

    def directory(self, token: ServiceToken) -> GrpcPartyDirectory:
        return GrpcPartyDirectory(
            self.identity_address, self.profile_address, token, timeout_seconds=5.0
        )

    async def stop_identity(self) -> None:
        await self.identity_stack.aclose()


async def serving(
    stack: AsyncExitStack,
    definition: ServiceDefinition[Any],
    database: Path,
    nats_server: NatsServer,
) -> RunningService[Any]:
    service = await stack.enter_async_context(
        running_service(
            definition, database_url=f"sqlite+aiosqlite:///{database}", nats_url=nats_server.url
        )
    )
    await wait_serving(service.grpc_port)
    return service


async def start_services(
    stack: AsyncExitStack, identity_nats: NatsServer, profile_nats: NatsServer, tmp_path: Path
) -> Services:
    """Identity, then the profile; the profile hears of identity's parties only when both
    use the same nats-server."""
    # Identity first (it owns the stream the profile follows); stopped last, unless a test
    # stops it itself.
    identity_stack = AsyncExitStack()
    stack.push_async_callback(identity_stack.aclose)
    identity = await serving(identity_stack, IDENTITY, tmp_path / "identity.db", identity_nats)
    # Notifications' own stream, as it declares it: the profile's consumer of it waits.
    client = await nats.connect(profile_nats.url)
    await client.jetstream().add_stream(
        name="ZHIKE_NOTIFICATIONS", subjects=["zhike.notifications.v1.>"]
    )
    await client.close()
    profile = await serving(stack, PROFILE, tmp_path / "profile.db", profile_nats)
    return Services(identity, profile, identity_stack)


@pytest.fixture
async def services(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Services]:
    async with AsyncExitStack() as stack:
        yield await start_services(stack, nats_server, nats_server, tmp_path)


@pytest.fixture
async def services_apart(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Services]:
    """The profile on a nats-server of its own: it never hears of identity's parties."""
    profile_nats = NatsServer(tmp_path / "profile-nats")
    profile_nats.start()
    try:
        async with AsyncExitStack() as stack:
            yield await start_services(stack, nats_server, profile_nats, tmp_path)
    finally:
        profile_nats.stop()


def dispatcher() -> ServiceToken:
    return ServiceToken(token=dispatcher_token())


async def link(services: Services, record_id: str) -> str:
    """A source record with a phone (as a branch typed it) and an e-mail; its party id."""
    async with authorised_channel(services.identity_address) as channel:
        response = await identity_service_pb2_grpc.IdentityServiceStub(channel).LinkSourceRecord(
            identity_service_pb2.LinkSourceRecordRequest(
                source_record=party_pb2.SourceRecord(
                    key=party_pb2.SourceRecordKey(source_system="core", source_record_id=record_id),
                    full_name="刘晓燕",
                    phone="136 7182 9305",
                    email=EMAIL,
                )
            ),
            timeout=5,
        )
    return str(response.party_id)


async def set_preferences(services: Services, record_id: str, party_id: str) -> None:
    """PreferenceChanged from the mobile app, ingested at the profile; waits until it shows."""
    event_time = Timestamp()
    event_time.FromDatetime(dt.datetime.now(dt.UTC))
    async with authorised_channel(services.profile_address) as channel:
        profile = profile_service_pb2_grpc.ProfileServiceStub(channel)
        await profile.IngestSourceEvents(
            profile_service_pb2.IngestSourceEventsRequest(
                events=[
                    source_event_pb2.SourceEvent(
                        source_record=party_pb2.SourceRecordKey(
                            source_system="core", source_record_id=record_id
                        ),
                        event_id=f"pref-{record_id}",
                        event_time=event_time,
                        sequence=1,
                        preference_changed=source_event_pb2.PreferenceChanged(
                            language="zh-CN",
                            time_zone="Asia/Shanghai",
                            quiet_hours_start=TimeOfDay(hours=22),
                            quiet_hours_end=TimeOfDay(hours=7, minutes=30),
                        ),
                    )
                ]
            ),
            timeout=5,
        )

    async def preferences_shown() -> bool:
        preferences = await profile_preferences(services, party_id)
        # Language and time zone have defaults (zh-CN, Asia/Shanghai) before any event:
        # only the quiet hours show that this PreferenceChanged applied.
        return preferences is not None and preferences.HasField("quiet_hours_start")

    await eventually(preferences_shown, timeout=20)


async def profile_preferences(services: Services, party_id: str) -> profile_pb2.Preferences | None:
    """The party's preferences as the profile answers them; None while it does not know him."""
    async with authorised_channel(services.profile_address) as channel:
        answer = await answer_or_none(
            profile_service_pb2_grpc.ProfileServiceStub(channel).GetProfile(
                profile_service_pb2.GetProfileRequest(
                    party_id=party_id, read_mask=FieldMask(paths=["preferences"])
                ),
                timeout=5,
            )
        )
    return None if answer is None else answer.profile.preferences


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == DIRECTORY_LOGGER and r.levelno >= logging.ERROR]


async def test_contact_has_the_e164_phone_the_email_and_the_profile_preferences(
    services: Services,
) -> None:
    party_id = await link(services, "A-1")
    await set_preferences(services, "A-1", party_id)

    async with services.directory(dispatcher()) as directory:
        contact = await directory.contact(party_id)

    assert contact is not None
    assert contact.party_id == party_id
    assert contact.phone == PHONE
    assert contact.email == EMAIL
    assert contact.language == "zh-CN"
    assert contact.time_zone == "Asia/Shanghai"
    assert contact.quiet_hours == QuietHours(dt.time(22, 0), dt.time(7, 30))
    # The profile has a preferred channel, no per-channel opt-out (that is consent).
    assert contact.opted_out_channels == frozenset()


async def test_a_party_the_profile_does_not_know_has_its_addresses_and_no_preferences(
    services_apart: Services,
) -> None:
    party_id = await link(services_apart, "B-1")

    async with services_apart.directory(dispatcher()) as directory:
        contact = await directory.contact(party_id)

    assert contact is not None
    assert (contact.phone, contact.email) == (PHONE, EMAIL)
    assert (contact.language, contact.time_zone, contact.quiet_hours) == ("", "", None)


async def test_a_party_without_stated_preferences_has_the_profiles_defaults_and_no_quiet_hours(
    services: Services,
) -> None:
    party_id = await link(services, "C-1")

    async def profile_knows_the_party() -> bool:
        return await profile_preferences(services, party_id) is not None

    await eventually(profile_knows_the_party, timeout=20)
    async with services.directory(dispatcher()) as directory:
        contact = await directory.contact(party_id)

    assert contact is not None
    assert (contact.phone, contact.email) == (PHONE, EMAIL)
    assert (contact.language, contact.time_zone, contact.quiet_hours) == (
        "zh-CN",
        "Asia/Shanghai",
        None,
    )


async def test_a_party_identity_does_not_know_has_no_contact(services: Services) -> None:
    async with services.directory(dispatcher()) as directory:
        assert await directory.contact(new_id()) is None


async def test_identity_stopped_makes_the_directory_unavailable(services: Services) -> None:
    party_id = await link(services, "C-1")
    await services.stop_identity()

    async with services.directory(dispatcher()) as directory:
        with pytest.raises(DirectoryUnavailable, match="identity answered UNAVAILABLE"):
            await directory.contact(party_id)


async def test_a_token_without_read_pii_is_refused_rather_than_returning_masked_addresses(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    party_id = await link(services, "D-1")
    # call_centre_agent reads parties and profiles, but only masked.
    masked_only = ServiceToken(token=dispatcher_token(roles=["call_centre_agent"]))

    with caplog.at_level(logging.ERROR, logger=DIRECTORY_LOGGER):
        async with services.directory(masked_only) as directory:
            for _ in range(2):
                with pytest.raises(DirectoryUnavailable, match="read_pii") as refused:
                    await directory.contact(party_id)
                assert "*" not in str(refused.value)

    [logged] = refusals(caplog)  # once, however many sends it holds up
    assert logged.__dict__["status_code"] == "MASKED_PERSONAL_DATA"
    assert "7182" not in logged.getMessage()
    assert "qq.com" not in logged.getMessage()


async def test_a_token_without_the_permission_is_logged_once_with_its_status_code(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    party_id = await link(services, "E-1")
    no_reads = ServiceToken(token=dispatcher_token(roles=["source_system"]))

    with caplog.at_level(logging.ERROR, logger=DIRECTORY_LOGGER):
        async with services.directory(no_reads) as directory:
            for _ in range(3):
                with pytest.raises(DirectoryUnavailable, match="PERMISSION_DENIED"):
                    await directory.contact(party_id)

    codes = sorted((r.__dict__["service"], r.__dict__["status_code"]) for r in refusals(caplog))
    assert codes == [("identity", "PERMISSION_DENIED"), ("profile", "PERMISSION_DENIED")]


async def test_a_rotated_token_file_is_used_from_the_next_call(
    services: Services, tmp_path: Path
) -> None:
    party_id = await link(services, "F-1")
    token_file = tmp_path / "token"
    token_file.write_text(dispatcher_token(roles=["source_system"]))

    async with services.directory(ServiceToken(path=token_file)) as directory:
        with pytest.raises(DirectoryUnavailable):
            await directory.contact(party_id)
        # As a Secret volume rotates: a new file swapped in under the same path.
        rotated = tmp_path / "token.new"
        rotated.write_text(dispatcher_token())
        os.replace(rotated, token_file)
        contact = await directory.contact(party_id)

    assert contact is not None
    assert contact.phone == PHONE


def test_no_token_configured_is_a_start_up_error_naming_the_settings() -> None:
    settings = NotificationsSettings(
        **(TEST_SETTINGS | {"service_token": SecretStr(""), "service_token_file": None})
    )

    with pytest.raises(DirectoryConfigurationError, match="ZHIKE_SERVICE_TOKEN_FILE"):
        GrpcPartyDirectory.from_settings(settings)


def test_an_empty_token_file_is_a_start_up_error(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    settings = NotificationsSettings(
        **(TEST_SETTINGS | {"service_token": SecretStr(""), "service_token_file": empty})
    )

    with pytest.raises(DirectoryConfigurationError, match="is empty"):
        GrpcPartyDirectory.from_settings(settings)
