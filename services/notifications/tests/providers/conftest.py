"""The local gateways, real servers in this event loop, storing under the test's directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from zhike_notifications.local_gateways import LocalGateways, running_gateways


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[LocalGateways]:
    async with running_gateways(tmp_path / "state") as running:
        yield running
