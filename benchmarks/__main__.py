"""`make bench`: figures for the walking skeleton on embedded defaults (SQLite, local NATS).

Starts the local stack as real processes on free ports in a temporary directory, then measures
- LinkSourceRecord latency, one caller at a time (p50/p99), and throughput with 16 callers;
- propagation: from LinkSourceRecord's answer until GetProfile shows the record (p50/p99).
It prints figures; it never passes or fails.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

from benchmarks.common import percentile
from zhike.identity.v1 import identity_service_pb2 as identity_pb
from zhike.identity.v1 import identity_service_pb2_grpc as identity_grpc
from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.devstack import GATEWAY_PORTS, SERVICES, Stack
from zhike_runtime.testing.processes import free_port

SEQUENTIAL = 1000
CONCURRENT_CALLERS = 16
CONCURRENT_TOTAL = 4000
PROPAGATION_SAMPLES = 200


def _record(source: str, n: int) -> identity_pb.LinkSourceRecordRequest:
    return identity_pb.LinkSourceRecordRequest(
        source_record=party_pb2.SourceRecord(
            key=party_pb2.SourceRecordKey(source_system=source, source_record_id=f"{source}-{n}"),
            full_name="基准客户",
        )
    )


def _report(name: str, millis: list[float]) -> None:
    sys.stdout.write(
        f"{name:<44} n={len(millis):<6} p50={percentile(millis, 0.5):7.2f} ms  "
        f"p99={percentile(millis, 0.99):7.2f} ms  mean={statistics.fmean(millis):7.2f} ms\n"
    )


async def _measure(identity: str, profile: str, token: str) -> None:
    async with (
        grpc.aio.insecure_channel(identity, interceptors=[BearerToken(token)]) as identity_channel,
        grpc.aio.insecure_channel(profile, interceptors=[BearerToken(token)]) as profile_channel,
    ):
        link = identity_grpc.IdentityServiceStub(identity_channel).LinkSourceRecord
        get_profile = profile_grpc.ProfileServiceStub(profile_channel).GetProfile
        for n in range(50):  # warm-up
            await link(_record("warmup", n))

        latencies = []
        for n in range(SEQUENTIAL):
            started = time.perf_counter()
            await link(_record("sequential", n))
            latencies.append((time.perf_counter() - started) * 1000)
        _report("LinkSourceRecord latency (1 caller)", latencies)

        counter = iter(range(CONCURRENT_TOTAL))

        async def caller() -> None:
            for n in counter:
                await link(_record("concurrent", n))

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CONCURRENT_CALLERS)))
        elapsed = time.perf_counter() - started
        sys.stdout.write(
            f"{'LinkSourceRecord throughput (16 callers)':<44} "
            f"{CONCURRENT_TOTAL / elapsed:8.0f} records/s\n"
        )

        await asyncio.sleep(3)  # let the profile catch up before timing propagation
        propagation = []
        for n in range(PROPAGATION_SAMPLES):
            response = await link(_record("propagation", n))
            started = time.perf_counter()
            while True:
                try:
                    await get_profile(profile_pb.GetProfileRequest(party_id=response.party_id))
                    break
                except grpc.aio.AioRpcError as error:
                    if error.code() is not grpc.StatusCode.NOT_FOUND:
                        raise
                    await asyncio.sleep(0.002)
            propagation.append((time.perf_counter() - started) * 1000)
        _report("link → profile visible (via NATS)", propagation)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="zhike-bench-") as state:
        os.environ["ZHIKE_DEV_NATS_PORT"] = str(free_port())
        for name in SERVICES:
            os.environ[f"ZHIKE_DEV_{name.upper()}_PORT"] = str(free_port())
        for variable in GATEWAY_PORTS:
            os.environ[variable] = str(free_port())
        stack = Stack(Path(state))
        try:
            stack.start()
            stack.wait_until_serving()
            ports = {s.name: s.port for s in stack.services}
            sys.stdout.write(
                f"Zhike walking skeleton on SQLite + local NATS, {os.cpu_count()} cores\n"
            )
            token = stack.issuer.mint(["source_system", "call_centre_agent"], subject="benchmark")
            asyncio.run(
                _measure(f"127.0.0.1:{ports['identity']}", f"127.0.0.1:{ports['profile']}", token)
            )
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
