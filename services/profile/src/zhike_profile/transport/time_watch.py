"""Tells what time alone changed. No source event marks the day a risk assessment stops holding,
a customer turns dormant, has a birthday or sees a month leave his rolling average, so the
profile looks for them itself and publishes each party's ProfileChanged (cause
CHANGE_CAUSE_TIME):

- expired risk assessments, every `risk_expiry_seconds` (RiskAssessmentExpired);
- the daily refresh, every `daily_refresh_seconds`: each party not assessed today is assessed
  again (once a day each, whichever replica gets there first) and told if anything changed.

Any replica may run both: a party's change is made under its lock, and a party already told
(or refreshed today) is not found again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from zhike_profile.domain.service import ProfileUpdates, UnitFactory
from zhike_runtime.redaction import describe_error

log = logging.getLogger(__name__)

ROUND = 500  # parties per round; each party is assessed in its own transaction


class TimeWatch:
    def __init__(
        self,
        updates: ProfileUpdates,
        units: UnitFactory,
        *,
        risk_expiry_seconds: float,
        daily_refresh_seconds: float,
    ) -> None:
        self._updates = updates
        self._units = units
        self._risk_expiry_seconds = risk_expiry_seconds
        self._daily_refresh_seconds = daily_refresh_seconds

    async def tell_expired_risks(self) -> int:
        """Every risk assessment expired by today and not told yet: how many were told."""
        told = 0
        while True:
            found = await self._updates.tell_expired_risks(self._units, ROUND)
            told += found
            if found < ROUND:
                return told

    async def refresh_daily(self) -> int:
        """Every party not assessed today, once: how many were looked at."""
        looked_at = 0
        after = ""
        while True:
            due = await self._updates.refresh_stale(self._units, after, ROUND)
            looked_at += len(due)
            if len(due) < ROUND:
                return looked_at
            after = due[-1]

    async def run_risk_expiry(self) -> None:
        await _every(self._risk_expiry_seconds, self.tell_expired_risks, "risk expiry")

    async def run_daily_refresh(self) -> None:
        await _every(self._daily_refresh_seconds, self.refresh_daily, "daily refresh")


async def _every(interval: float, sweep: Callable[[], Awaitable[int]], what: str) -> None:
    while True:
        try:
            parties = await sweep()
            if parties:
                log.info("time watch round done", extra={"watch": what, "parties": parties})
        except Exception as error:  # noqa: BLE001 - a database outage: try again next round
            log.warning(
                "time watch round failed", extra={"watch": what, "error": describe_error(error)}
            )
        await asyncio.sleep(interval)
