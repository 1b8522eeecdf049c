"""A nats-server run with the NATS allow-list (events/nats_permissions.py), for tests: a fresh
NKey seed file per user, the server configured from the same `server_authorization()` that the
kind cluster gets, and an observer user that sees everything, to count what got through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from zhike_runtime.events.bus import NatsAccess, connect_to_nats, inbox_prefix
from zhike_runtime.events.nats_permissions import (
    new_seed,
    public_key,
    server_authorization,
    users,
)
from zhike_runtime.testing.processes import NatsServer, NatsTls

# A test-only user without restrictions: it publishes what the services may not, and
# subscribes to what they may not, to show what the server let through (nothing).
OBSERVER = "test-observer"


@dataclass(frozen=True)
class PermissionedNats:
    server: NatsServer
    seed_files: Mapping[str, Path]

    @property
    def url(self) -> str:
        return self.server.url

    def access(self, user: str, **tls: Any) -> NatsAccess:
        """How `user` connects: its seed, its own inbox (and any TLS fields of NatsAccess)."""
        return NatsAccess(
            inbox_prefix=inbox_prefix(user), nkey_seed_file=self.seed_files[user], **tls
        )

    async def connect(self, user: str, **options: Any) -> Client:
        """A raw connection as `user`; fails fast instead of reconnecting."""
        options = {"connect_timeout": 2, "allow_reconnect": False} | options
        return await connect_to_nats(self.url, f"test-{user}", self.access(user), **options)


def permissioned_nats_server(directory: Path, *, tls: NatsTls | None = None) -> PermissionedNats:
    """A nats-server (not started yet) that knows only the allow-list's users and the observer."""
    directory.mkdir(parents=True, exist_ok=True)
    seed_files: dict[str, Path] = {}
    for user in (*users(), OBSERVER):
        seed_file = directory / f"{user}.nk"
        seed_file.write_text(new_seed() + "\n")
        seed_file.chmod(0o600)
        seed_files[user] = seed_file
    authorization = server_authorization(
        {user: public_key(seed_files[user].read_text()) for user in users()}
    )
    observer = {"nkey": public_key(seed_files[OBSERVER].read_text())}
    authorization["users"].append(observer)
    server = NatsServer(directory / "server", authorization=authorization, tls=tls)
    return PermissionedNats(server, seed_files)
