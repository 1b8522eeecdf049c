"""Offers' own projection of a party's facts, fed by the profile's ProfileChanged (pure).

A ProfileChanged says what changed, each fact as an absolute value under a key: the balance of
one currency on one side, one holding (source record and account), the tier, the value band,
one segment, the consent for one channel and purpose, the risk assessment, the age in years. The
projection keeps each key with the profile_version that last set it and takes a new value only
from a higher version (storage's conditional upsert), so duplicated, late and reordered events
end in the state in-order delivery gives.

`entries` turns a change into the (key, kind, value) rows storage keeps; `assemble` turns the
rows of a party back into `OfferFacts`. Values are plain JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zhike_offers.domain.facts import FactKind, Holding, OfferFacts


@dataclass(frozen=True)
class BalanceFact:
    currency: str  # ISO 4217
    liabilities: bool  # False: the assets side
    minor_units: int  # the total after the change


@dataclass(frozen=True)
class HoldingFact:
    source_system: str
    source_record_id: str
    account_id: str
    holding: Holding
    open: bool  # False: closed, or its record left the party


@dataclass(frozen=True)
class TierFact:
    tier: str


@dataclass(frozen=True)
class ValueBandFact:
    band: str


@dataclass(frozen=True)
class SegmentFact:
    segment: str
    member: bool


@dataclass(frozen=True)
class ConsentFact:
    channel: str  # the profile's contact channel, lower case: "sms", "phone_call"
    purpose: str  # "marketing", "service", "risk_alerts"
    given: bool


@dataclass(frozen=True)
class RiskFact:
    level: int  # 0: none; 1..5 = C1..C5
    expires_on: dt.date | None
    # RiskAssessmentExpired: the profile says it no longer holds, whatever offers' clock says.
    expired: bool = False


@dataclass(frozen=True)
class AgeFact:
    years: int | None  # None: not known any more (the birth date left the party)


Fact = (
    BalanceFact
    | HoldingFact
    | TierFact
    | ValueBandFact
    | SegmentFact
    | ConsentFact
    | RiskFact
    | AgeFact
)


@dataclass(frozen=True)
class ProfileChange:
    """One ProfileChanged, decoded."""

    party_id: str
    profile_version: int  # ≥ 1, one more for each change of the party
    at: dt.datetime
    facts: tuple[Fact, ...]
    merged_into: str = ""  # set when identity merged the party into another
    # Identity ended the retired id's forwarding: merged_into is the party the split kept.
    forwarding_ended: bool = False


@dataclass(frozen=True)
class FactEntry:
    key: str
    kind: FactKind
    value: Any  # JSON


_KIND_OF_PREFIX = {
    "assets": FactKind.ASSETS,
    "liabilities": FactKind.LIABILITIES,
    "holding": FactKind.HOLDINGS,
    "tier": FactKind.TIER,
    "value_band": FactKind.VALUE_BAND,
    "segment": FactKind.SEGMENTS,
    "consent": FactKind.CONSENT,
    "risk": FactKind.RISK,
    "age": FactKind.AGE,
}


def kind_of(key: str) -> FactKind:
    return _KIND_OF_PREFIX[key.split(":", 1)[0]]


def segment_key(segment: str) -> str:
    return f"segment:{segment}"


def entries(change: ProfileChange, zone: dt.tzinfo) -> list[FactEntry]:
    """The rows a change sets, one per key (a key told twice: the last telling)."""
    found: dict[str, FactEntry] = {}

    def put(key: str, value: Any) -> None:
        found[key] = FactEntry(key, kind_of(key), value)

    for fact in change.facts:
        if isinstance(fact, BalanceFact):
            side = "liabilities" if fact.liabilities else "assets"
            put(f"{side}:{fact.currency}", fact.minor_units)
        elif isinstance(fact, HoldingFact):
            h = fact.holding
            key = (
                f"holding:{fact.source_system}:{fact.source_record_id}:{fact.account_id}:"
                f"{h.currency}"
            )
            put(key, [h.product_line, h.product_code, h.currency, fact.open])
        elif isinstance(fact, TierFact):
            put("tier", fact.tier)
        elif isinstance(fact, ValueBandFact):
            put("value_band", fact.band)
        elif isinstance(fact, SegmentFact):
            put(segment_key(fact.segment), fact.member)
        elif isinstance(fact, ConsentFact):
            put(f"consent:{fact.channel}:{fact.purpose}", fact.given)
        elif isinstance(fact, AgeFact):
            put("age", fact.years)  # null: not known any more, kept under its version
        else:
            expires = fact.expires_on
            if fact.expired:
                # Expired as of the change at the latest: a clock a day behind the profile's
                # must not keep selling investments on an assessment the profile says is gone.
                day = change.at.astimezone(zone).date()
                expires = day if expires is None else min(expires, day)
            put("risk", [fact.level, None if expires is None else expires.isoformat()])
    return list(found.values())


def assemble(
    party_id: str,
    profile_version: int,
    values: Mapping[str, Any],
    *,
    do_not_contact: bool = False,
    personalised_offers: bool = True,
    opted_out_channels: frozenset[str] = frozenset(),
) -> OfferFacts:
    """A party's facts from its rows (key → value)."""
    assets: dict[str, int] = {}
    liabilities: dict[str, int] = {}
    holdings: set[Holding] = set()
    segments: set[str] = set()
    consents: dict[tuple[str, str], bool] = {}
    tier = value_band = ""
    risk, expires_on = 0, None
    age: int | None = None
    for key, value in values.items():
        prefix, _, rest = key.partition(":")
        if prefix == "assets":
            if value:
                assets[rest] = int(value)
        elif prefix == "liabilities":
            if value:
                liabilities[rest] = int(value)
        elif prefix == "holding":
            line, code, currency, is_open = value
            if is_open:
                holdings.add(Holding(line, code, currency))
        elif prefix == "segment":
            if value:
                segments.add(rest)
        elif prefix == "consent":
            channel, _, purpose = rest.partition(":")
            consents[(channel, purpose)] = bool(value)
        elif prefix == "tier":
            tier = str(value)
        elif prefix == "value_band":
            value_band = str(value)
        elif prefix == "risk":
            level, expires = value
            risk = int(level)
            expires_on = None if expires is None else dt.date.fromisoformat(expires)
        elif prefix == "age":
            age = None if value is None else int(value)
    return OfferFacts(
        party_id=party_id,
        profile_version=profile_version,
        assets=assets,
        liabilities=liabilities,
        holdings=frozenset(holdings),
        tier=tier,
        value_band=value_band,
        segments=frozenset(segments),
        customer_risk=risk,
        risk_expires_on=expires_on,
        consents=consents,
        age=age,
        do_not_contact=do_not_contact,
        personalised_offers=personalised_offers,
        opted_out_channels=opted_out_channels,
    )
