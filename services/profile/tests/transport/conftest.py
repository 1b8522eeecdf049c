from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zhike_runtime.testing.processes import NatsServer

from .identity_and_profile import Stack, identity_and_profile


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with identity_and_profile(nats_server.url, tmp_path) as running:
        yield running
