"""The `zhike` command line.

`zhike health --target HOST:PORT [--service NAME]` exits 0 only when the service answers SERVING
(used by `helm test` and by scripts). `zhike dlq list|replay` inspects and replays dead letters. Services add their own sub-commands through the
`zhike.cli` entry-point group: a callable that receives the sub-parsers object and registers one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import entry_points

import grpc
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import JetStreamContext

from zhike_runtime.events.dead_letters import list_dead_letters, replay


async def check_health(target: str, service: str, timeout: float) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _health(args: argparse.Namespace) -> int:
    try:
        status = asyncio.run(check_health(args.target, args.service, args.timeout))
    except grpc.aio.AioRpcError as error:
        sys.stderr.write(f"{args.target}: {error.code().name}: {error.details()}\n")
        return 1
    sys.stdout.write(f"{args.target} {args.service or '(server)'}: {status}\n")
    return 0 if status == "SERVING" else 1


async def _with_jetstream(url: str, action: Callable[[JetStreamContext], Awaitable[int]]) -> int:
    connection = await nats.connect(servers=[u.strip() for u in url.split(",")], connect_timeout=3)
    try:
        return await action(connection.jetstream())
    finally:
        await connection.drain()


def _dlq_list(args: argparse.Namespace) -> int:
    async def show(js: JetStreamContext) -> int:
        letters = await list_dead_letters(js, args.consumer)
        for letter in letters:
            sys.stdout.write(
                f"{letter.sequence}\t{letter.consumer}\t{letter.original_subject}\t"
                f"{letter.event_id}\tdeliveries={letter.deliveries}\t{letter.last_error[:200]}\n"
            )
        sys.stdout.write(f"{len(letters)} dead letter(s)\n")
        return 0

    return asyncio.run(_with_jetstream(args.nats, show))


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
        count = await replay(js, letters)
        sys.stdout.write(f"replayed {count} dead letter(s) of {args.consumer}\n")
        return 0

    return asyncio.run(_with_jetstream(args.nats, run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhike", description="Zhike command line")
    commands = parser.add_subparsers(dest="command", required=True)
    health = commands.add_parser("health", help="check a service's gRPC health")
    health.add_argument("--target", required=True, help="HOST:PORT of the service or health port")
    health.add_argument("--service", default="", help='service name ("" = readiness, "liveness")')
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    health.set_defaults(func=_health)
    dlq = commands.add_parser("dlq", help="inspect and replay the dead-letter stream")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser("list", help="list dead letters")
    listing.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL(s)")
    listing.add_argument("--consumer", help="durable consumer name, e.g. profile-identity")
    listing.set_defaults(func=_dlq_list)
    replaying = dlq_commands.add_parser("replay", help="republish dead letters to their subjects")
    replaying.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS URL(s)")
    replaying.add_argument("--consumer", required=True, help="durable consumer name")
    replaying.add_argument(
        "--seq", type=int, action="append", help="dead-letter sequence (repeatable; default: all)"
    )
    replaying.set_defaults(func=_dlq_replay)
    for entry in entry_points(group="zhike.cli"):
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
