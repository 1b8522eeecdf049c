"""Tells what time alone changed: no source event marks the day a customer turns dormant, has a
birthday or sees a month leave his rolling average, so every `interval_seconds` the profile
assesses again each party it has not assessed today (once a day each, whichever replica gets
there first) and publishes a ProfileChanged (cause CHANGE_CAUSE_TIME) for those that changed.
A party's assessment is made under its lock; one refreshed by another replica is skipped."""

from __future__ import annotations

import asyncio
import logging

from zhike_profile.domain.service import ProfileUpdates, UnitFactory
from zhike_runtime.redaction import describe_error

log = logging.getLogger(__name__)

ROUND = 500  # parties listed per round; each is assessed in its own transaction


class DailyRefresh:
    def __init__(
        self, updates: ProfileUpdates, units: UnitFactory, interval_seconds: float
    ) -> None:
        self._updates = updates
        self._units = units
        self._interval = interval_seconds

    async def sweep(self) -> int:
        """Every party not assessed today, once: how many were looked at."""
        looked_at = 0
        after = ""
        while True:
            due = await self._updates.refresh_stale(self._units, after, ROUND)
            looked_at += len(due)
            if len(due) < ROUND:
                return looked_at
            after = due[-1]

    async def run(self) -> None:
        while True:
            try:
                looked_at = await self.sweep()
                if looked_at:
                    log.info("daily refresh done", extra={"parties": looked_at})
            except Exception as error:  # noqa: BLE001 - a database outage: try again next round
                log.warning("daily refresh failed", extra={"error": describe_error(error)})
            await asyncio.sleep(self._interval)
