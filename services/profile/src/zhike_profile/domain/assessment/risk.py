"""The customer's risk level (C1–C5) as of a day: valid, expired, or not assessed."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from zhike_profile.domain.facts import CustomerRisk, PartyFacts


class RiskStatus(enum.StrEnum):
    NOT_ASSESSED = "not_assessed"
    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # assessed after as_of (facts newer than the day asked about)


@dataclass(frozen=True)
class RiskView:
    status: RiskStatus
    level: CustomerRisk | None = None  # the level assessed, whatever its status
    assessed_on: dt.date | None = None
    expires_on: dt.date | None = None

    @property
    def effective_level(self) -> CustomerRisk | None:
        """The level a product sale may rely on: only a valid assessment gives one."""
        return self.level if self.status is RiskStatus.VALID else None

    def __str__(self) -> str:
        if self.level is None or self.expires_on is None:
            return "not assessed"
        if self.status is RiskStatus.VALID:
            return f"{self.level.name}, valid until {self.expires_on.isoformat()}"
        if self.status is RiskStatus.EXPIRED:
            return f"{self.level.name}, expired on {self.expires_on.isoformat()}"
        return f"{self.level.name}, valid from {self.assessed_on}"


def assess_risk(facts: PartyFacts) -> RiskView:
    risk = facts.risk
    if risk is None:
        return RiskView(RiskStatus.NOT_ASSESSED)
    if risk.valid_on(facts.as_of):
        status = RiskStatus.VALID
    elif facts.as_of >= risk.expires_on:
        status = RiskStatus.EXPIRED
    else:
        status = RiskStatus.NOT_YET_VALID
    return RiskView(status, risk.level, risk.assessed_on, risk.expires_on)
