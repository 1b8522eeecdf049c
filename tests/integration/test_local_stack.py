"""`make run`: the local stack brings all four services to SERVING, starts the local SMS/push and
SMTP gateways and notifications' webhook server, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from zhike.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from zhike_runtime.devstack import (
    GATEWAY_PORTS,
    HEALTH_OFFSET,
    SERVICES,
    WEBHOOK_PORT_VARIABLE,
)
from zhike_runtime.testing.processes import free_port
from zhike_runtime.testing.services import SERVING, readiness

EXPECTED_SERVICES = {
    "identity": "zhike.identity.v1.IdentityService",
    "profile": "zhike.profile.v1.ProfileService",
    "offers": "zhike.offers.v1.OffersService",
    "notifications": "zhike.notifications.v1.NotificationsService",
}


async def listed_services(port: int) -> set[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request]), timeout=5):
            return {s.name for s in response.list_services_response.service}
    return set()


class DistinctPorts:
    """Free ports, none handed out twice (two free_port calls may return the same one), a
    service's health neighbour included."""

    def __init__(self) -> None:
        self._taken: set[int] = set()

    def one(self, *, with_health_neighbour: bool = False) -> int:
        while True:
            port = free_port()
            wanted = {port, port + HEALTH_OFFSET} if with_health_neighbour else {port}
            if max(wanted) < 65536 and not wanted & self._taken:
                self._taken |= wanted
                return port


def local_stack_environment(tmp_path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The stack's environment on free ports under `tmp_path`, and each service's port."""
    free = DistinctPorts()
    ports = {name: free.one(with_health_neighbour=True) for name in SERVICES}
    env = os.environ | {
        "ZHIKE_DEV_STATE_DIR": str(tmp_path / "state"),
        "ZHIKE_DEV_NATS_PORT": str(free.one()),
        **{f"ZHIKE_DEV_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **{variable: str(free.one()) for variable in GATEWAY_PORTS},
        WEBHOOK_PORT_VARIABLE: str(free.one()),
    }
    return env, ports


def test_the_local_stack_refuses_two_listeners_on_one_port_and_starts_nothing(
    tmp_path: Path,
) -> None:
    env, ports = local_stack_environment(tmp_path)
    env["ZHIKE_DEV_NOTIFICATIONS_PORT"] = str(ports["offers"])

    refused = subprocess.run(
        [sys.executable, "-m", "zhike_runtime.devstack"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert refused.returncode == 1
    assert f"port {ports['offers']} is set for offers and for notifications" in refused.stderr
    assert not (tmp_path / "state" / "logs").exists()


async def test_the_local_stack_serves_all_four_services_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env, ports = local_stack_environment(tmp_path)
    stack = subprocess.Popen(
        [sys.executable, "-m", "zhike_runtime.devstack"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own process group: a failed test kills the services and nats-server with it.
        start_new_session=True,
    )
    assert stack.stdout is not None
    output: list[str] = []
    try:
        while True:
            line = await asyncio.wait_for(asyncio.to_thread(stack.stdout.readline), timeout=120)
            assert line, "the stack exited before it was up:\n" + "".join(output)
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        banner = "".join(output)
        for name, port in ports.items():
            assert f"127.0.0.1:{port}" in banner
            assert await readiness(port) == SERVING
            assert await readiness(port + HEALTH_OFFSET) == SERVING
            assert EXPECTED_SERVICES[name] in await listed_services(port)
        assert "zhike token --role" in banner
        for variable in GATEWAY_PORTS:  # the gateways listen where the banner says
            assert f"127.0.0.1:{env[variable]}" in banner
        assert str(tmp_path / "state" / "gateways") in banner
        webhooks = f"http://127.0.0.1:{env[WEBHOOK_PORT_VARIABLE]}"
        assert webhooks in banner
        async with httpx.AsyncClient(base_url=webhooks, timeout=5) as client:
            assert (await client.get("/healthz")).json() == {"status": "serving"}
        await a_minted_token_opens_the_identity_api(tmp_path / "state", ports["identity"])
        stack.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(stack.communicate, timeout=60)
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
    assert stack.returncode == 0
    assert "stopped." in rest
    for name in SERVICES:
        log = (tmp_path / "state" / "logs" / f"{name}.log").read_text()
        assert '"message": "service stopped"' in log
    gateways_log = (tmp_path / "state" / "logs" / "gateways.log").read_text()
    assert '"message": "local gateways stopped"' in gateways_log


def zhike_token(state_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    zhike = Path(sys.executable).parent / "zhike"
    return subprocess.run(
        [str(zhike), "token", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        env=os.environ | env,
        check=False,
    )


async def a_minted_token_opens_the_identity_api(state_dir: Path, port: int) -> None:
    minted = zhike_token(state_dir, "--role", "branch_teller")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        get_party = identity_service_pb2_grpc.IdentityServiceStub(channel).GetParty
        missing = str(uuid.uuid4())
        with pytest.raises(grpc.aio.AioRpcError) as without:
            await get_party(identity_service_pb2.GetPartyRequest(party_id=missing), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as with_token:
            await get_party(
                identity_service_pb2.GetPartyRequest(party_id=missing),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=5,
            )
    assert without.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert with_token.value.code() is grpc.StatusCode.NOT_FOUND  # through, to the store
    refused = zhike_token(state_dir, "--role", "branch_teller", ZHIKE_PROFILE="production")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "refused with ZHIKE_PROFILE=production" in refused.stderr
    # The services would refuse such a token; the command says why before it is minted.
    partyless = zhike_token(state_dir, "--role", "channel_app")
    assert (partyless.returncode, partyless.stdout) == (2, "")
    assert "--role channel_app acts for a customer: give --party" in partyless.stderr
