"""What offers know of a party: its own projection of the facts the offer rules read.

The projection is fed by the profile's `ProfileChanged` events (storage keeps it), so a decision
never calls the profile service and keeps working through a profile outage. Two flags are kept by
offers itself: do-not-contact and the customer's "personalised offers" switch (PIPL art. 24).

Money is never a float here: amounts are integer minor units per ISO 4217 currency. The rules see
major units as CEL doubles (eligibility.py converts), because that is how a rule is written.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class FactKind(enum.StrEnum):
    """The kinds of fact an offer can depend on: a `ProfileChanged` carrying one of them makes
    the offers that depend on it decide again for that party (transport maps fact → kind)."""

    ASSETS = "assets"  # BalanceChanged, side ASSETS
    LIABILITIES = "liabilities"  # BalanceChanged, side LIABILITIES
    HOLDINGS = "holdings"  # HoldingOpened / HoldingClosed
    TIER = "tier"
    VALUE_BAND = "value_band"
    SEGMENTS = "segments"  # SegmentEntered / SegmentLeft
    RISK = "risk"  # RiskLevelChanged / RiskAssessmentExpired
    CONSENT = "consent"
    AGE = "age"  # AgeChanged


class ConsentPurpose(enum.StrEnum):
    MARKETING = "marketing"
    SERVICE = "service"
    RISK_ALERTS = "risk_alerts"


@dataclass(frozen=True, order=True)
class Holding:
    """An open holding: profile's product line in lower case ("credit_card", "investment"…),
    the bank's product code and the account's currency."""

    product_line: str
    product_code: str
    currency: str


@dataclass(frozen=True)
class OfferFacts:
    party_id: str
    profile_version: int = 0
    assets: Mapping[str, int] = field(
        default_factory=dict
    )  # currency → minor units (BalanceChanged ASSETS, after)
    liabilities: Mapping[str, int] = field(default_factory=dict)
    holdings: frozenset[Holding] = frozenset()
    tier: str = ""  # "" = not known yet
    value_band: str = ""
    segments: frozenset[str] = frozenset()
    customer_risk: int = 0  # 0 = none, 1..5 = C1..C5
    risk_expires_on: dt.date | None = None
    # (consent channel, purpose) → given, as profile's ConsentChanged states it: channel is the
    # ContactChannel in lower case ("sms", "email", "push", "phone_call", "branch").
    consents: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    # Whole years on the bank's day (AgeChanged: up to a day late on a birthday); None = not
    # known (no birth date, or not told yet).
    age: int | None = None
    # Kept by offers itself:
    do_not_contact: bool = False
    personalised_offers: bool = True
    opted_out_channels: frozenset[str] = frozenset()  # outbound channels opted out of

    def effective_risk(self, today: dt.date) -> int:
        """The customer's risk level as of `today`: 0 when never assessed, without an expiry
        date, or expired (profile's rule: expired from the expiry day on)."""
        if self.customer_risk <= 0 or self.risk_expires_on is None:
            return 0
        return self.customer_risk if today < self.risk_expires_on else 0

    def consent(self, channel: str, purpose: ConsentPurpose) -> bool | None:
        """The decision in force for a consent channel and purpose; None when never stated."""
        return self.consents.get((channel, purpose.value))

    @property
    def primary_segment(self) -> str:
        """The segment the propensity model learns under: the first of the sorted segments, or
        "all" when the party is in none."""
        return min(self.segments) if self.segments else "all"
