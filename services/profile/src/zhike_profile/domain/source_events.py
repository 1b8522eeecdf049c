"""Source systems' facts as the profile applies them: one event, a few small changes.

The contract (zhike.source.v1.SourceEvent) has a fact per business event; the codec turns each
into the changes it makes to a source record's facts (a card issued opens a holding and sets its
tier; a loan drawn opens a holding and sets its balance), so storage has one conditional write
per kind of change and no knowledge of the contract.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from zhike_profile.domain.facts import (
    CardTier,
    Consent,
    Direction,
    InteractionKind,
    Preferences,
    ProductLine,
    ProductRisk,
    RiskAssessment,
    SentMessage,
    SourceKey,
)


@dataclass(frozen=True)
class OpenAccount:
    """AccountOpened, CardIssued, LoanDrawn, InvestmentBought: the holding is (re)opened and
    what it is becomes known."""

    account_id: str
    product_line: ProductLine
    product_code: str
    currency: str
    branch_code: str
    opened_on: dt.date


@dataclass(frozen=True)
class CloseAccount:
    account_id: str
    closed_on: dt.date


@dataclass(frozen=True)
class SetBalance:
    account_id: str
    currency: str
    balance_minor: int


@dataclass(frozen=True)
class AddTransaction:
    account_id: str
    currency: str
    amount_minor: int  # positive
    direction: Direction
    salary: bool = False  # a payroll credit
    card_purchase: bool = False  # a purchase with the card (card present or not)


@dataclass(frozen=True)
class SetCardTier:
    account_id: str
    card_tier: CardTier


@dataclass(frozen=True)
class SetProductRisk:
    account_id: str
    risk: ProductRisk


@dataclass(frozen=True)
class SetOverdue:
    account_id: str
    overdue_days: int


@dataclass(frozen=True)
class RecordInteraction:
    kind: InteractionKind
    branch_code: str
    detail: str


@dataclass(frozen=True)
class RecordMessage:
    """A message notifications sent, kept in the contact history as an interaction
    (MESSAGE_SENT) keyed by its notification id."""

    message: SentMessage


@dataclass(frozen=True)
class SetConsent:
    consent: Consent


@dataclass(frozen=True)
class SetPreferences:
    preferences: Preferences


@dataclass(frozen=True)
class SetRiskAssessment:
    assessment: RiskAssessment


Change = (
    OpenAccount
    | CloseAccount
    | SetBalance
    | AddTransaction
    | SetCardTier
    | SetProductRisk
    | SetOverdue
    | RecordInteraction
    | RecordMessage
    | SetConsent
    | SetPreferences
    | SetRiskAssessment
)


@dataclass(frozen=True)
class SourceEvent:
    source: SourceKey
    event_id: str  # unique within the source system
    at: dt.datetime  # when it happened at the source (UTC)
    sequence: int  # the version of what it changes: per account, or per record and fact
    changes: tuple[Change, ...]
