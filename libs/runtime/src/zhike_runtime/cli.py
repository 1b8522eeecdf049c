"""The `zhike` command line.

`zhike health --target HOST:PORT [--service NAME]` exits 0 only when the service answers SERVING
(used by `helm test` and by scripts). `zhike dlq list|replay` inspects and replays dead letters.
`zhike rotate-keys` re-seals a service's encrypted values under the active data key
(`key_rotation`). Services add their own sub-commands through the `zhike.cli` entry-point group:
a callable that receives the sub-parsers object and registers one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import entry_points

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import ValidationError

from zhike_runtime import key_rotation
from zhike_runtime.auth import commands as auth_commands
from zhike_runtime.events import nats_permissions
from zhike_runtime.events.bus import NatsAccess, connect_to_nats
from zhike_runtime.events.dead_letters import list_dead_letters, replay
from zhike_runtime.redaction import describe_error
from zhike_runtime.settings import NatsSettings, describe_errors
from zhike_runtime.terminal import printable
from zhike_runtime.tls import add_client_tls_arguments, client_credentials, open_channel


async def check_health(
    target: str,
    service: str,
    timeout: float,
    credentials: grpc.ChannelCredentials | None = None,
) -> str:
    async with open_channel(target, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _health(args: argparse.Namespace) -> int:
    try:
        credentials = client_credentials(args)
    except (OSError, ValueError) as error:
        sys.stderr.write(f"{error}\n")
        return 2
    try:
        status = asyncio.run(check_health(args.target, args.service, args.timeout, credentials))
    except grpc.aio.AioRpcError as error:
        sys.stderr.write(f"{args.target}: {error.code().name}: {error.details()}\n")
        return 1
    sys.stdout.write(f"{args.target} {args.service or '(server)'}: {status}\n")
    return 0 if status == "SERVING" else 1


# `zhike dlq` connects as the services do: ZHIKE_NATS_* from the environment (so it works as it
# is inside a pod), each overridden by its option. Its user is dlq-admin, whose inbox its
# permissions name (docs/operations.md, "NATS permissions").
_NATS_OPTIONS = (
    ("--nats", "nats_url", "NATS URL(s) (default: ZHIKE_NATS_URL, else nats://127.0.0.1:4222)"),
    ("--creds", "nats_creds_file", "NATS creds file (default: ZHIKE_NATS_CREDS_FILE)"),
    ("--nkey-seed", "nats_nkey_seed_file", "NKey seed file (default: ZHIKE_NATS_NKEY_SEED_FILE)"),
    ("--tls-ca", "nats_tls_ca_file", "CA of the NATS servers (default: ZHIKE_NATS_TLS_CA_FILE)"),
    ("--tls-cert", "nats_tls_cert_file", "client certificate (default: ZHIKE_NATS_TLS_CERT_FILE)"),
    ("--tls-key", "nats_tls_key_file", "client key (default: ZHIKE_NATS_TLS_KEY_FILE)"),
)


def _add_nats_arguments(parser: argparse.ArgumentParser) -> None:
    for option, setting, help_text in _NATS_OPTIONS:
        parser.add_argument(option, dest=setting, default=None, help=help_text)
    parser.add_argument(
        "--tls-handshake-first",
        dest="nats_tls_handshake_first",
        action="store_const",
        const=True,
        default=None,
        help="TLS before the server's greeting (default: ZHIKE_NATS_TLS_HANDSHAKE_FIRST)",
    )


async def _with_jetstream(
    args: argparse.Namespace, action: Callable[[JetStreamContext], Awaitable[int]]
) -> int:
    given = {
        setting: getattr(args, setting)
        for setting in [s for _, s, _ in _NATS_OPTIONS] + ["nats_tls_handshake_first"]
        if getattr(args, setting) is not None
    }
    try:
        settings = NatsSettings(**given)
    except ValidationError as error:
        sys.stderr.write("invalid configuration:\n")
        sys.stderr.writelines(f"  {line}\n" for line in describe_errors(error))
        return 2
    access = NatsAccess.from_settings(settings, user=nats_permissions.DLQ_ADMIN)
    try:
        connection = await connect_to_nats(
            settings.nats_url, "zhike-dlq", access, connect_timeout=3, allow_reconnect=False
        )
    except (NatsError, OSError, TimeoutError) as error:
        # Not redacted: a connection error carries no personal data, and the quoted reason
        # ('Authorization Violation') is what the operator needs.
        sys.stderr.write(f"cannot connect to NATS: {type(error).__name__}: {error}\n")
        return 1
    try:
        return await action(connection.jetstream())
    except (NatsError, OSError) as error:
        # Reading the dead letters failed (a replay reports its letters' own failures): a
        # line, not a traceback. NATS errors name subjects and codes, never payloads.
        sys.stderr.write(f"NATS error: {describe_error(error)}\n")
        return 1
    finally:
        await connection.drain()


def _dlq_list(args: argparse.Namespace) -> int:
    async def show(js: JetStreamContext) -> int:
        letters = await list_dead_letters(js, args.consumer)
        for letter in letters:
            # The headers are the publisher's text: one letter prints as one line of fields.
            fields = (
                str(letter.sequence),
                letter.consumer,
                letter.original_subject,
                letter.event_id,
                f"deliveries={letter.deliveries}",
                letter.last_error[:200],
            )
            sys.stdout.write("\t".join(printable(field) for field in fields) + "\n")
        sys.stdout.write(f"{len(letters)} dead letter(s)\n")
        return 0

    return asyncio.run(_with_jetstream(args, show))


def _dlq_replay(args: argparse.Namespace) -> int:
    async def run(js: JetStreamContext) -> int:
        letters = await list_dead_letters(js, args.consumer)
        if args.seq:
            wanted = set(args.seq)
            letters = [letter for letter in letters if letter.sequence in wanted]
            missing = wanted - {letter.sequence for letter in letters}
            if missing:
                sys.stderr.write(f"no dead letter of {args.consumer} at {sorted(missing)}\n")
                return 1
        result = await replay(js, letters)
        for skipped in result.skipped:
            sys.stderr.write(
                f"dead letter {skipped.sequence} (event {printable(skipped.event_id) or '-'}) "
                f"skipped: {printable(skipped.reason)}\n"
            )
        if not result.skipped:
            sys.stdout.write(f"replayed {result.replayed} dead letter(s) of {args.consumer}\n")
            return 0
        sys.stdout.write(
            f"replayed {result.replayed}, skipped {len(result.skipped)} dead letter(s) of "
            f"{args.consumer}\n"
        )
        return 1

    return asyncio.run(_with_jetstream(args, run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhike", description="Zhike command line")
    commands = parser.add_subparsers(dest="command", required=True)
    health = commands.add_parser("health", help="check a service's gRPC health")
    health.add_argument("--target", required=True, help="HOST:PORT of the service or health port")
    health.add_argument("--service", default="", help='service name ("" = readiness, "liveness")')
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    add_client_tls_arguments(health)
    health.set_defaults(func=_health)
    dlq = commands.add_parser("dlq", help="inspect and replay the dead-letter stream")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser("list", help="list dead letters")
    _add_nats_arguments(listing)
    listing.add_argument("--consumer", help="durable consumer name, e.g. profile-identity")
    listing.set_defaults(func=_dlq_list)
    replaying = dlq_commands.add_parser("replay", help="republish dead letters to their subjects")
    _add_nats_arguments(replaying)
    replaying.add_argument("--consumer", required=True, help="durable consumer name")
    replaying.add_argument(
        "--seq", type=int, action="append", help="dead-letter sequence (repeatable; default: all)"
    )
    replaying.set_defaults(func=_dlq_replay)
    key_rotation.register(commands)
    auth_commands.register(commands)
    nats_permissions.register_cli(commands)
    for entry in entry_points(group="zhike.cli"):
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
