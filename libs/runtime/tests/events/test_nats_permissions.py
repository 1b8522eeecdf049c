"""S9: with the allow-list of events/nats_permissions.py on a real nats-server, each service's
credentials reach only what its list names. Outside it, a publish or a subscription gets a
permissions violation (reported to the client and logged by the server) and 0 messages pass;
a connection without credentials, or with a key the server does not know, is refused.

That the lists are also sufficient is shown by identity and profile running on such a server:
services/profile/tests/transport/test_follows_identity_under_nats_permissions.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from zhike_runtime import cli
from zhike_runtime.events import headers as h
from zhike_runtime.events.nats_permissions import (
    DLQ_ADMIN,
    SOURCE_ADAPTER,
    allow_list,
    chart_values,
    new_seed,
    public_key,
    server_authorization,
    server_config,
    users,
)
from zhike_runtime.testing.nats_users import OBSERVER, PermissionedNats
from zhike_runtime.testing.processes import NatsServer

SERVICES = ("identity", "profile", "offers", "notifications")


@dataclass
class UserConnection:
    """A connection as one user, keeping what the server said went wrong."""

    connection: Client
    errors: list[str] = field(default_factory=list)


Connect = Callable[[str], Awaitable[UserConnection]]


@pytest.fixture
async def connect(permissioned_nats: PermissionedNats) -> AsyncIterator[Connect]:
    opened: list[Client] = []

    async def open_as(user: str) -> UserConnection:
        errors: list[str] = []

        async def remember(error: Exception) -> None:
            errors.append(str(error))

        connection = await permissioned_nats.connect(user, error_cb=remember)
        opened.append(connection)
        return UserConnection(connection, errors)

    yield open_as
    for connection in opened:
        await connection.close()


async def received_on(observer: Client, subject: str) -> list[Msg]:
    received: list[Msg] = []

    async def keep(message: Msg) -> None:
        received.append(message)

    await observer.subscribe(subject, cb=keep)
    await observer.flush()
    return received


def violations_logged(server: NatsServer, kind: str, subject: str) -> int:
    text = server.log_file.read_text(errors="replace")
    return text.count(f'{kind} Violation - Subject "{subject}"')


# Outside each list: forging another producer's events, reaching another service's consumer,
# parking letters under another durable, and JetStream calls no service makes.
FORBIDDEN_PUBLISHES = [
    ("notifications", "zhike.identity.v1.party_created"),
    ("offers", "zhike.identity.v1.party_created"),
    ("profile", "zhike.identity.v1.parties_merged"),
    ("identity", "zhike.dlq.profile-identity"),
    ("offers", "$JS.API.CONSUMER.MSG.NEXT.ZHIKE_IDENTITY.profile-identity"),
    ("offers", "$JS.ACK.ZHIKE_IDENTITY.profile-identity.1.1.1.1.1"),
    ("profile", "$JS.API.STREAM.DELETE.ZHIKE_IDENTITY"),
    ("notifications", "$JS.API.STREAM.PURGE.ZHIKE_DLQ"),
    ("identity", "$JS.API.STREAM.MSG.GET.ZHIKE_DLQ"),
    (DLQ_ADMIN, "zhike.dlq.profile-identity"),
    # It reads an event back from its stream for a replay, and may remove only dead letters.
    (DLQ_ADMIN, "$JS.API.STREAM.MSG.DELETE.ZHIKE_IDENTITY"),
    (DLQ_ADMIN, "$JS.API.STREAM.PURGE.ZHIKE_SOURCE"),
    # The source adapters feed the profile's source stream and nothing else.
    ("offers", "zhike.source.v1.core_deposits"),
    (SOURCE_ADAPTER, "zhike.identity.v1.party_created"),
    (SOURCE_ADAPTER, "zhike.profile.v1.profile_changed"),
    (SOURCE_ADAPTER, "$JS.API.STREAM.DELETE.ZHIKE_SOURCE"),
    (SOURCE_ADAPTER, "$JS.API.CONSUMER.MSG.NEXT.ZHIKE_SOURCE.profile-source"),
]


@pytest.mark.parametrize(("user", "subject"), FORBIDDEN_PUBLISHES)
async def test_a_publish_outside_the_allow_list_is_a_violation_and_delivers_nothing(
    permissioned_nats: PermissionedNats, connect: Connect, user: str, subject: str
) -> None:
    observer = (await connect(OBSERVER)).connection
    delivered = await received_on(observer, subject)
    client = await connect(user)

    await client.connection.publish(subject, b"forged")
    await client.connection.flush()
    await asyncio.sleep(0.3)

    assert delivered == []
    # nats-py lower-cases the server's message
    assert client.errors == [f'nats: permissions violation for publish to "{subject.lower()}"']
    assert violations_logged(permissioned_nats.server, "Publish", subject) == 1


# Raw events of another service, everything, another user's inbox (where the events it pulls
# arrive), other durables' acks, advisories, and the dead letters of others.
FORBIDDEN_SUBSCRIPTIONS = [
    ("offers", "zhike.identity.v1.>", "zhike.identity.v1.party_created"),
    ("notifications", "zhike.>", "zhike.identity.v1.party_created"),
    ("notifications", "zhike.profile.v1.>", "zhike.profile.v1.profile_changed"),
    ("profile", "zhike.identity.v1.>", "zhike.identity.v1.party_created"),
    ("offers", "_INBOX.>", "_INBOX.profile.abc"),
    ("offers", "_INBOX.profile.>", "_INBOX.profile.abc"),
    ("identity", "$JS.ACK.>", "$JS.ACK.ZHIKE_IDENTITY.profile-identity.1.1.1.1.1"),
    ("notifications", "$JS.EVENT.>", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.X.Y"),
    ("profile", "zhike.dlq.>", "zhike.dlq.offers-profile"),
    (DLQ_ADMIN, "zhike.identity.v1.>", "zhike.identity.v1.party_created"),
    (SOURCE_ADAPTER, "zhike.source.v1.>", "zhike.source.v1.cards"),
    (SOURCE_ADAPTER, "_INBOX.profile.>", "_INBOX.profile.abc"),
]


@pytest.mark.parametrize(("user", "pattern", "subject"), FORBIDDEN_SUBSCRIPTIONS)
async def test_a_subscription_outside_the_allow_list_is_a_violation_and_receives_nothing(
    permissioned_nats: PermissionedNats, connect: Connect, user: str, pattern: str, subject: str
) -> None:
    client = await connect(user)
    received = await received_on(client.connection, pattern)
    observer = (await connect(OBSERVER)).connection
    seen_by_observer = await received_on(observer, subject)

    await observer.publish(subject, b"an event")
    await observer.flush()
    await asyncio.sleep(0.3)

    assert len(seen_by_observer) == 1  # it was sent...
    assert received == []  # ...and did not reach the user
    assert client.errors == [f'nats: permissions violation for subscription to "{pattern.lower()}"']
    assert violations_logged(permissioned_nats.server, "Subscription", pattern) == 1


async def test_a_connection_without_credentials_is_refused(
    permissioned_nats: PermissionedNats,
) -> None:
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(permissioned_nats.url, connect_timeout=2, allow_reconnect=False)


async def test_a_key_the_server_does_not_know_is_refused(
    permissioned_nats: PermissionedNats,
) -> None:
    stranger = permissioned_nats.seed_files[OBSERVER].with_name("stranger.nk")
    stranger.write_text(new_seed())
    with pytest.raises(NatsError, match="Authorization Violation"):
        await nats.connect(
            permissioned_nats.url,
            nkeys_seed=str(stranger),
            connect_timeout=2,
            allow_reconnect=False,
        )


async def test_a_request_is_answered_on_the_users_own_inbox(connect: Connect) -> None:
    """A request (what every JetStream call is) works inside a user's own inbox."""
    client = await connect("offers")
    answer = await client.connection.request("$JS.API.STREAM.CREATE.ZHIKE_DLQ", b"{}", timeout=2)
    assert b"error" in answer.data  # the JetStream API answered (an empty config is refused)
    assert client.errors == []


def test_every_service_has_a_user_and_anonymous_is_not_one_of_them() -> None:
    keys = {user: public_key(new_seed()) for user in users()}
    authorization = server_authorization(keys)
    assert set(users()) == {*SERVICES, DLQ_ADMIN, SOURCE_ADAPTER}
    assert [entry["nkey"] for entry in authorization["users"]] == list(keys.values())
    assert set(authorization) == {"users"}  # no no_auth_user, no default permissions
    for entry in authorization["users"]:
        assert ">" not in entry["permissions"]["publish"]["allow"]
        assert entry["permissions"]["subscribe"]["allow"] != ["_INBOX.>"]


def test_the_server_config_and_the_chart_values_carry_the_same_block() -> None:
    authorization = server_authorization({user: public_key(new_seed()) for user in users()})
    text = server_config(authorization)
    assert text.startswith("authorization: ")
    assert json.loads(text.removeprefix("authorization: ")) == authorization
    assert chart_values(authorization) == {"config": {"merge": {"authorization": authorization}}}


@pytest.mark.parametrize(
    "keys",
    [
        {"identity": "UXXX"},
        {**{u: "" for u in users()}, "intruder": ""},
    ],
)
def test_a_config_needs_a_valid_user_key_for_exactly_each_user(keys: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="public key"):
        server_authorization(keys)


def test_a_seed_is_never_taken_for_a_public_key() -> None:
    keys = {user: public_key(new_seed()) for user in users()}
    keys["offers"] = new_seed()
    with pytest.raises(ValueError, match="offers: not an NKey user public key"):
        server_authorization(keys)


def test_only_the_consumer_may_ack_and_park_for_its_durable() -> None:
    lists = allow_list()
    for durable, stream, consumer in (
        ("profile-identity", "ZHIKE_IDENTITY", "profile"),
        ("offers-profile", "ZHIKE_PROFILE", "offers"),
    ):
        ack = f"$JS.ACK.{stream}.{durable}."
        acking = [u for u, p in lists.items() if any(s.startswith(ack) for s in p.publish)]
        parking = [u for u, p in lists.items() if f"zhike.dlq.{durable}" in p.publish]
        assert acking == [consumer]
        assert parking == [consumer]


async def test_a_source_adapter_publishes_to_the_source_stream_and_gets_its_ack(
    connect: Connect,
) -> None:
    """What an adapter needs is on its list: a JetStream publish, acknowledged on its inbox."""
    observer = (await connect(OBSERVER)).connection
    await observer.jetstream().add_stream(name="ZHIKE_SOURCE", subjects=["zhike.source.v1.>"])
    adapter = await connect(SOURCE_ADAPTER)

    ack = await adapter.connection.jetstream().publish(
        "zhike.source.v1.core_deposits", b"a fact", headers={"Nats-Msg-Id": "core_deposits:e-1"}
    )

    assert (ack.stream, ack.seq) == ("ZHIKE_SOURCE", 1)
    assert adapter.errors == []


async def test_dlq_admin_replays_a_letter_parked_without_its_payload_from_its_stream(
    permissioned_nats: PermissionedNats, connect: Connect
) -> None:
    """What `zhike dlq replay` needs for such a letter is on dlq-admin's list: finding the
    letter's stream by its subject and reading the event there."""
    identity = (await connect("identity")).connection.jetstream()
    await identity.add_stream(name="ZHIKE_IDENTITY", subjects=["zhike.identity.v1.>"])
    event = {h.MSG_ID: "e-1", h.EVENT_ID: "e-1", h.EVENT_TYPE: "zhike.identity.v1.PartyCreated"}
    original = await identity.publish("zhike.identity.v1.party_created", b"event", headers=event)
    profile = (await connect("profile")).connection.jetstream()
    await profile.add_stream(name="ZHIKE_DLQ", subjects=["zhike.dlq.>"])
    letter = event | {
        h.MSG_ID: "profile-identity:e-1:1",
        h.ORIGINAL_SUBJECT: "zhike.identity.v1.party_created",
        h.CONSUMER: "profile-identity",
        h.DELIVERIES: "5",
        h.LAST_ERROR: "RuntimeError",
        h.PAYLOAD_OMITTED: "5",
        h.ORIGINAL_SEQUENCE: str(original.seq),
    }
    await profile.publish("zhike.dlq.profile-identity", b"", headers=letter)
    seed = str(permissioned_nats.seed_files[DLQ_ADMIN])
    argv = ["dlq", "replay", "--nats", permissioned_nats.url, "--nkey-seed", seed]

    code = await asyncio.to_thread(cli.main, [*argv, "--consumer", "profile-identity"])

    assert code == 0
    observer = (await connect(OBSERVER)).connection.jetstream()
    replayed = await observer.get_msg("ZHIKE_IDENTITY", seq=original.seq + 1)
    assert (replayed.data, dict(replayed.headers or {})[h.EVENT_ID]) == (b"event", "e-1")
    assert "Violation" not in permissioned_nats.server.log_file.read_text(errors="replace")
