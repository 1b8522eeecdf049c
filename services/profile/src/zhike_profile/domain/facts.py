"""What the profile knows about a party, as plain values: the input of every assessment (tier,
value, segments) and the material of the 360° view. Storage builds it from the applied source
events; the assessments are pure functions of it (and of configuration), so each is tested
without I/O and explains itself from these facts alone.

Money is never a float: amounts are integer minor units with their ISO 4217 currency (CNY 1.00
is 100; JPY would have no minor unit, so the currency's exponent comes with it).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class SourceKey:
    """A source record's key, the same one identity links (source system + record id)."""

    source_system: str
    source_record_id: str


# The facts notifications tells about a party (the messages it sent, the consents the customer
# withdrew by replying to one or unsubscribing) are kept as the facts of one more record of the
# party: ("zhike.notifications", <party id>). Its name holds a '.', which no source system's may
# (source systems are NATS subject tokens), so no source event can write to it; identity never
# links it, the profile does (and a merge moves it to the survivor with the party's records).
NOTIFICATIONS_SYSTEM = "zhike.notifications"


def notifications_record(party_id: str) -> SourceKey:
    """The record of a party's facts from notifications."""
    return SourceKey(NOTIFICATIONS_SYSTEM, party_id)


@dataclass(frozen=True)
class Money:
    currency: str  # ISO 4217, upper case: CNY, USD, EUR, HKD…
    minor_units: int  # signed; 600000 USD minor units is USD 6,000.00
    exponent: int = 2  # minor units per major unit = 10 ** exponent

    def __str__(self) -> str:
        sign = "-" if self.minor_units < 0 else ""
        major, minor = divmod(abs(self.minor_units), 10**self.exponent)
        if self.exponent == 0:
            return f"{self.currency} {sign}{major:,}"
        return f"{self.currency} {sign}{major:,}.{minor:0{self.exponent}d}"


class ProductLine(enum.StrEnum):
    CURRENT_ACCOUNT = "current_account"
    SAVINGS = "savings"
    TIME_DEPOSIT = "time_deposit"
    CREDIT_CARD = "credit_card"
    DEBIT_CARD = "debit_card"
    MORTGAGE = "mortgage"
    PERSONAL_LOAN = "personal_loan"
    INVESTMENT = "investment"  # wealth-management products, funds


class CardTier(enum.IntEnum):
    """Card tiers as card centres issue them, lowest first (comparable)."""

    STANDARD = 1
    GOLD = 2
    PLATINUM = 3
    DIAMOND = 4


class ProductRisk(enum.IntEnum):
    """Product risk level R1 (lowest) to R5."""

    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5


class CustomerRisk(enum.IntEnum):
    """Customer risk tolerance C1 (conservative) to C5, from a risk assessment."""

    C1 = 1
    C2 = 2
    C3 = 3
    C4 = 4
    C5 = 5


@dataclass(frozen=True)
class Holding:
    """One account, card, loan or investment position and its balance in one currency.
    An account holding several currencies is several holdings with the same account id."""

    source: SourceKey  # the source record (customer) it belongs to
    account_id: str  # unique within the source system
    product_line: ProductLine
    product_code: str  # the bank's product code, e.g. "FX-WM-USD-5000"
    balance: (
        Money  # assets positive; a loan's outstanding principal positive too (see is_liability)
    )
    opened_on: dt.date
    closed_on: dt.date | None = None
    card_tier: CardTier | None = None  # cards only
    risk: ProductRisk | None = None  # investments only
    overdue_days: int = 0  # loans only
    branch_code: str = ""  # the branch that opened it

    @property
    def is_open(self) -> bool:
        return self.closed_on is None

    @property
    def is_liability(self) -> bool:
        return self.product_line in (
            ProductLine.CREDIT_CARD,
            ProductLine.MORTGAGE,
            ProductLine.PERSONAL_LOAN,
        )


class Direction(enum.StrEnum):
    CREDIT = "credit"  # money in
    DEBIT = "debit"  # money out


@dataclass(frozen=True)
class MonthlyActivity:
    """Transactions of one calendar month, summed (the profile keeps aggregates, not every
    transaction: RFM and the value model need no more)."""

    month: dt.date  # the first day of the month
    transactions: int
    debit_cny_minor: int  # spending and transfers out, converted at the month's rates
    credit_cny_minor: int
    average_assets_cny_minor: int  # monthly average of total assets (the tier's basis)
    # Parts of the credits and debits above that the value model and segment rules price or
    # test separately (0 when the source systems do not say).
    salary_credit_cny_minor: int = 0  # payroll credits
    credit_card_spend_cny_minor: int = 0  # purchases on the party's credit cards (interchange)
    debit_card_spend_cny_minor: int = 0  # purchases on the party's debit cards


class InteractionKind(enum.StrEnum):
    BRANCH_VISIT = "branch_visit"
    CALL_CENTRE_CALL = "call_centre_call"
    APP_LOGIN = "app_login"
    ATM_USE = "atm_use"
    MESSAGE_SENT = "message_sent"  # notifications sent a message (NotificationSent)


@dataclass(frozen=True)
class Interaction:
    kind: InteractionKind
    at: dt.datetime
    source: SourceKey
    channel_detail: str = ""  # branch code, ATM id, call reason…


class MessageChannel(enum.StrEnum):
    """The channels notifications sends messages on."""

    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"
    INBOX = "inbox"  # the in-app inbox


@dataclass(frozen=True)
class SentMessage:
    """A message notifications sent (a provider accepted it): ids and codes, never its text or
    the address it went to."""

    notification_id: str
    channel: MessageChannel
    template_id: str
    offer_id: str = ""  # outbound marketing: the offer and the decision it delivered
    decision_id: str = ""


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"
    PHONE_CALL = "phone_call"
    BRANCH = "branch"


class Purpose(enum.StrEnum):
    MARKETING = "marketing"
    SERVICE = "service"
    RISK_ALERTS = "risk_alerts"


@dataclass(frozen=True)
class ConsentEvidence:
    captured_at: dt.datetime
    where: str  # channel and place: "branch 0101", "mobile app 5.2"
    text_version: str  # the version of the consent text the customer was shown


@dataclass(frozen=True)
class Consent:
    channel: Channel
    purpose: Purpose
    given: bool
    evidence: ConsentEvidence


@dataclass(frozen=True)
class QuietHours:
    start: dt.time
    end: dt.time  # may be before start: the window crosses midnight


@dataclass(frozen=True)
class Preferences:
    language: str = "zh-CN"  # BCP 47
    time_zone: str = "Asia/Shanghai"  # IANA
    quiet_hours: QuietHours | None = None
    preferred_channel: Channel | None = None


@dataclass(frozen=True)
class RiskAssessment:
    level: CustomerRisk
    assessed_on: dt.date
    expires_on: dt.date

    def valid_on(self, day: dt.date) -> bool:
        return self.assessed_on <= day < self.expires_on


@dataclass(frozen=True)
class PartyFacts:
    """Everything the assessments read about one party, on one day (`as_of`)."""

    party_id: str
    as_of: dt.date
    holdings: tuple[Holding, ...] = ()
    activity: tuple[MonthlyActivity, ...] = ()  # most recent last, at most 12 months
    # Most recent last; their times at the bank's zone (party_facts), so `at.date()` is the
    # business day.
    interactions: tuple[Interaction, ...] = ()
    consents: tuple[Consent, ...] = ()
    preferences: Preferences = field(default_factory=Preferences)
    risk: RiskAssessment | None = None
    birth_date: dt.date | None = None
