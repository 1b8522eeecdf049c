"""Cross-service journeys: the services run as real processes, as `make run` starts them."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zhike_notifications.local_gateways.testing import GatewayProcess, local_providers
from zhike_notifications.testing import every_day_working_calendar
from zhike_runtime.testing.processes import NatsServer, free_port
from zhike_runtime.testing.services import (
    dispatcher_environment,
    process_environment,
    wait_serving,
)


@dataclass
class ServiceProcess:
    """One service process with its own SQLite file; logs to <dir>/<name>.log (JSON lines) and
    spans to <dir>/<name>.spans (the console exporter writes them to stderr)."""

    name: str
    directory: Path
    nats_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def database_file(self) -> Path:
        return self.directory / f"{self.name}.db"

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def spans_file(self) -> Path:
        return self.directory / f"{self.name}.spans"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = (
            os.environ
            | {
                "ZHIKE_GRPC_HOST": "127.0.0.1",
                "ZHIKE_GRPC_PORT": str(self.port),
                "ZHIKE_NATS_URL": self.nats_url,
                "ZHIKE_DATABASE_URL": f"sqlite+aiosqlite:///{self.database_file}",
                "ZHIKE_OUTBOX_POLL_SECONDS": "0.1",
                "ZHIKE_HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
                "ZHIKE_CONSUMER_BACKOFF_SECONDS": "[0.2, 0.5, 1, 1]",
                # No Service endpoints to leave here: stop at once unless a test asks for the
                # lame-duck delay (test_rolling_update).
                "ZHIKE_LAME_DUCK_SECONDS": "0",
                "OTEL_TRACES_EXPORTER": "console",
            }
            | process_environment()
            | self.extra_env
        )
        with self.log_file.open("ab") as log, self.spans_file.open("ab") as spans:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"zhike_{self.name}"], env=env, stdout=log, stderr=spans
            )

    async def wait_serving(self) -> None:
        await wait_serving(self.port, timeout=60)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        return self.wait()

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_file.read_text().splitlines() if self.log_file.exists() else []
        return [json.loads(line) for line in lines if line.startswith("{")]


async def serving(*processes: ServiceProcess) -> None:
    """Starts the processes together (they boot side by side), then waits until each serves."""
    for process in processes:
        process.start()
    for process in processes:
        await process.wait_serving()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def services(tmp_path: Path, nats: NatsServer) -> Iterator[dict[str, ServiceProcess]]:
    """identity, profile and offers processes (not yet started: tests choose when)."""
    started = {
        name: ServiceProcess(name, tmp_path, nats.url) for name in ("identity", "profile", "offers")
    }
    yield started
    for service in started.values():
        if service.process is not None and service.process.poll() is None:
            service.process.kill()
            service.process.wait()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """The local SMS/push/SMTP gateways, started before the services (a busy machine boots
    them slowly)."""
    with GatewayProcess(tmp_path / "state") as running:
        yield running


@pytest.fixture
def notifications_settings() -> dict[str, str]:
    """ZHIKE_* variables a journey adds to notifications' own (override in the test module)."""
    return {}


@pytest.fixture
def notifications(
    tmp_path: Path,
    nats: NatsServer,
    services: dict[str, ServiceProcess],
    gateway: GatewayProcess,
    notifications_settings: dict[str, str],
) -> Iterator[ServiceProcess]:
    """The notifications process (not yet started), sending to the local gateways, asking
    identity and the profile with a dispatcher token, every day a working day (marketing may go
    out whatever day the journey runs on)."""
    today = dt.datetime.now(dt.UTC).date()
    process = ServiceProcess(
        "notifications",
        tmp_path,
        nats.url,
        extra_env=dispatcher_environment(services["identity"].address, services["profile"].address)
        | {
            "ZHIKE_PROVIDERS": json.dumps(local_providers(gateway.http_url, gateway.smtp_port)),
            "ZHIKE_WEBHOOK_HOST": "127.0.0.1",
            "ZHIKE_WEBHOOK_PORT": str(free_port()),
            "ZHIKE_CALENDAR_FILE": str(
                every_day_working_calendar(tmp_path / "calendar.yaml", today)
            ),
            "ZHIKE_DISPATCH_IDLE_SECONDS": "0.2",
        }
        | notifications_settings,
    )
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait()
