"""A nats-server run from a configuration the test chooses, for what the fixtures' NatsServer
cannot be told: a JetStream store of a given size (`max_file_store`), or no JetStream at all
(core NATS up, JetStream down). Its monitoring port is on, so a test can read what the server
counted (`/varz`) instead of what a client says it did."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from zhike_runtime.testing.processes import free_port, nats_server_binary, wait_for_port


class ConfiguredNats:
    def __init__(
        self, directory: Path, *, jetstream: bool = True, max_file_store: int | None = None
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.monitoring_port = free_port()
        self.jetstream = jetstream
        self.max_file_store = max_file_store
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        store = f'store_dir: "{self.directory / "jetstream"}"'
        if self.max_file_store is not None:
            store += f"\n max_file_store: {self.max_file_store}"
        config = self.directory / "nats.conf"
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'http: "127.0.0.1:{self.monitoring_port}"\n'
            + (f"jetstream {{ {store}\n }}\n" if self.jetstream else "")
        )
        with (self.directory / "nats-server.log").open("ab") as log:
            self._process = subprocess.Popen(
                [nats_server_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port)
        wait_for_port(self.monitoring_port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def varz(self) -> dict[str, Any]:
        """The server's counters since it started (`in_msgs`: messages clients sent it, JetStream
        API requests included, answered or not; `connections`: clients connected now)."""
        url = f"http://127.0.0.1:{self.monitoring_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as response:
            value: dict[str, Any] = json.load(response)
        return value
