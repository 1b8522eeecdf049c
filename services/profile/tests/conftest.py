"""Fixtures shared by the profile's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .profile_harness import Harness


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    """The profile's use cases over a fresh, migrated database (SQLite or PostgreSQL)."""
    started = await Harness.start(database_url)
    try:
        yield started
    finally:
        await started.close()
