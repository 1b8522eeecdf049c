"""Tells expired risk assessments: no source event marks the day an assessment stops holding,
so the profile looks for them itself, every `interval_seconds`, and publishes each one's
ProfileChanged (cause CHANGE_CAUSE_TIME, fact RiskAssessmentExpired). Any replica may run it: a
party's change is made under its lock, and one already told is not found again."""

from __future__ import annotations

import asyncio
import logging

from zhike_profile.domain.service import ProfileUpdates, UnitFactory
from zhike_runtime.redaction import describe_error

log = logging.getLogger(__name__)

# Parties looked at per transaction round; a full round is followed at once by the next.
ROUND = 500


class RiskExpiryWatch:
    def __init__(
        self, updates: ProfileUpdates, units: UnitFactory, interval_seconds: float
    ) -> None:
        self._updates = updates
        self._units = units
        self._interval = interval_seconds

    async def run(self) -> None:
        while True:
            try:
                while await self._updates.tell_expired_risks(self._units, ROUND) == ROUND:
                    pass
            except Exception as error:  # noqa: BLE001 - a database outage: try again next round
                log.warning(
                    "telling expired risk assessments failed",
                    extra={"error": describe_error(error)},
                )
            await asyncio.sleep(self._interval)
