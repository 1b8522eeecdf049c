"""What a ProfileChanged describes: the snapshot of a party's profile as last published, and
the facts by which a new snapshot differs from it.

The profile keeps the snapshot its last ProfileChanged was computed against. After any
committed change (a source fact, identity moving records, time passing) it takes a new one and
publishes the difference, so every change is told once, as what it did to the party: "USD
6,000.00 → 0.00", "holding closed", "tier silver → gold". Comparing with what was published,
not with the state just before, also catches what changes with time alone (a risk assessment
that expired) at the next look.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zhike_profile.domain.assessment import Assessment
from zhike_profile.domain.assessment.changes import (
    AgeChanged,
    SegmentEntered,
    SegmentLeft,
    TierChanged,
    ValueBandChanged,
    risk_change,
)
from zhike_profile.domain.assessment.changes import (
    Change as AssessmentChange,
)
from zhike_profile.domain.assessment.risk import RiskStatus
from zhike_profile.domain.facts import (
    Channel,
    ConsentEvidence,
    CustomerRisk,
    PartyFacts,
    ProductLine,
    Purpose,
    SourceKey,
)
from zhike_profile.domain.party_facts import is_liability


@dataclass(frozen=True, order=True)
class HoldingKey:
    source: SourceKey
    account_id: str
    currency: str


@dataclass(frozen=True)
class HoldingLine:
    product_line: ProductLine
    product_code: str


class BalanceSide(enum.StrEnum):
    ASSETS = "assets"
    LIABILITIES = "liabilities"


@dataclass(frozen=True)
class ConsentState:
    given: bool
    evidence: ConsentEvidence


@dataclass(frozen=True)
class TierState:
    name: str
    label: str
    reason: str


@dataclass(frozen=True)
class RiskState:
    status: RiskStatus
    level: CustomerRisk | None = None
    expires_on: dt.date | None = None

    @property
    def effective_level(self) -> CustomerRisk | None:
        return self.level if self.status is RiskStatus.VALID else None


@dataclass(frozen=True)
class Snapshot:
    """A party's profile as far as ProfileChanged tells it."""

    holdings: Mapping[HoldingKey, HoldingLine] = field(default_factory=dict)  # open ones
    # Per currency, (assets, liabilities) over the open holdings, in minor units.
    balances: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    consents: Mapping[tuple[Channel, Purpose], ConsentState] = field(default_factory=dict)
    tier: TierState | None = None
    value_band: str | None = None
    segments: Mapping[str, str] = field(default_factory=dict)  # name → description
    risk: RiskState = RiskState(RiskStatus.NOT_ASSESSED)
    age: int | None = None  # whole years; None: no birth date (or not assessed)
    # Not told in events; kept for SearchProfiles.
    total_assets_cny_minor: int = 0


EMPTY = Snapshot()


@dataclass(frozen=True)
class HoldingOpened:
    key: HoldingKey
    line: HoldingLine


@dataclass(frozen=True)
class HoldingClosed:
    key: HoldingKey
    line: HoldingLine


@dataclass(frozen=True)
class BalanceChanged:
    currency: str
    side: BalanceSide
    before_minor: int
    after_minor: int


@dataclass(frozen=True)
class ConsentChanged:
    channel: Channel
    purpose: Purpose
    given: bool
    # None: the party holds no decision any more (the record that held it left the party), so
    # there is no capture to show; consumers read the absence as no consent.
    evidence: ConsentEvidence | None


ProfileFact = HoldingOpened | HoldingClosed | BalanceChanged | ConsentChanged | AssessmentChange


class ChangeCause(enum.StrEnum):
    SOURCE_EVENT = "source_event"
    IDENTITY = "identity"
    TIME = "time"
    NOTIFICATIONS = "notifications"  # a message sent, or a consent withdrawn through one


@dataclass(frozen=True)
class ProfileChanged:
    party_id: str
    version: int  # one more for each of the party's events
    at: dt.datetime
    cause: ChangeCause
    facts: tuple[ProfileFact, ...]
    merged_into: str = ""
    forwarding_ended: bool = False  # a retired id that leads nowhere any more


def take(facts: PartyFacts, assessment: Assessment | None) -> Snapshot:
    """The snapshot of a party's facts and their assessment (None: not assessed)."""
    holdings: dict[HoldingKey, HoldingLine] = {}
    balances: dict[str, tuple[int, int]] = {}
    for holding in facts.holdings:
        if not holding.is_open:
            continue
        money = holding.balance
        holdings[HoldingKey(holding.source, holding.account_id, money.currency)] = HoldingLine(
            holding.product_line, holding.product_code
        )
        assets, liabilities = balances.get(money.currency, (0, 0))
        # As the totals split them: what is owed is a liability, the rest an asset.
        owed = is_liability(holding.product_line) == (money.minor_units > 0)
        if owed:
            liabilities += abs(money.minor_units)
        else:
            assets += abs(money.minor_units)
        balances[money.currency] = (assets, liabilities)
    consents = {(c.channel, c.purpose): ConsentState(c.given, c.evidence) for c in facts.consents}
    if assessment is None:
        return Snapshot(holdings, balances, consents)
    tier = assessment.tier
    risk = assessment.risk
    return Snapshot(
        holdings=holdings,
        balances=balances,
        consents=consents,
        tier=TierState(tier.name, tier.label, tier.reason),
        value_band=assessment.value.band,
        segments={s.name: s.description for s in assessment.segments},
        risk=RiskState(risk.status, risk.level, risk.expires_on),
        age=assessment.age,
        total_assets_cny_minor=assessment.totals.assets.minor_units,
    )


def differences(before: Snapshot, after: Snapshot) -> tuple[ProfileFact, ...]:
    """What a consumer needs to know, in a fixed order: holdings closed and opened, balances
    per currency, consents, tier, value band, segments left and entered, risk, age."""
    found: list[ProfileFact] = []
    # A holding whose product changed on its account (a card reissued as another product) is
    # told as the old one closed, then the new one opened: a consumer keeping one entry per
    # account and currency ends with the new one, one keeping products drops the old.
    replaced = {
        key
        for key in before.holdings.keys() & after.holdings.keys()
        if before.holdings[key] != after.holdings[key]
    }
    for key in sorted((before.holdings.keys() - after.holdings.keys()) | replaced):
        found.append(HoldingClosed(key, before.holdings[key]))
    for key in sorted((after.holdings.keys() - before.holdings.keys()) | replaced):
        found.append(HoldingOpened(key, after.holdings[key]))
    for currency in sorted(before.balances.keys() | after.balances.keys()):
        was = before.balances.get(currency, (0, 0))
        now = after.balances.get(currency, (0, 0))
        for index, side in enumerate((BalanceSide.ASSETS, BalanceSide.LIABILITIES)):
            if was[index] != now[index]:
                found.append(BalanceChanged(currency, side, was[index], now[index]))
    for channel, purpose in sorted(after.consents.keys() | before.consents.keys()):
        state = after.consents.get((channel, purpose))
        if state is None:
            # Only in `before`: its record left the party. Consumers keep the last decision
            # told, so the absence must be told, as "not given" (contact needs a clear yes).
            found.append(ConsentChanged(channel, purpose, False, None))
        elif state != before.consents.get((channel, purpose)):
            found.append(ConsentChanged(channel, purpose, state.given, state.evidence))
    found.extend(_assessment_changes(before, after))
    return tuple(found)


def _assessment_changes(before: Snapshot, after: Snapshot) -> list[AssessmentChange]:
    """As zhike_profile.domain.assessment.changes tells them, from snapshots."""
    found: list[AssessmentChange] = []
    if after.tier is not None and (before.tier is None or before.tier.name != after.tier.name):
        found.append(
            TierChanged(
                before=before.tier.name if before.tier else "",
                after=after.tier.name,
                before_label=before.tier.label if before.tier else "",
                after_label=after.tier.label,
                reason=after.tier.reason,
            )
        )
    if after.value_band is not None and before.value_band != after.value_band:
        found.append(ValueBandChanged(before.value_band or "", after.value_band))
    was, now = before.segments, after.segments
    found.extend(SegmentLeft(name, was[name]) for name in sorted(was.keys() - now.keys()))
    found.extend(SegmentEntered(name, now[name]) for name in sorted(now.keys() - was.keys()))
    risk = risk_change(before.risk, after.risk)
    if risk is not None:
        found.append(risk)
    # As the tier, told of an assessed party only: one merged away is told `merged_into`, not
    # that its age became unknown.
    if after.tier is not None and before.age != after.age:
        found.append(AgeChanged(before.age, after.age))
    return found


# --- stored form (JSON) ---------------------------------------------------------------------


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "holdings": [
            [
                k.source.source_system,
                k.source.source_record_id,
                k.account_id,
                k.currency,
                line.product_line.value,
                line.product_code,
            ]
            for k, line in sorted(snapshot.holdings.items())
        ],
        "balances": {c: list(pair) for c, pair in sorted(snapshot.balances.items())},
        "consents": [
            [
                channel.value,
                purpose.value,
                state.given,
                state.evidence.where,
                state.evidence.captured_at.isoformat(),
                state.evidence.text_version,
            ]
            for (channel, purpose), state in sorted(snapshot.consents.items())
        ],
        "tier": (
            None
            if snapshot.tier is None
            else [snapshot.tier.name, snapshot.tier.label, snapshot.tier.reason]
        ),
        "value_band": snapshot.value_band,
        "segments": dict(sorted(snapshot.segments.items())),
        "risk": [
            snapshot.risk.status.value,
            None if snapshot.risk.level is None else snapshot.risk.level.name,
            None if snapshot.risk.expires_on is None else snapshot.risk.expires_on.isoformat(),
        ],
        "age": snapshot.age,
        "total_assets_cny_minor": snapshot.total_assets_cny_minor,
    }


def from_json(data: Mapping[str, Any] | None) -> Snapshot:
    if not data:
        return EMPTY
    holdings = {
        HoldingKey(SourceKey(system, record), account, currency): HoldingLine(
            ProductLine(line), code
        )
        for system, record, account, currency, line, code in data["holdings"]
    }
    consents = {
        (Channel(channel), Purpose(purpose)): ConsentState(
            bool(given), ConsentEvidence(dt.datetime.fromisoformat(at), where, version)
        )
        for channel, purpose, given, where, at, version in data["consents"]
    }
    tier = data["tier"]
    status, level, expires = data["risk"]
    # Absent from a snapshot stored before ProfileChanged told the age: read as not told, so
    # the party's next change (at the latest the daily refresh) tells its age once.
    age = data.get("age")
    return Snapshot(
        holdings=holdings,
        balances={c: (int(pair[0]), int(pair[1])) for c, pair in data["balances"].items()},
        consents=consents,
        tier=None if tier is None else TierState(*tier),
        value_band=data["value_band"],
        segments=dict(data["segments"]),
        risk=RiskState(
            RiskStatus(status),
            None if level is None else CustomerRisk[level],
            None if expires is None else dt.date.fromisoformat(expires),
        ),
        age=None if age is None else int(age),
        total_assets_cny_minor=int(data["total_assets_cny_minor"]),
    )
