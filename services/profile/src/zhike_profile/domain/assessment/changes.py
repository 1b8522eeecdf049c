"""What changed between two assessments of a party: the facts offers and notifications react
to, published in `ProfileChanged` events. Only changes that matter downstream are listed (a new
balance moves the totals every day; that is the holdings' own event, not one of these)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from zhike_profile.domain.assessment.assessment import Assessment
from zhike_profile.domain.assessment.risk import RiskStatus
from zhike_profile.domain.facts import CustomerRisk


@dataclass(frozen=True)
class TierChanged:
    before: str  # tier names: "silver"
    after: str  # "gold"
    before_label: str
    after_label: str
    reason: str  # why the new tier: "Gold: holds a platinum card (card centre)"

    def __str__(self) -> str:
        return f"tier {self.before_label} → {self.after_label} ({self.reason})"


@dataclass(frozen=True)
class ValueBandChanged:
    before: str
    after: str

    def __str__(self) -> str:
        return f"value band {self.before} → {self.after}"


@dataclass(frozen=True)
class SegmentEntered:
    segment: str
    description: str

    def __str__(self) -> str:
        return f"entered segment {self.segment}"


@dataclass(frozen=True)
class SegmentLeft:
    segment: str
    description: str

    def __str__(self) -> str:
        return f"left segment {self.segment}"


@dataclass(frozen=True)
class RiskLevelChanged:
    """The level a sale may rely on changed: a new assessment, or a first or renewed one
    (None: no valid assessment); or the level stayed and its expiry moved (renewed at the same
    level), which consumers need to know until when it holds."""

    before: CustomerRisk | None
    after: CustomerRisk | None
    expires_on: dt.date | None  # the new assessment's expiry

    def __str__(self) -> str:
        def name(level: CustomerRisk | None) -> str:
            return "none" if level is None else level.name

        return f"risk level {name(self.before)} → {name(self.after)}"


@dataclass(frozen=True)
class RiskLevelExpired:
    level: CustomerRisk
    expired_on: dt.date

    def __str__(self) -> str:
        return f"risk level {self.level.name} expired on {self.expired_on.isoformat()}"


@dataclass(frozen=True)
class AgeChanged:
    """The customer's age in whole years (offers' eligibility rules read it): a birthday, or a
    birth date that arrived, changed or left the party (None: not known)."""

    before: int | None
    after: int | None

    def __str__(self) -> str:
        # The age is personal data and these strings may reach logs: named, never shown.
        return "age changed"


Change = (
    TierChanged
    | ValueBandChanged
    | SegmentEntered
    | SegmentLeft
    | RiskLevelChanged
    | RiskLevelExpired
    | AgeChanged
)


def changes(before: Assessment, after: Assessment) -> tuple[Change, ...]:
    """The changes from `before` to `after`, in a fixed order: tier, value band, segments left
    and entered (by name), risk, age. `changes(a, a)` is empty."""
    found: list[Change] = []
    if before.tier.name != after.tier.name:
        found.append(
            TierChanged(
                before=before.tier.name,
                after=after.tier.name,
                before_label=before.tier.label,
                after_label=after.tier.label,
                reason=after.tier.reason,
            )
        )
    if before.value.band != after.value.band:
        found.append(ValueBandChanged(before.value.band, after.value.band))
    was = {segment.name: segment for segment in before.segments}
    now = {segment.name: segment for segment in after.segments}
    found.extend(
        SegmentLeft(name, was[name].description) for name in sorted(was.keys() - now.keys())
    )
    found.extend(
        SegmentEntered(name, now[name].description) for name in sorted(now.keys() - was.keys())
    )
    risk = risk_change(before.risk, after.risk)
    if risk is not None:
        found.append(risk)
    if before.age != after.age:
        found.append(AgeChanged(before.age, after.age))
    return tuple(found)


class RiskReading(Protocol):
    """A risk assessment as of a day, as an assessment or a published snapshot holds it."""

    @property
    def status(self) -> RiskStatus: ...

    @property
    def level(self) -> CustomerRisk | None: ...

    @property
    def expires_on(self) -> dt.date | None: ...

    @property
    def effective_level(self) -> CustomerRisk | None: ...


def risk_change(
    before: RiskReading, after: RiskReading
) -> RiskLevelChanged | RiskLevelExpired | None:
    """What changed in the risk level a sale may rely on: the level, or its expiry when it
    stays valid at the same level (a renewal: consumers hold the expiry and stop selling on
    it). None when neither changed."""
    old, new = before.effective_level, after.effective_level
    if old == new and (new is None or before.expires_on == after.expires_on):
        return None
    if (
        old is not None
        and after.status is RiskStatus.EXPIRED
        and after.level == old
        and after.expires_on is not None
    ):
        return RiskLevelExpired(old, after.expires_on)
    return RiskLevelChanged(old, new, after.expires_on)
