"""S9, the other half: the NATS allow-list is enough to run on. Identity and profile, in-process,
each connect with its own NKey to a nats-server that knows only the allow-list's users; identity's
outbox publishes a party's events, the profile consumes them, a source adapter (user
source-adapter) publishes a balance that the profile applies and tells in a ProfileChanged on its
own stream, a malformed event goes to the dead-letter stream, and `zhike dlq` (user dlq-admin)
lists and replays it. The server logs no permissions violation on the way."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import pytest

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc, party_pb2
from zhike.identity.v1.events_pb2 import PartyCreated
from zhike.profile.v1 import profile_service_pb2, profile_service_pb2_grpc
from zhike_identity.app import DEFINITION as IDENTITY
from zhike_identity.transport.codec import PARTY_CREATED_SUBJECT
from zhike_profile.app import DEFINITION as PROFILE
from zhike_runtime import cli
from zhike_runtime.events import headers as h
from zhike_runtime.testing.nats_users import OBSERVER, PermissionedNats
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    running_service,
    wait_serving,
)

from ..source_facts import account_opened, balance_changed, publish, source_event
from ..streams import declare_notifications_stream

if TYPE_CHECKING:
    from zhike.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub
    from zhike.profile.v1.profile_service_pb2_grpc import ProfileServiceAsyncStub


async def zhike(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Runs the `zhike` command (it runs its own event loop, so in a thread); returns stdout."""
    code = await asyncio.to_thread(cli.main, list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


async def test_profile_follows_identity_each_with_only_its_own_nats_permissions(
    permissioned_nats: PermissionedNats, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nats = permissioned_nats
    async with running_service(
        IDENTITY,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}",
        nats_url=nats.url,
        nats_nkey_seed_file=nats.seed_files["identity"],
    ) as identity:
        await wait_serving(identity.grpc_port)
        # Notifications' stream, declared by notifications' own user as notifications does.
        producer = await nats.connect("notifications")
        await declare_notifications_stream(producer)
        await producer.close()
        async with running_service(
            PROFILE,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'profile.db'}",
            nats_url=nats.url,
            nats_nkey_seed_file=nats.seed_files["profile"],
        ) as profile:
            await wait_serving(profile.grpc_port)
            async with (
                authorised_channel(f"127.0.0.1:{identity.grpc_port}") as identity_channel,
                authorised_channel(f"127.0.0.1:{profile.grpc_port}") as profile_channel,
            ):
                identity_api = cast(
                    "IdentityServiceAsyncStub",
                    identity_service_pb2_grpc.IdentityServiceStub(identity_channel),
                )
                profile_api = cast(
                    "ProfileServiceAsyncStub",
                    profile_service_pb2_grpc.ProfileServiceStub(profile_channel),
                )
                linked = await identity_api.LinkSourceRecord(
                    pb.LinkSourceRecordRequest(
                        source_record=party_pb2.SourceRecord(
                            key=party_pb2.SourceRecordKey(
                                source_system="core", source_record_id="A-1"
                            ),
                            full_name="刘晓燕",
                            phone="13671829305",
                        )
                    ),
                    timeout=5,
                )

                async def profile_shows_the_party() -> bool:
                    try:
                        await profile_api.GetProfile(
                            profile_service_pb2.GetProfileRequest(party_id=linked.party_id),
                            timeout=2,
                        )
                    except grpc.aio.AioRpcError as error:
                        if error.code() == grpc.StatusCode.NOT_FOUND:
                            return False
                        raise
                    return True

                await eventually(profile_shows_the_party, timeout=15)

                adapter = await nats.connect("source-adapter")
                for event in (
                    source_event("core", "A-1", "e-1", 1, **account_opened("ACC-1", "USD")),
                    source_event(
                        "core", "A-1", "e-2", 2, **balance_changed("ACC-1", "USD", 600000)
                    ),
                ):
                    await publish(adapter.jetstream(), event)
                await adapter.close()

                async def profile_shows_the_usd() -> bool:
                    response = await profile_api.GetProfile(
                        profile_service_pb2.GetProfileRequest(party_id=linked.party_id),
                        timeout=2,
                    )
                    balances = {
                        b.currency_code: b.assets_minor_units for b in response.profile.balances
                    }
                    return balances.get("USD") == 600000

                await eventually(profile_shows_the_usd, timeout=15)
                observer = await nats.connect(OBSERVER)
                changes = await observer.jetstream().stream_info("ZHIKE_PROFILE")
                await observer.close()
                assert changes.state.messages >= 1  # ProfileChanged, on the profile's stream

            # A producer bug: a party_created that is not one, on identity's own subject with
            # identity's own credentials. The profile parks it under its durable's DLQ subject.
            producer = await nats.connect("identity")
            await producer.jetstream().publish(
                PARTY_CREATED_SUBJECT,
                b"\x0a\xff",  # a truncated field: not a PartyCreated
                headers={
                    h.MSG_ID: "bad-event-1",
                    h.EVENT_ID: "bad-event-1",
                    h.EVENT_TYPE: PartyCreated.DESCRIPTOR.full_name,
                },
            )
            await producer.close()

            admin = [
                "--nats",
                nats.url,
                "--nkey-seed",
                str(nats.seed_files["dlq-admin"]),
                "--consumer",
                "profile-identity",
            ]

            async def dead_letters() -> list[str]:
                listing = await zhike(capsys, "dlq", "list", *admin)
                return [line for line in listing.splitlines() if "\tbad-event-1\t" in line]

            async def parked() -> bool:
                return len(await dead_letters()) == 1

            await eventually(parked, timeout=15)
            (consumer,) = [c for c in profile.consumers if c.spec.durable == "profile-identity"]

            # Counted once its publish is acknowledged, which may come after it is listed.
            async def counted() -> bool:
                return consumer.dead_lettered == 1

            await eventually(counted, timeout=5)

            # Replayed to identity's subject by dlq-admin: the profile gets it again (and, as it
            # is still malformed, dead-letters it again).
            replayed = await zhike(capsys, "dlq", "replay", *admin)
            assert replayed == "replayed 1 dead letter(s) of profile-identity\n"

            async def consumed_again() -> bool:
                return consumer.dead_lettered == 2

            await eventually(consumed_again, timeout=15)

    log = nats.server.log_file.read_text(errors="replace")
    assert "Violation" not in log
