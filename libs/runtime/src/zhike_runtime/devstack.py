"""`make run`: NATS and the four services on embedded defaults, as local processes.

Ports (override with environment variables): NATS 4222 (ZHIKE_DEV_NATS_PORT), identity 50051,
profile 50052, offers 50053, notifications 50054 (ZHIKE_DEV_<SERVICE>_PORT); each service's
plaintext health port is its port + 10. State (SQLite files, the JetStream store, logs) lives in
ZHIKE_DEV_STATE_DIR (default .zhike/), with the throwaway keys that seal personal data at rest
(field-keys.json, made on the first run). The local providers notifications sends to run too:
an HTTP SMS and push gateway on 8025 (ZHIKE_DEV_HTTP_GATEWAY_PORT) and an SMTP server on 1025
(ZHIKE_DEV_SMTP_PORT), storing what they receive under <state dir>/gateways/. Notifications
asks identity and the profile where they were started, with a notifications_dispatcher token
minted at each start (<state dir>/notifications-token), and serves its provider webhooks and
unsubscribe links on 8026 (ZHIKE_DEV_WEBHOOK_PORT). Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc

from zhike_runtime.auth.commands import ISSUER_DIRECTORY
from zhike_runtime.auth.development import DevelopmentIssuer
from zhike_runtime.cli import check_health
from zhike_runtime.crypto import generate_key
from zhike_runtime.testing.processes import NatsServer

SERVICES = {"identity": 50051, "profile": 50052, "offers": 50053, "notifications": 50054}
# zhike_notifications.local_gateways: started as a process like the services (never imported:
# the runtime does not depend on a service).
GATEWAYS_MODULE = "zhike_notifications.local_gateways"
GATEWAY_PORTS = {"ZHIKE_DEV_HTTP_GATEWAY_PORT": 8025, "ZHIKE_DEV_SMTP_PORT": 1025}
# Notifications' webhook HTTP server (provider receipts and replies, unsubscribe links).
WEBHOOK_PORT_VARIABLE = "ZHIKE_DEV_WEBHOOK_PORT"
WEBHOOK_PORT = 8026
HEALTH_OFFSET = 10
FIELD_KEYS_FILE = "field-keys.json"
# The notifications service's own token for identity and the profile (its party directory),
# minted at each start and handed over as a file, the way a cluster mounts it from a Secret.
DISPATCHER_TOKEN_FILE = "notifications-token"
DISPATCHER_TOKEN_TTL_SECONDS = 30 * 24 * 3600
START_TIMEOUT_SECONDS = 90.0


@dataclass
class ServiceProcess:
    name: str
    port: int
    health_port: int
    log_file: Path
    process: subprocess.Popen[bytes]


@dataclass
class GatewaysProcess:
    name: str
    http_port: int
    smtp_port: int
    log_file: Path
    process: subprocess.Popen[bytes]


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{variable}: not a port number: {raw!r}") from None
    if not 0 < port < 65536:
        raise SystemExit(f"{variable}: port out of range: {port}")
    return port


def _require_distinct(ports: dict[str, int]) -> None:
    """Each listener its own port. A clash is not always refused by the second bind: another
    service already SERVING on the port answers the start-up's health check in its place."""
    users: dict[int, str] = {}
    for what, port in ports.items():
        if port in users:
            raise SystemExit(
                f"port {port} is set for {users[port]} and for {what}: give each its own"
            )
        users[port] = what


def _require_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(
                f"port {port} for {what} is already in use: stop what holds it or set another port"
            )


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _serving(port: int) -> bool:
    try:
        return asyncio.run(check_health(f"127.0.0.1:{port}", "", 1.0)) == "SERVING"
    except grpc.aio.AioRpcError:
        return False


class Stack:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.logs = state_dir / "logs"
        self.nats = NatsServer(
            state_dir / "nats", _port("ZHIKE_DEV_NATS_PORT", 4222), sync_always=False
        )
        self.services: list[ServiceProcess] = []
        self.gateways: GatewaysProcess | None = None
        self.webhook_port = WEBHOOK_PORT
        # A throwaway token issuer: the services trust its key set, `zhike token` mints with it.
        self.issuer = DevelopmentIssuer(state_dir / ISSUER_DIRECTORY)
        # Throwaway field keys, made once: the stores sealed under them stay readable next time.
        self.field_keys = development_field_keys(state_dir / FIELD_KEYS_FILE)

    def start(self) -> None:
        ports = {
            name: _port(f"ZHIKE_DEV_{name.upper()}_PORT", port) for name, port in SERVICES.items()
        }
        http_gateway_port, smtp_port = (_port(v, port) for v, port in GATEWAY_PORTS.items())
        self.webhook_port = _port(WEBHOOK_PORT_VARIABLE, WEBHOOK_PORT)
        _require_distinct(
            {"NATS": self.nats.port}
            | ports
            | {f"{name} health": port + HEALTH_OFFSET for name, port in ports.items()}
            | {
                "the local SMS and push gateway": http_gateway_port,
                "the local SMTP server": smtp_port,
                "the notifications webhooks": self.webhook_port,
            }
        )
        _require_free(self.nats.port, "NATS")
        for name, port in ports.items():
            _require_free(port, name)
            _require_free(port + HEALTH_OFFSET, f"{name} health")
        _require_free(http_gateway_port, "the local SMS and push gateway")
        _require_free(smtp_port, "the local SMTP server")
        _require_free(self.webhook_port, "the notifications webhooks")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nats.start()
        _say(f"nats-server with JetStream on {self.nats.url} (store {self.nats.store})")
        self.gateways = self._start_gateways(http_gateway_port, smtp_port)
        extra_env = {
            "notifications": self._dispatcher_environment(ports)
            | _local_providers(http_gateway_port, smtp_port)
            | _local_webhooks(self.webhook_port)
        }
        for name, port in ports.items():
            self.services.append(self._start_service(name, port, extra_env.get(name, {})))

    def _dispatcher_environment(self, ports: dict[str, int]) -> dict[str, str]:
        """What notifications needs to ask identity and the profile: where they run, and a
        long-lived notifications_dispatcher token (an unmasked-read role: local only)."""
        token = self.issuer.mint(
            ["notifications_dispatcher"],
            subject="notifications",
            ttl_seconds=DISPATCHER_TOKEN_TTL_SECONDS,
        )
        token_file = self.state_dir.resolve() / DISPATCHER_TOKEN_FILE
        descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
        return {
            "ZHIKE_IDENTITY_ADDRESS": f"127.0.0.1:{ports['identity']}",
            "ZHIKE_PROFILE_ADDRESS": f"127.0.0.1:{ports['profile']}",
            "ZHIKE_SERVICE_TOKEN_FILE": str(token_file),
        }

    def _start_service(
        self, name: str, port: int, extra_env: dict[str, str] | None = None
    ) -> ServiceProcess:
        env = (
            os.environ
            | {
                "ZHIKE_GRPC_HOST": "127.0.0.1",
                "ZHIKE_GRPC_PORT": str(port),
                "ZHIKE_HEALTH_PORT": str(port + HEALTH_OFFSET),
                "ZHIKE_NATS_URL": self.nats.url,
                "ZHIKE_DATABASE_URL": f"sqlite+aiosqlite:///{self.state_dir.resolve() / f'{name}.db'}",
                "ZHIKE_PROFILE": "development",
                # No load balancer to take the process out of rotation: Ctrl-C stops at once.
                "ZHIKE_LAME_DUCK_SECONDS": "0",
            }
            | self.issuer.service_settings()
            | self.field_keys
            | (extra_env or {})
        )
        log_file = self.logs / f"{name}.log"
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"zhike_{name}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return ServiceProcess(name, port, port + HEALTH_OFFSET, log_file, process)

    def _start_gateways(self, http_port: int, smtp_port: int) -> GatewaysProcess:
        log_file = self.logs / "gateways.log"
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    GATEWAYS_MODULE,
                    "--state-dir",
                    str(self.state_dir),
                    "--http-port",
                    str(http_port),
                    "--smtp-port",
                    str(smtp_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return GatewaysProcess("local gateways", http_port, smtp_port, log_file, process)

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        gateways = self.gateways
        while gateways is not None:
            if gateways.process.poll() is not None:
                raise RuntimeError(
                    f"{gateways.name} exited with {gateways.process.returncode}; "
                    f"last lines of {gateways.log_file}:\n{_tail(gateways.log_file)}"
                )
            if _listening(gateways.http_port) and _listening(gateways.smtp_port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{gateways.name} not listening after {START_TIMEOUT_SECONDS:.0f}s"
                )
            time.sleep(0.2)
        waiting = list(self.services)
        while waiting:
            for service in list(waiting):
                if service.process.poll() is not None:
                    raise RuntimeError(
                        f"{service.name} exited with {service.process.returncode}; "
                        f"last lines of {service.log_file}:\n{_tail(service.log_file)}"
                    )
                if _serving(service.port):
                    waiting.remove(service)
            if time.monotonic() > deadline:
                names = ", ".join(s.name for s in waiting)
                raise RuntimeError(f"not SERVING after {START_TIMEOUT_SECONDS:.0f}s: {names}")
            time.sleep(0.2)

    def exited(self) -> ServiceProcess | GatewaysProcess | None:
        processes: list[ServiceProcess | GatewaysProcess] = [*self.services]
        if self.gateways is not None:
            processes.append(self.gateways)
        return next((p for p in processes if p.process.poll() is not None), None)

    def stop(self) -> None:
        processes: list[ServiceProcess | GatewaysProcess] = [*self.services]
        if self.gateways is not None:
            processes.append(self.gateways)
        for service in processes:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in processes:
            try:
                service.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        self.nats.stop()


def _local_providers(http_gateway_port: int, smtp_port: int) -> dict[str, str]:
    """Notifications' providers: the local gateways, on the ports they were started on."""
    http = f"http://127.0.0.1:{http_gateway_port}"
    providers = [
        {"name": "local_sms", "channel": "sms", "url": http},
        {"name": "local_push", "channel": "push", "url": http},
        {"name": "local_email", "channel": "email", "url": f"smtp://127.0.0.1:{smtp_port}"},
    ]
    return {"ZHIKE_PROVIDERS": json.dumps(providers)}


def _local_webhooks(port: int) -> dict[str, str]:
    """Notifications' webhook server on the loopback interface only, and the unsubscribe links
    in the e-mails it sends pointing at it."""
    return {
        "ZHIKE_WEBHOOK_HOST": "127.0.0.1",
        "ZHIKE_WEBHOOK_PORT": str(port),
        "ZHIKE_WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }


def development_field_keys(path: Path) -> dict[str, str]:
    """ZHIKE_DATA_KEYS, ZHIKE_DATA_KEY_ID and ZHIKE_BLIND_INDEX_KEY for the local stack: random
    keys written to `path` (owner-only) on the first run and read back on later ones. Keys set
    in the environment win (nothing is generated then)."""
    names = ("ZHIKE_DATA_KEYS", "ZHIKE_DATA_KEY_ID", "ZHIKE_BLIND_INDEX_KEY")
    if any(name in os.environ for name in names):
        return {}
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = {
            "ZHIKE_DATA_KEYS": json.dumps({"dev1": generate_key()}),
            "ZHIKE_DATA_KEY_ID": "dev1",
            "ZHIKE_BLIND_INDEX_KEY": generate_key(),
        }
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(keys, handle, indent=2)
    loaded: dict[str, str] = json.loads(path.read_text())
    return {name: loaded[name] for name in names}


def main() -> int:
    state_dir = Path(os.environ.get("ZHIKE_DEV_STATE_DIR", ".zhike"))
    stop_requested = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = Stack(state_dir)
    code = 0
    try:
        stack.start()
        stack.wait_until_serving()
        _say("\nZhike is up (all health checks SERVING):")
        _say(f"  {'service':<14} {'gRPC':<18} {'health':<18} log")
        for s in stack.services:
            _say(f"  {s.name:<14} 127.0.0.1:{s.port:<8} 127.0.0.1:{s.health_port:<8} {s.log_file}")
        _say(f"  {'nats':<14} {stack.nats.url:<37} {stack.nats.log_file}")
        gateways = stack.gateways
        if gateways is not None:
            landed = stack.state_dir / "gateways"
            http_url = f"http://127.0.0.1:{gateways.http_port}"
            _say(
                f"\nLocal providers (what notifications sends lands here; log {gateways.log_file}):"
            )
            _say(f"  SMS and push   {http_url:<26} {landed}/sms/*.json, {landed}/push/*.json")
            _say(
                f"  e-mail (SMTP)  {'127.0.0.1:' + str(gateways.smtp_port):<26} {landed}/email/*.eml"
            )
            _say(
                f"  webhooks       {f'http://127.0.0.1:{stack.webhook_port}':<26} "
                "receipts, replies, unsubscribe links (notifications)"
            )
            _say(
                f"  make them fail: curl -X POST {http_url}/_control "
                '-H \'content-type: application/json\' -d \'{"channel": "sms", "mode": "5xx", "count": 3}\''
            )
        first = stack.services[0]
        _say(f"\nTry: grpcurl -plaintext 127.0.0.1:{first.port} list   (reflection is on locally)")
        _say("Every other call needs a token; mint a development one (roles: auth/permissions.py):")
        _say("  TOKEN=$(.venv/bin/zhike token --role branch_teller)")
        _say(
            f'  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d \'{{"party_id": "…"}}\' '
            f"127.0.0.1:{first.port} zhike.identity.v1.IdentityService/GetParty"
        )
        _say("Ctrl-C stops everything.")
        while not stop_requested:
            gone = stack.exited()
            if gone is not None:
                _say(f"{gone.name} exited unexpectedly; last lines:\n{_tail(gone.log_file)}")
                code = 1
                break
            time.sleep(0.5)
    except RuntimeError as error:
        _say(f"start-up failed: {error}")
        code = 1
    finally:
        _say("stopping…")
        stack.stop()
        _say("stopped.")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
