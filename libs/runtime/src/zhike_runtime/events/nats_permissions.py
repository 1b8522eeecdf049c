"""Who may publish and subscribe to what on NATS (RELIABILITY S9): the allow-list, written once.

`SERVICES` below is the one source. From it come:

- `server_authorization()`: the `authorization` block of a nats-server configuration, one NKey
  user per service plus `dlq-admin` (the `zhike dlq` command) and `source-adapter` (the banks'
  source-system adapters), and nothing for a connection without credentials, which the server
  then refuses;
- `chart_values()`: the same block as values of the official NATS Helm chart (`make deploy`);
- `markdown_table()`: the table in docs/operations.md, "NATS permissions".

The tests run the services against a server configured from it (so the lists are proven
sufficient) and compare the document with it, so the three cannot drift apart.

What a user needs, from what nats-py sends for our calls (events/bus.py, consumer.py, relay.py,
dead_letters.py):

- a producer publishes its events on its stream's subjects and declares its stream
  (`$JS.API.STREAM.CREATE.<stream>`, or `UPDATE` when it exists with other settings);
- every service declares the dead-letter stream `ZHIKE_DLQ` the same way;
- it reads how full each of those streams is, every minute (`$JS.API.STREAM.INFO.<stream>`, for
  the `zhike_stream_fill_ratio` gauge);
- a consumer waits for its producer's stream (`$JS.API.STREAM.INFO.<stream>`), declares its
  durable (`$JS.API.CONSUMER.CREATE.<stream>.<durable>`), reads its lag (`CONSUMER.INFO`),
  pulls (`CONSUMER.MSG.NEXT`), acks, naks or terminates what it pulled
  (`$JS.ACK.<stream>.<durable>.>`) and parks what keeps failing on `zhike.dlq.<durable>`;
- the profile reads single messages of ZHIKE_SOURCE back (`$JS.API.STREAM.MSG.GET.ZHIKE_SOURCE`):
  IngestSourceEvents compares an event dropped as a duplicate with the one held under its id;
- every client receives the answers to its requests, and the messages it pulls, on its own
  inbox `_INBOX.<user>.>` (`bus.inbox_prefix`): with a shared `_INBOX.>` any service could
  read the events another one pulls;
- `dlq-admin` reads and deletes dead letters (`$JS.API.STREAM.MSG.GET|DELETE.ZHIKE_DLQ`) and
  republishes them to their original subjects, which makes it able to publish every producer's
  events: its seed belongs to the operators and is mounted in no pod. A letter parked without
  its payload (too large to park with the letter's headers) is replayed from the event's own
  stream: `dlq-admin` finds that stream by the letter's subject (`$JS.API.STREAM.NAMES`, which
  answers stream names only) and reads the one message (`$JS.API.STREAM.MSG.GET.<stream>`, for
  each stream a durable consumes, the only ones a letter can come from); it may not change,
  purge, delete from or consume those streams;
- `source-adapter` publishes the source systems' facts to the profile's ZHIKE_SOURCE stream
  (`zhike.source.v1.<source_system>`) and receives JetStream's acks on its own inbox: nothing
  else, not even reading the stream back.

No service reads advisories (`$JS.EVENT.>`) or answers requests, so none may subscribe to
anything but its inbox; anything not listed, including every other `$JS.API` call (deleting or
purging a stream, another service's consumers), is denied.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nkeys  # type: ignore[import-untyped]  # nats-py's own NKey library, untyped

from zhike_runtime.events.bus import DLQ_STREAM, StreamSpec, dlq_subject, inbox_prefix


@dataclass(frozen=True)
class DurableConsumer:
    """A durable pull consumer a service declares on another service's stream."""

    durable: str  # <consumer>-<producer>
    stream: str


@dataclass(frozen=True)
class ServiceGrant:
    """What a service does on NATS: the streams it owns and the durables it pulls from."""

    user: str  # the service's name
    owns: tuple[StreamSpec, ...] = ()
    consumes: tuple[DurableConsumer, ...] = ()
    # Streams it reads single messages back from (`$JS.API.STREAM.MSG.GET.<stream>`).
    reads_back: tuple[str, ...] = ()


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


# The allow-list. A service that starts producing or consuming gets its line here in the same
# change (tests/integration/test_nats_allow_list.py compares it with what each service declares).
# The source systems' facts: owned by the profile (it declares the stream and consumes it),
# published to by the banks' adapters and by the profile's IngestSourceEvents.
SOURCE_STREAM = StreamSpec("ZHIKE_SOURCE", ("zhike.source.v1.>",))
SERVICES: tuple[ServiceGrant, ...] = (
    ServiceGrant("identity", owns=(StreamSpec("ZHIKE_IDENTITY", ("zhike.identity.v1.>",)),)),
    ServiceGrant(
        "profile",
        owns=(StreamSpec("ZHIKE_PROFILE", ("zhike.profile.v1.>",)), SOURCE_STREAM),
        consumes=(
            DurableConsumer("profile-identity", "ZHIKE_IDENTITY"),
            DurableConsumer("profile-source", "ZHIKE_SOURCE"),
            DurableConsumer("profile-notifications", "ZHIKE_NOTIFICATIONS"),
        ),
        # IngestSourceEvents compares an event JetStream drops as a duplicate with the one it
        # holds under that id: a reused event id is refused, not answered as stored.
        reads_back=(SOURCE_STREAM.name,),
    ),
    ServiceGrant(
        "offers",
        owns=(StreamSpec("ZHIKE_OFFERS", ("zhike.offers.v1.>",)),),
        consumes=(
            DurableConsumer("offers-profile", "ZHIKE_PROFILE"),
            DurableConsumer("offers-notifications", "ZHIKE_NOTIFICATIONS"),
        ),
    ),
    ServiceGrant(
        "notifications",
        owns=(StreamSpec("ZHIKE_NOTIFICATIONS", ("zhike.notifications.v1.>",)),),
        consumes=(
            DurableConsumer("notifications-offers", "ZHIKE_OFFERS"),
            DurableConsumer("notifications-profile", "ZHIKE_PROFILE"),
            # Its own stream: RedispatchNotification, replayed from its dead letters.
            DurableConsumer("notifications-dispatch", "ZHIKE_NOTIFICATIONS"),
        ),
    ),
)
DLQ_ADMIN = "dlq-admin"
SOURCE_ADAPTER = "source-adapter"


def _inbox(user: str) -> str:
    return f"{inbox_prefix(user)}.>"


def _declares(stream: str) -> tuple[str, ...]:
    return (f"$JS.API.STREAM.CREATE.{stream}", f"$JS.API.STREAM.UPDATE.{stream}")


def _reads_fill(stream: str) -> str:
    return f"$JS.API.STREAM.INFO.{stream}"


def service_permissions(grant: ServiceGrant) -> Permissions:
    publish: list[str] = []
    for owned in grant.owns:
        publish += [*owned.subjects, *_declares(owned.name), _reads_fill(owned.name)]
    publish += [*_declares(DLQ_STREAM), _reads_fill(DLQ_STREAM)]
    for consumer in grant.consumes:
        stream, durable = consumer.stream, consumer.durable
        publish += [
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
            dlq_subject(durable),
        ]
    publish += [f"$JS.API.STREAM.MSG.GET.{stream}" for stream in grant.reads_back]
    return Permissions(tuple(dict.fromkeys(publish)), (_inbox(grant.user),))


def dlq_admin_permissions() -> Permissions:
    replay_to = [subject for grant in SERVICES for s in grant.owns for subject in s.subjects]
    # Letters are parked only by durables, so only the streams some durable reads can hold the
    # event of a letter parked without its payload.
    consumed = dict.fromkeys(c.stream for grant in SERVICES for c in grant.consumes)
    return Permissions(
        (
            f"$JS.API.STREAM.MSG.GET.{DLQ_STREAM}",
            f"$JS.API.STREAM.MSG.DELETE.{DLQ_STREAM}",
            *replay_to,
            "$JS.API.STREAM.NAMES",
            *(f"$JS.API.STREAM.MSG.GET.{stream}" for stream in consumed),
        ),
        (_inbox(DLQ_ADMIN),),
    )


def source_adapter_permissions() -> Permissions:
    return Permissions(SOURCE_STREAM.subjects, (_inbox(SOURCE_ADAPTER),))


def allow_list() -> dict[str, Permissions]:
    """Every user and its permissions, in the order of the document."""
    users = {grant.user: service_permissions(grant) for grant in SERVICES}
    users[DLQ_ADMIN] = dlq_admin_permissions()
    users[SOURCE_ADAPTER] = source_adapter_permissions()
    return users


def users() -> tuple[str, ...]:
    return tuple(allow_list())


def _is_user_public_key(key: str) -> bool:
    """`U…`: base32 of the user prefix byte, 32 key bytes and their CRC-16 (little-endian)."""
    try:
        raw = base64.b32decode(key + "=" * (-len(key) % 8))
    except (binascii.Error, ValueError):
        return False
    checksum: int = nkeys.crc16(bytearray(raw[:-2]))
    return (
        len(raw) == 35
        and raw[0] == nkeys.PREFIX_BYTE_USER
        and checksum == int.from_bytes(raw[-2:], "little")
    )


def server_authorization(public_keys: Mapping[str, str]) -> dict[str, Any]:
    """The nats-server `authorization` block: every user of the allow-list by its NKey public
    key (`U…`), with its permissions. No `no_auth_user`: anonymous connections are refused."""
    expected = set(allow_list())
    if set(public_keys) != expected:
        raise ValueError(
            f"public keys are needed for exactly the users {sorted(expected)}; "
            f"missing {sorted(expected - set(public_keys))}, "
            f"unknown {sorted(set(public_keys) - expected)}"
        )
    for user, key in public_keys.items():
        if not _is_user_public_key(key):
            raise ValueError(f"{user}: not an NKey user public key (U…)")
    return {
        "users": [
            {
                "nkey": public_keys[user],
                "permissions": {
                    "publish": {"allow": list(permissions.publish)},
                    "subscribe": {"allow": list(permissions.subscribe)},
                },
            }
            for user, permissions in allow_list().items()
        ]
    }


def server_config(authorization: Mapping[str, Any]) -> str:
    """A nats-server configuration fragment (its format reads JSON) holding the block."""
    return f"authorization: {json.dumps(authorization, indent=2)}\n"


def chart_values(authorization: Mapping[str, Any]) -> dict[str, Any]:
    """Values of the official NATS chart (1.x) that merge the block into its nats.conf."""
    return {"config": {"merge": {"authorization": dict(authorization)}}}


def markdown_table() -> str:
    """The allow-list as the table of docs/operations.md, "NATS permissions"."""

    def cell(subjects: Iterable[str]) -> str:
        return "<br>".join(f"`{subject}`" for subject in subjects)

    lines = ["| user | may publish | may subscribe |", "|---|---|---|"]
    for user, permissions in allow_list().items():
        lines.append(f"| `{user}` | {cell(permissions.publish)} | {cell(permissions.subscribe)} |")
    return "\n".join(lines) + "\n"


def new_seed() -> str:
    """A fresh NKey user seed (`SU…`): the secret half, for a Secret; the server gets only the
    public key (`public_key`)."""
    seed: bytes = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode()


def public_key(seed: str) -> str:
    key_pair = nkeys.from_seed(bytearray(seed.strip().encode()))
    try:
        key: bytes = key_pair.public_key
        return key.decode()
    finally:
        key_pair.wipe()


def _public_keys(pairs: Sequence[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for pair in pairs:
        user, separator, key = pair.partition("=")
        if not separator:
            raise SystemExit(f"--nkey {pair!r}: expected USER=PUBLIC_KEY")
        keys[user] = key
    return keys


def _authorization_from(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return server_authorization(_public_keys(args.nkey))
    except ValueError as error:
        raise SystemExit(f"zhike nats: {error}") from None


def _print_users(args: argparse.Namespace) -> int:
    sys.stdout.write("".join(f"{user}\n" for user in users()))
    return 0


def _print_new_seed(args: argparse.Namespace) -> int:
    sys.stdout.write(new_seed() + "\n")
    return 0


def _print_public_key(args: argparse.Namespace) -> int:
    try:
        key = public_key(sys.stdin.read())
    except (nkeys.NkeysError, ValueError):
        sys.stderr.write("zhike nats public-key: standard input is not an NKey seed\n")
        return 1
    sys.stdout.write(key + "\n")
    return 0


def _print_server_config(args: argparse.Namespace) -> int:
    sys.stdout.write(server_config(_authorization_from(args)))
    return 0


def _print_chart_values(args: argparse.Namespace) -> int:
    # JSON is YAML: `helm --values` reads it as it is.
    sys.stdout.write(json.dumps(chart_values(_authorization_from(args)), indent=2) + "\n")
    return 0


def register_cli(commands: Any) -> None:
    """`zhike nats …`: the NATS users' keys and the server configuration of the allow-list."""
    nats_command = commands.add_parser("nats", help="NATS users, keys and permissions")
    sub = nats_command.add_subparsers(dest="nats_command", required=True)
    sub.add_parser("users", help="the users of the allow-list, one a line").set_defaults(
        func=_print_users
    )
    sub.add_parser("new-seed", help="print a fresh NKey user seed").set_defaults(
        func=_print_new_seed
    )
    sub.add_parser(
        "public-key", help="print the public key of the NKey seed read from standard input"
    ).set_defaults(func=_print_public_key)
    for name, func, what in (
        ("server-config", _print_server_config, "a nats-server configuration fragment"),
        ("chart-values", _print_chart_values, "values for the official NATS Helm chart"),
    ):
        command = sub.add_parser(name, help=f"the allow-list's authorization block as {what}")
        command.add_argument(
            "--nkey",
            action="append",
            default=[],
            metavar="USER=PUBLIC_KEY",
            help="each user's NKey public key (repeat for every user)",
        )
        command.set_defaults(func=func)
