"""The local gateways as a separate process, and their control endpoint, for tests and
benchmarks (in-process: `server.running_gateways`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from zhike_notifications.domain.model import Channel
from zhike_runtime.testing.processes import free_port, wait_for_port


def local_providers(http_url: str, smtp_port: int) -> list[dict[str, str]]:
    """The notifications service's `providers` setting for local gateways at these addresses,
    under the names the failover orders use by default (ZHIKE_PROVIDERS is its JSON)."""
    return [
        {"name": "local_sms", "channel": "sms", "url": http_url},
        {"name": "local_push", "channel": "push", "url": http_url},
        {"name": "local_email", "channel": "email", "url": f"smtp://127.0.0.1:{smtp_port}"},
    ]


class GatewayProcess:
    """`python -m zhike_notifications.local_gateways` on free ports, storing under `state_dir`;
    its output goes to `state_dir/gateways.log`."""

    def __init__(self, state_dir: Path, *, api_key: str | None = None) -> None:
        self.state_dir = state_dir
        self.http_port = free_port()
        self.smtp_port = free_port()
        self.log_file = state_dir / "gateways.log"
        self._api_key = api_key
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self._api_key is not None:
            env["ZHIKE_LOCAL_GATEWAY_API_KEY"] = self._api_key
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zhike_notifications.local_gateways",
                    "--state-dir",
                    str(self.state_dir),
                    "--http-port",
                    str(self.http_port),
                    "--smtp-port",
                    str(self.smtp_port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.smtp_port, timeout=30)
        wait_for_port(self.http_port, timeout=30)

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (None when it was not running)."""
        if self._process is None:
            return None
        self._process.terminate()
        try:
            code = self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._process = None
        return code

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


async def set_fault(
    http_url: str,
    channel: Channel | None = None,
    *,
    mode: str = "ok",
    count: int | None = None,
    delay_ms: int = 0,
    status: int | None = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    """POST /_control; returns the fault in force per channel. Raises on a refused setting."""
    body: dict[str, Any] = {"mode": mode, "delay_ms": delay_ms}
    for name, value in (
        ("channel", channel.value if channel else None),
        ("count", count),
        ("status", status),
        ("retry_after", retry_after),
    ):
        if value is not None:
            body[name] = value
    async with httpx.AsyncClient(base_url=http_url, timeout=10) as client:
        response = await client.post("/_control", json=body)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state


async def reset_faults(http_url: str) -> None:
    async with httpx.AsyncClient(base_url=http_url, timeout=10) as client:
        (await client.delete("/_control")).raise_for_status()
