"""The `zhike` command line.

`zhike health --target HOST:PORT [--service NAME]` exits 0 only when the service answers SERVING
(used by `helm test` and by scripts). Services add their own sub-commands through the
`zhike.cli` entry-point group: a callable that receives the sub-parsers object and registers one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhike", description="Zhike command line")
    commands = parser.add_subparsers(dest="command", required=True)
    health = commands.add_parser("health", help="check a service's gRPC health")
    health.add_argument("--target", required=True, help="HOST:PORT of the service or health port")
    health.add_argument("--service", default="", help='service name ("" = readiness, "liveness")')
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    health.set_defaults(func=_health)
    for entry in entry_points(group="zhike.cli"):
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
