"""One simulated customer: the products their source records hold and a day-by-day life, emitted
as the source systems' facts (zhike.source.v1.SourceEvent). Pure: every choice comes from the
customer's own random generator.

A day is planned first (what happens, each at its own moment), then carried out in time order,
so each account's sequence numbers follow its facts' times. Amounts are integer minor units;
a deposit or investment never goes below zero and a card never above its limit (a purchase
that would is declined and posts nothing).
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import TypeAlias
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from google.type import date_pb2, timeofday_pb2

from zhike.identity.v1 import party_pb2
from zhike.source.v1 import source_event_pb2 as pb
from zhike_identity_evaluation import generator
from zhike_identity_evaluation.generator import Person

Line: TypeAlias = pb.ProductLine.ValueType
Tier: TypeAlias = pb.CardTier.ValueType
Channel: TypeAlias = pb.TransactionChannel.ValueType
Contact: TypeAlias = pb.ContactChannel.ValueType
Purpose: TypeAlias = pb.ContactPurpose.ValueType
Act: TypeAlias = Callable[[dt.datetime], None]

ZONE = ZoneInfo("Asia/Shanghai")
# The simulated treasury's mid rates (CNY per unit); the desk buys and sells with a spread.
MID_RATES = {"USD": Decimal("7.10"), "EUR": Decimal("7.75"), "HKD": Decimal("0.91")}
FX_SPREAD = Decimal("0.005")
LIABILITY_LINES = frozenset(
    {pb.PRODUCT_LINE_CREDIT_CARD, pb.PRODUCT_LINE_MORTGAGE, pb.PRODUCT_LINE_PERSONAL_LOAN}
)
# ISO 18245 merchant categories: (code, typical purchase in CNY from, to, share of purchases).
MERCHANTS: tuple[tuple[str, int, int, float], ...] = (
    ("5411", 30, 600, 0.30),  # supermarkets
    ("5812", 40, 800, 0.25),  # restaurants
    ("5814", 15, 80, 0.15),  # fast food
    ("4111", 3, 60, 0.08),  # commuter transport
    ("5541", 200, 500, 0.06),  # fuel
    ("5311", 100, 3000, 0.06),  # department stores
    ("5732", 500, 12000, 0.03),  # electronics
    ("4511", 800, 9000, 0.03),  # airlines
    ("7011", 400, 4000, 0.04),  # hotels
)
ONLINE_MERCHANTS = frozenset({"4511", "7011", "5732"})
CALL_REASONS = ("BAL-ENQ", "CARD-LOST", "DISPUTE", "LOAN-ENQ", "PWD-RESET", "FX-ENQ", "COMPLAINT")
APP_VERSIONS = ("app-5.2.1", "app-5.3.0", "app-5.3.2")
# (product code, risk R1-R5, currency)
INVESTMENTS: tuple[tuple[str, int, str], ...] = (
    ("WM-CNY-R1-MMF", 1, "CNY"),
    ("WM-CNY-R2-90D", 2, "CNY"),
    ("WM-CNY-R3-BAL", 3, "CNY"),
    ("FD-CNY-R4-EQ", 4, "CNY"),
    ("FD-CNY-R5-TECH", 5, "CNY"),
    ("WM-USD-R2-6M", 2, "USD"),
    ("FD-HKD-R4-HK", 4, "HKD"),
)
CARD_PRODUCTS: dict[Tier, tuple[str, int]] = {  # product code, limit (CNY minor units)
    pb.CARD_TIER_STANDARD: ("CC-UNIONPAY-STD", 2_000_000),
    pb.CARD_TIER_GOLD: ("CC-UNIONPAY-GOLD", 5_000_000),
    pb.CARD_TIER_PLATINUM: ("CC-VISA-PLAT", 20_000_000),
    pb.CARD_TIER_DIAMOND: ("CC-VISA-DIAMOND", 100_000_000),
}
# Balances scale with wealth; most customers are mass retail.
WEALTH_SCALE = {"mass": 1, "affluent": 12, "hnw": 90}
MONTHLY_SALARY_CNY = {
    "mass": (4_000, 18_000),
    "affluent": (18_000, 60_000),
    "hnw": (60_000, 200_000),
}


@dataclass(frozen=True)
class Holding:
    """One account in one currency at the end of the simulation: what a profile must show."""

    source_system: str
    source_record_id: str
    account_id: str
    product_line: str  # the ProductLine name, e.g. PRODUCT_LINE_SAVINGS
    currency: str
    balance_minor_units: int  # a loan's or a card's: what is owed
    closed: bool
    liability: bool


@dataclass
class _Account:
    system: str
    record_id: str
    account_id: str
    line: Line
    currency: str
    product_code: str
    branch: str
    opened_on: dt.date
    balance: int = 0  # minor units; owed, for loans and cards
    sequence: int = 0
    closed: bool = False
    card_tier: Tier = pb.CARD_TIER_UNSPECIFIED
    limit: int = 0  # credit cards
    risk: int = 0  # investments, 1-5
    installment: int = 0  # loans: the monthly repayment
    due_day: int = 0  # loans: the day of the month it is due
    overdue_since: dt.date | None = None

    @property
    def liability(self) -> bool:
        return self.line in LIABILITY_LINES

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def _date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _round_to(minor: int, step: int) -> int:
    """Whole steps (at least one)."""
    return max(step, minor // step * step)


def _part(balance: int, percent: int, step: int) -> int:
    """About `percent` of a balance in whole steps, never more than the balance."""
    return min(balance, _round_to(balance * percent // 100, step))


def _eighteenth_birthday(born: dt.date) -> dt.date:
    """Born on 29 February: of age on 1 March when the 18th year has no 29 February."""
    try:
        return born.replace(year=born.year + 18)
    except ValueError:
        return dt.date(born.year + 18, 3, 1)


def _local_day(at: dt.datetime) -> dt.date:
    return at.astimezone(ZONE).date()


@dataclass
class Customer:
    person: Person
    records: dict[str, str]  # source system → source record id
    rng: random.Random
    until: dt.date
    events: list[tuple[dt.datetime, pb.SourceEvent]] = field(default_factory=list)
    _accounts: list[_Account] = field(default_factory=list)
    _event_numbers: Counter[str] = field(default_factory=Counter)
    _versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    _consents: dict[tuple[str, Contact, Purpose], bool] = field(default_factory=dict)
    _scheduled: dict[dt.date, list[Act]] = field(default_factory=dict)
    _risk_level: int = 0
    _risk_expires: dt.date | None = None

    def __post_init__(self) -> None:
        rng = self.rng
        self.age = (self.until - self.person.birth_date).days // 365
        self.adult = self.age >= 18
        district = generator.DISTRICTS.index(self.person.home) + 1
        self.branches = tuple(f"{district:02d}{n:02d}" for n in range(1, 5))
        self.branch = rng.choice(self.branches)
        draw = rng.random()
        self.wealth = "hnw" if draw < 0.04 else "affluent" if draw < 0.22 else "mass"
        employed = self.adult and self.age < 63 and rng.random() < 0.8
        low, high = MONTHLY_SALARY_CNY[self.wealth]
        self.salary = _round_to(rng.randint(low, high) * 100, 10_000) if employed else 0
        self.salary_day = rng.choice((5, 10, 15, 25))
        self.spending = {"mass": 0.5, "affluent": 0.8, "hnw": 1.2}[self.wealth]

    def run(self, start: dt.date, days: int) -> None:
        self._initial_load(start)
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            actions = self._plan(day)
            actions += [(self._at(day, 9, 17), act) for act in self._scheduled.pop(day, [])]
            actions.sort(key=lambda action: action[0])
            for at, act in actions:
                act(at)

    def holdings(self) -> list[Holding]:
        return [
            Holding(
                source_system=a.system,
                source_record_id=a.record_id,
                account_id=a.account_id,
                product_line=pb.ProductLine.Name(a.line),
                currency=a.currency,
                balance_minor_units=a.balance,
                closed=a.closed,
                liability=a.liability,
            )
            for a in self._accounts
        ]

    # --- emitting facts ---------------------------------------------------------------------

    def _emit(
        self, system: str, at: dt.datetime, sequence: int, fact: str, message: Message
    ) -> None:
        record_id = self.records[system]
        self._event_numbers[record_id] += 1
        event = pb.SourceEvent(
            source_record=party_pb2.SourceRecordKey(
                source_system=system, source_record_id=record_id
            ),
            event_id=f"{record_id}-{self._event_numbers[record_id]:06d}",
            sequence=sequence,
        )
        event.event_time.FromDatetime(at)
        getattr(event, fact).CopyFrom(message)
        self.events.append((at, event))

    def _version(self, system: str, what: str) -> int:
        """The next version of a fact kept per record (preferences, risk, interactions, one
        consent)."""
        self._versions[(system, what)] += 1
        return self._versions[(system, what)]

    def _on(self, account: _Account, at: dt.datetime, fact: str, message: Message) -> None:
        self._emit(account.system, at, account.next_sequence(), fact, message)

    def _balance(self, account: _Account, at: dt.datetime, change: int) -> None:
        account.balance += change
        self._on(
            account,
            at,
            "balance_changed",
            pb.BalanceChanged(
                account_id=account.account_id,
                currency=account.currency,
                change_minor_units=change,
                balance_minor_units=account.balance,
            ),
        )

    def _transaction(
        self, account: _Account, at: dt.datetime, amount: int, credit: bool, channel: Channel,
        merchant: str = "", salary: bool = False,
    ) -> None:  # fmt: skip
        self._on(
            account,
            at,
            "transaction_posted",
            pb.TransactionPosted(
                account_id=account.account_id,
                currency=account.currency,
                amount_minor_units=amount,
                direction=pb.DIRECTION_CREDIT if credit else pb.DIRECTION_DEBIT,
                channel=channel,
                merchant_category=merchant,
                salary=salary,
            ),
        )

    def _post(
        self, account: _Account, at: dt.datetime, amount: int, credit: bool, channel: Channel,
        merchant: str = "", salary: bool = False,
    ) -> None:  # fmt: skip
        """A transaction and its balance effect, both from the account's own system."""
        self._transaction(account, at, amount, credit, channel, merchant, salary)
        # On a card or a loan the balance is what is owed: a debit (a purchase) raises it.
        self._balance(account, at, amount if credit != account.liability else -amount)

    def _close(self, account: _Account, at: dt.datetime) -> None:
        account.closed = True
        self._on(
            account,
            at,
            "account_closed",
            pb.AccountClosed(account_id=account.account_id, close_date=_date(_local_day(at))),
        )

    def _interaction(
        self,
        system: str,
        at: dt.datetime,
        kind: pb.InteractionKind.ValueType,
        branch: str = "",
        detail: str = "",
    ) -> None:
        self._emit(
            system,
            at,
            self._version(system, "interaction"),
            "interaction_recorded",
            pb.InteractionRecorded(kind=kind, branch_code=branch, detail=detail),
        )

    def _consent(
        self, system: str, at: dt.datetime, channel: Contact, purpose: Purpose, given: bool,
        where: str, captured: dt.datetime | None = None,
    ) -> None:  # fmt: skip
        self._consents[(system, channel, purpose)] = given
        evidence = pb.ConsentEvidence(captured_where=where, text_version="CT-2024.2")
        evidence.capture_time.FromDatetime(captured or at)
        version = self._version(system, f"consent:{channel}:{purpose}")
        if given:
            decision: Message = pb.ConsentGiven(channel=channel, purpose=purpose, evidence=evidence)
        else:
            decision = pb.ConsentWithdrawn(channel=channel, purpose=purpose, evidence=evidence)
        self._emit(system, at, version, "consent_given" if given else "consent_withdrawn", decision)

    def _toggle_consent(
        self, system: str, at: dt.datetime, channel: Contact, purpose: Purpose, where: str
    ) -> None:
        given = not self._consents.get((system, channel, purpose), False)
        self._consent(system, at, channel, purpose, given, where)

    def _preferences(self, system: str, at: dt.datetime) -> None:
        rng = self.rng
        language = rng.choices(("zh-CN", "en-GB", "zh-HK"), (0.88, 0.07, 0.05))[0]
        zones = ("Asia/Shanghai", "Europe/London", "America/New_York")
        zone = (
            "Asia/Hong_Kong" if language == "zh-HK" else rng.choices(zones, (0.94, 0.03, 0.03))[0]
        )
        channels = (pb.CONTACT_CHANNEL_PUSH, pb.CONTACT_CHANNEL_SMS, pb.CONTACT_CHANNEL_EMAIL)
        message = pb.PreferenceChanged(
            language=language, time_zone=zone, preferred_channel=rng.choice(channels)
        )
        if rng.random() < 0.5:
            message.quiet_hours_start.CopyFrom(
                timeofday_pb2.TimeOfDay(hours=rng.choice((21, 22, 23)))
            )
            message.quiet_hours_end.CopyFrom(timeofday_pb2.TimeOfDay(hours=rng.choice((7, 8, 9))))
        self._emit(system, at, self._version(system, "preferences"), "preference_changed", message)

    def _risk_assessment(self, system: str, at: dt.datetime, assessed: dt.date) -> None:
        self._risk_level = self.rng.choices((1, 2, 3, 4, 5), (0.15, 0.3, 0.3, 0.18, 0.07))[0]
        self._risk_expires = assessed + dt.timedelta(days=365)
        self._emit(
            system,
            at,
            self._version(system, "risk"),
            "risk_assessment_completed",
            pb.RiskAssessmentCompleted(
                customer_risk=pb.CustomerRisk.ValueType(self._risk_level),
                assess_date=_date(assessed),
                expire_date=_date(self._risk_expires),
            ),
        )

    # --- time -------------------------------------------------------------------------------

    def _at(self, day: dt.date, first_hour: int = 7, last_hour: int = 22) -> dt.datetime:
        """A moment of `day` in Shanghai, from first_hour:00 to last_hour:59."""
        seconds = self.rng.randint(first_hour * 3600, last_hour * 3600 + 3599)
        return dt.datetime.combine(day, dt.time(), ZONE) + dt.timedelta(seconds=seconds)

    def _opened_on(self, start: dt.date) -> dt.date:
        """A day in the past on which one of the customer's accounts was opened."""
        born = self.person.birth_date
        earliest = max(dt.date(2005, 1, 1), _eighteenth_birthday(born) if self.adult else born)
        latest = start - dt.timedelta(days=30)
        if earliest >= latest:
            return latest
        return earliest + dt.timedelta(days=self.rng.randint(0, (latest - earliest).days))

    # --- accounts ---------------------------------------------------------------------------

    def _new_account(
        self, system: str, suffix: str, line: Line, currency: str, code: str, opened_on: dt.date
    ) -> _Account:
        record_id = self.records[system]
        account = _Account(
            system, record_id, f"{record_id}-{suffix}", line, currency, code, self.branch, opened_on
        )
        self._accounts.append(account)
        return account

    def _open_deposit(
        self, at: dt.datetime, system: str, suffix: str, line: Line, currency: str, code: str,
        balance: int, opened_on: dt.date,
    ) -> _Account:  # fmt: skip
        account = self._new_account(system, suffix, line, currency, code, opened_on)
        self._on(
            account,
            at,
            "account_opened",
            pb.AccountOpened(
                account_id=account.account_id,
                product_line=line,
                product_code=code,
                currency=currency,
                branch_code=account.branch,
                open_date=_date(opened_on),
            ),
        )
        if balance:
            self._balance(account, at, balance)
        return account

    def _open_accounts(self, line: Line, currency: str | None = None) -> list[_Account]:
        return [
            a
            for a in self._accounts
            if a.line == line and not a.closed and currency in (None, a.currency)
        ]

    def _current(self, currency: str = "CNY") -> _Account | None:
        """The customer's current account in `currency` (deposits', else the FX desk's)."""
        found = self._open_accounts(pb.PRODUCT_LINE_CURRENT_ACCOUNT, currency)
        found.sort(key=lambda a: a.system != "core_deposits")
        return found[0] if found else None

    def _foreign(self) -> list[_Account]:
        current = self._open_accounts(pb.PRODUCT_LINE_CURRENT_ACCOUNT)
        return [a for a in current if a.currency != "CNY"]

    def _loans(self) -> list[_Account]:
        return self._open_accounts(pb.PRODUCT_LINE_MORTGAGE) + self._open_accounts(
            pb.PRODUCT_LINE_PERSONAL_LOAN
        )

    # --- the initial load -------------------------------------------------------------------

    def _initial_load(self, start: dt.date) -> None:
        """What each source system already holds on the window's first day."""
        at = self._at(start, 0, 0)
        if "core_deposits" in self.records:
            self._load_deposits(at, start)
        if "fx_passport" in self.records and self.adult:
            self._load_fx_desk(at, start)
        if "cards" in self.records:
            self._load_cards(at, start)
        if "loans" in self.records and self.adult:
            self._load_loan(at, start)
        if "wealth_branch" in self.records and self.adult:
            self._load_wealth(at, start)
        if "mobile_banking" in self.records:
            s, where, since = "mobile_banking", "mobile app 5.2", self._opening_time()
            self._consent(
                s, at, pb.CONTACT_CHANNEL_PUSH, pb.CONTACT_PURPOSE_SERVICE, True, where, since
            )
            self._consent(
                s, at, pb.CONTACT_CHANNEL_SMS, pb.CONTACT_PURPOSE_RISK_ALERTS, True, where, since
            )
            for channel, chance in ((pb.CONTACT_CHANNEL_SMS, 0.6), (pb.CONTACT_CHANNEL_PUSH, 0.5)):
                given = self.rng.random() < chance
                self._consent(s, at, channel, pb.CONTACT_PURPOSE_MARKETING, given, where, since)
            self._preferences(s, at)
        if "call_centre" in self.records:
            given = self.rng.random() < 0.3
            self._consent(
                "call_centre", at, pb.CONTACT_CHANNEL_PHONE_CALL, pb.CONTACT_PURPOSE_MARKETING,
                given, "call centre", self._opening_time(),
            )  # fmt: skip

    def _amount(self, low_cny: int, high_cny: int, step: int) -> int:
        """A balance for this customer's wealth, in CNY minor units, in whole steps."""
        return _round_to(
            self.rng.randint(low_cny, high_cny) * 100 * WEALTH_SCALE[self.wealth], step
        )

    def _in(self, currency: str, cny_minor: int) -> int:
        """About the same value in another currency (for sizing, not for conversions)."""
        if currency == "CNY":
            return cny_minor
        return _round_to(int(Decimal(cny_minor) / MID_RATES[currency]), 100)

    def _load_deposits(self, at: dt.datetime, start: dt.date) -> None:
        rng, s = self.rng, "core_deposits"
        current, savings, term = (
            pb.PRODUCT_LINE_CURRENT_ACCOUNT, pb.PRODUCT_LINE_SAVINGS, pb.PRODUCT_LINE_TIME_DEPOSIT,
        )  # fmt: skip
        opened = self._opened_on(start)
        self._open_deposit(
            at, s, "CA-CNY", current, "CNY", "CA-CNY-STD", self._amount(2_000, 60_000, 100), opened
        )
        if rng.random() < 0.5:
            balance = self._amount(5_000, 80_000, 10_000)
            self._open_deposit(
                at, s, "SAV-CNY", savings, "CNY", "SAV-CNY-STD", balance, self._opened_on(start)
            )
        if self.adult and rng.random() < (0.2 if self.wealth == "mass" else 0.6):
            code = rng.choice(("TD-CNY-1Y", "TD-CNY-3Y"))
            balance = self._amount(20_000, 200_000, 1_000_000)
            self._open_deposit(at, s, "TD1", term, "CNY", code, balance, self._opened_on(start))
        for currency, chance in (("USD", 0.18), ("HKD", 0.08), ("EUR", 0.06)):
            if self.adult and rng.random() < chance * (1 if self.wealth == "mass" else 3):
                balance = self._in(currency, self._amount(3_000, 140_000, 10_000))
                code = f"CA-{currency}-STD"
                self._open_deposit(
                    at,
                    s,
                    f"CA-{currency}",
                    current,
                    currency,
                    code,
                    balance,
                    self._opened_on(start),
                )
        self._consent(
            s, at, pb.CONTACT_CHANNEL_SMS, pb.CONTACT_PURPOSE_SERVICE, True,
            f"branch {self.branch}", self._at(opened, 9, 17),
        )  # fmt: skip

    def _load_fx_desk(self, at: dt.datetime, start: dt.date) -> None:
        s, current = "fx_passport", pb.PRODUCT_LINE_CURRENT_ACCOUNT
        if self._current() is None:  # conversions settle in CNY somewhere
            balance = self._amount(1_000, 30_000, 100)
            self._open_deposit(
                at, s, "CA-CNY", current, "CNY", "FX-CA-CNY", balance, self._opened_on(start)
            )
        for currency, chance in (("USD", 0.85), ("HKD", 0.4), ("EUR", 0.3)):
            if self.rng.random() < chance:
                balance = self._in(currency, self._amount(7_000, 200_000, 10_000))
                code = f"FX-CA-{currency}"
                self._open_deposit(
                    at,
                    s,
                    f"FX-{currency}",
                    current,
                    currency,
                    code,
                    balance,
                    self._opened_on(start),
                )

    def _load_cards(self, at: dt.datetime, start: dt.date) -> None:
        rng = self.rng
        if self.adult and rng.random() < 0.85:
            tier = {
                "mass": rng.choices((pb.CARD_TIER_STANDARD, pb.CARD_TIER_GOLD), (0.8, 0.2))[0],
                "affluent": rng.choice((pb.CARD_TIER_GOLD, pb.CARD_TIER_PLATINUM)),
                "hnw": rng.choice((pb.CARD_TIER_PLATINUM, pb.CARD_TIER_DIAMOND)),
            }[self.wealth]
            code, limit = CARD_PRODUCTS[tier]
            card = self._new_account(
                "cards", "CC1", pb.PRODUCT_LINE_CREDIT_CARD, "CNY", code, self._opened_on(start)
            )
            card.card_tier, card.limit = tier, limit
            self._issue(card, at, pb.CARD_TYPE_CREDIT)
            owed = rng.randint(0, limit // 10)
            if owed:
                self._balance(card, at, owed)
        if self._current() is not None and rng.random() < 0.6:
            card = self._new_account(
                "cards",
                "DC1",
                pb.PRODUCT_LINE_DEBIT_CARD,
                "CNY",
                "DC-UNIONPAY",
                self._opened_on(start),
            )
            card.card_tier = pb.CARD_TIER_STANDARD
            self._issue(card, at, pb.CARD_TYPE_DEBIT)

    def _issue(self, card: _Account, at: dt.datetime, card_type: pb.CardType.ValueType) -> None:
        self._on(
            card,
            at,
            "card_issued",
            pb.CardIssued(
                account_id=card.account_id,
                card_type=card_type,
                card_tier=card.card_tier,
                product_code=card.product_code,
                currency=card.currency,
                branch_code=card.branch,
                issue_date=_date(card.opened_on),
            ),
        )

    def _load_loan(self, at: dt.datetime, start: dt.date) -> None:
        rng = self.rng
        if rng.random() < 0.6:
            principal, months = _round_to(rng.randint(300_000, 3_000_000) * 100, 1_000_000), 360
            line, loan_type, code, suffix = (
                pb.PRODUCT_LINE_MORTGAGE, pb.LOAN_TYPE_MORTGAGE, "ML-CNY-30Y", "ML1",
            )  # fmt: skip
        else:
            principal, months = _round_to(rng.randint(20_000, 300_000) * 100, 100_000), 36
            line, loan_type, code, suffix = (
                pb.PRODUCT_LINE_PERSONAL_LOAN, pb.LOAN_TYPE_PERSONAL, "PL-CNY-3Y", "PL1",
            )  # fmt: skip
        opened = self._opened_on(start)
        loan = self._new_account("loans", suffix, line, "CNY", code, opened)
        loan.installment = _round_to(principal // months, 100)
        loan.due_day = rng.randint(1, 28)
        # An initial load: the draw as it was, with what is outstanding now.
        repaid = min(months - 1, (start - opened).days // 30) * loan.installment
        loan.balance = max(loan.installment, principal - repaid)
        self._on(
            loan,
            at,
            "loan_drawn",
            pb.LoanDrawn(
                account_id=loan.account_id,
                loan_type=loan_type,
                product_code=code,
                currency="CNY",
                amount_minor_units=principal,
                outstanding_minor_units=loan.balance,
                branch_code=loan.branch,
                draw_date=_date(opened),
            ),
        )

    def _load_wealth(self, at: dt.datetime, start: dt.date) -> None:
        rng = self.rng
        # Assessed up to two years ago and valid for one: some have expired.
        self._risk_assessment("wealth_branch", at, start - dt.timedelta(days=rng.randint(20, 700)))
        for _ in range(rng.choice((1, 1, 2, 3))):
            code, risk, currency = rng.choice(INVESTMENTS)
            if any(a.product_code == code for a in self._accounts):
                continue
            amount = self._in(currency, self._amount(10_000, 300_000, 100_000))
            value = amount + amount * rng.randint(-8, 15) // 100
            self._buy(at, code, risk, currency, amount, value, self._opened_on(start))

    def _buy(
        self, at: dt.datetime, code: str, risk: int, currency: str, amount: int, value: int,
        traded: dt.date,
    ) -> None:  # fmt: skip
        """An investment bought: a new position, or more of one held."""
        held = [
            a for a in self._open_accounts(pb.PRODUCT_LINE_INVESTMENT) if a.product_code == code
        ]
        if held:
            position = held[0]
        else:
            number = 1 + len([a for a in self._accounts if a.line == pb.PRODUCT_LINE_INVESTMENT])
            position = self._new_account(
                "wealth_branch",
                f"WM{number:02d}",
                pb.PRODUCT_LINE_INVESTMENT,
                currency,
                code,
                traded,
            )
            position.risk = risk
        position.balance += value
        self._on(
            position,
            at,
            "investment_bought",
            pb.InvestmentBought(
                account_id=position.account_id,
                product_code=code,
                product_risk=pb.ProductRisk.ValueType(risk),
                currency=currency,
                amount_minor_units=amount,
                holding_minor_units=position.balance,
                branch_code=position.branch,
                trade_date=_date(traded),
            ),
        )

    def _opening_time(self) -> dt.datetime:
        """When a consent given at the customer's first opening was captured."""
        first = min(
            (a.opened_on for a in self._accounts), default=self.until - dt.timedelta(days=400)
        )
        return self._at(first, 9, 17)

    # --- a day ------------------------------------------------------------------------------

    def _plan(self, day: dt.date) -> list[tuple[dt.datetime, Act]]:
        rng = self.rng
        plan: list[tuple[dt.datetime, Act]] = []

        def maybe(chance: float, act: Act, first: int = 7, last: int = 22) -> None:
            if rng.random() < chance:
                plan.append((self._at(day, first, last), act))

        current = self._current()
        if self.salary and day.day == self.salary_day and current is not None:
            plan.append((self._at(day, 1, 3), self._salary))
            maybe(0.7, self._to_savings, 9, 12)
        for card in self._open_accounts(pb.PRODUCT_LINE_CREDIT_CARD):
            for _ in range(self._count(0.45 * self.spending)):
                plan.append((self._at(day), partial(self._card_purchase, card=card)))
            if day.day == 20:
                plan.append((self._at(day, 8, 10), partial(self._repay_card, card=card)))
            if card.card_tier < pb.CARD_TIER_DIAMOND:
                maybe(0.0015, partial(self._upgrade, card=card), 9, 17)
        for card in self._open_accounts(pb.PRODUCT_LINE_DEBIT_CARD):
            for _ in range(self._count(0.25 * self.spending)):
                plan.append((self._at(day), partial(self._debit_purchase, card=card)))
        for loan in self._loans():
            if loan.overdue_since is None and day.day == loan.due_day:
                plan.append((self._at(day, 0, 2), partial(self._loan_due, loan=loan)))
            elif loan.overdue_since is not None and (day - loan.overdue_since).days % 7 == 0:
                plan.append((self._at(day, 0, 2), partial(self._loan_overdue, loan=loan)))
        if day.day == 1:
            for position in self._open_accounts(pb.PRODUCT_LINE_INVESTMENT):
                plan.append((self._at(day, 0, 1), partial(self._valuation, position=position)))
        if "core_deposits" in self.records:
            maybe(0.04, self._atm)
        for system in ("core_deposits", "wealth_branch"):
            if system in self.records:
                maybe(0.012, partial(self._branch_visit, system=system), 9, 17)
        if self._foreign() and current is not None:
            maybe(0.012, self._fx_sell)
            maybe(0.004, self._fx_buy)
        if "call_centre" in self.records:
            maybe(0.02, self._call, 8, 21)
        if "mobile_banking" in self.records:
            maybe(0.3 if self.age < 45 else 0.12, self._app_login)
        return plan

    def _count(self, mean: float) -> int:
        """How many times something happens in a day: about `mean` on average."""
        count = 0
        while count < 8 and self.rng.random() < mean / (count + 1):
            count += 1
        return count

    # --- what happens -----------------------------------------------------------------------

    def _salary(self, at: dt.datetime) -> None:
        account = self._current()
        if account is not None:
            self._post(
                account, at, self.salary, True, pb.TRANSACTION_CHANNEL_AUTOMATIC, salary=True
            )

    def _to_savings(self, at: dt.datetime) -> None:
        source, savings = self._current(), self._open_accounts(pb.PRODUCT_LINE_SAVINGS)
        amount = _round_to(self.salary * self.rng.randint(10, 30) // 100, 10_000)
        if source is not None and savings and source.balance >= amount:
            self._post(source, at, amount, False, pb.TRANSACTION_CHANNEL_AUTOMATIC)
            self._post(savings[0], at, amount, True, pb.TRANSACTION_CHANNEL_AUTOMATIC)

    def _purchase(self) -> tuple[str, int, Channel]:
        """A merchant category, an amount (CNY minor units) and the card channel."""
        merchant, low, high, _ = self.rng.choices(MERCHANTS, [m[3] for m in MERCHANTS])[0]
        amount = self.rng.randint(low * 100, int(high * 100 * self.spending))
        online = merchant in ONLINE_MERCHANTS or self.rng.random() < 0.25
        channel = (
            pb.TRANSACTION_CHANNEL_CARD_NOT_PRESENT
            if online
            else pb.TRANSACTION_CHANNEL_CARD_PRESENT
        )
        return merchant, max(amount, 100), channel

    def _card_purchase(self, at: dt.datetime, card: _Account) -> None:
        merchant, amount, channel = self._purchase()
        if not card.closed and card.balance + amount <= card.limit:  # else declined
            self._post(card, at, amount, False, channel, merchant)

    def _debit_purchase(self, at: dt.datetime, card: _Account) -> None:
        account = self._current()
        merchant, amount, channel = self._purchase()
        if account is not None and account.balance >= amount:  # else declined
            # The card centre posts the purchase; deposits report the balance it leaves.
            self._transaction(card, at, amount, False, channel, merchant)
            self._balance(account, at, -amount)

    def _repay_card(self, at: dt.datetime, card: _Account) -> None:
        source = self._current()
        if card.balance <= 0:
            return
        if source is None:  # paid in from another bank
            amount = card.balance
        else:
            amount = card.balance if source.balance >= card.balance else source.balance // 2
            if amount <= 0:
                return
            self._post(source, at, amount, False, pb.TRANSACTION_CHANNEL_AUTOMATIC)
        self._post(card, at, amount, True, pb.TRANSACTION_CHANNEL_ONLINE_BANKING)

    def _upgrade(self, at: dt.datetime, card: _Account) -> None:
        card.card_tier = pb.CardTier.ValueType(card.card_tier + 1)
        self._on(
            card,
            at,
            "card_tier_changed",
            pb.CardTierChanged(account_id=card.account_id, card_tier=card.card_tier),
        )

    def _loan_due(self, at: dt.datetime, loan: _Account) -> None:
        source = self._current()
        amount = min(loan.installment, loan.balance)
        if source is not None and source.balance < amount and self.rng.random() < 0.7:
            # Missed: arrears, reported weekly, until the customer pays some days later.
            loan.overdue_since = _local_day(at)
            cure = loan.overdue_since + dt.timedelta(days=self.rng.randint(5, 25))
            self._scheduled.setdefault(cure, []).append(partial(self._loan_cured, loan=loan))
            return
        self._repay_loan(at, loan, amount)

    def _repay_loan(self, at: dt.datetime, loan: _Account, amount: int) -> None:
        source = self._current()
        if source is not None and source.balance >= amount:  # else paid in from elsewhere
            self._post(source, at, amount, False, pb.TRANSACTION_CHANNEL_AUTOMATIC)
        loan.balance -= amount
        self._on(
            loan,
            at,
            "loan_repaid",
            pb.LoanRepaid(
                account_id=loan.account_id,
                currency=loan.currency,
                amount_minor_units=amount,
                outstanding_minor_units=loan.balance,
            ),
        )
        if loan.balance == 0:
            self._close(loan, at)

    def _loan_overdue(self, at: dt.datetime, loan: _Account) -> None:
        if loan.overdue_since is not None and not loan.closed:
            days = (_local_day(at) - loan.overdue_since).days
            self._on(
                loan,
                at,
                "loan_overdue",
                pb.LoanOverdue(account_id=loan.account_id, overdue_days=days),
            )

    def _loan_cured(self, at: dt.datetime, loan: _Account) -> None:
        if loan.closed:
            return
        loan.overdue_since = None
        self._repay_loan(at, loan, min(loan.installment, loan.balance))
        if not loan.closed:
            self._on(
                loan, at, "loan_overdue", pb.LoanOverdue(account_id=loan.account_id, overdue_days=0)
            )

    def _valuation(self, at: dt.datetime, position: _Account) -> None:
        swing = self.rng.randint(-30 * position.risk, 40 * position.risk)  # basis points
        change = position.balance * swing // 10_000
        if change and position.balance + change >= 0:
            self._balance(position, at, change)

    def _atm(self, at: dt.datetime) -> None:
        account = self._current()
        amount = self.rng.choice((300, 500, 1_000, 2_000, 3_000)) * 100
        if account is not None and account.balance >= amount:
            atm = f"ATM-{self.branch}-{self.rng.randint(1, 6):02d}"
            self._post(account, at, amount, False, pb.TRANSACTION_CHANNEL_ATM)
            self._interaction("core_deposits", at, pb.INTERACTION_KIND_ATM_USE, self.branch, atm)

    def _branch_visit(self, at: dt.datetime, system: str) -> None:
        rng = self.rng
        branch = self.branch if rng.random() < 0.8 else rng.choice(self.branches)
        desk = rng.choice(("TELLER", "WEALTH-DESK", "SERVICE-DESK"))
        self._interaction(system, at, pb.INTERACTION_KIND_BRANCH_VISIT, branch, desk)
        later = at + dt.timedelta(minutes=rng.randint(5, 40))
        if system == "core_deposits":
            foreign = [a for a in self._foreign() if a.system == system and a.balance > 0]
            if foreign and rng.random() < 0.3:
                # Foreign cash withdrawn at the counter: sometimes all of it.
                account = rng.choice(foreign)
                everything = rng.random() < 0.3
                amount = (
                    account.balance
                    if everything
                    else _part(account.balance, rng.randint(10, 60), 100)
                )
                self._post(account, later, amount, False, pb.TRANSACTION_CHANNEL_BRANCH)
        elif self._risk_expires is None or self._risk_expires <= _local_day(at):
            if rng.random() < 0.6:
                self._risk_assessment(system, later, _local_day(at))
        elif rng.random() < 0.4:
            self._trade(later)

    def _trade(self, at: dt.datetime) -> None:
        """An investment redeemed, or one bought within the customer's risk level."""
        rng = self.rng
        positions = self._open_accounts(pb.PRODUCT_LINE_INVESTMENT)
        source = self._current()
        if positions and (source is None or rng.random() < 0.4):
            position = rng.choice(positions)
            amount = position.balance if rng.random() < 0.5 else position.balance // 2
            if amount <= 0:
                return
            position.balance -= amount
            self._on(
                position,
                at,
                "investment_redeemed",
                pb.InvestmentRedeemed(
                    account_id=position.account_id,
                    currency=position.currency,
                    amount_minor_units=amount,
                    holding_minor_units=position.balance,
                ),
            )
            settlement = self._current(position.currency)  # else paid out to another bank
            if settlement is not None:
                self._post(settlement, at, amount, True, pb.TRANSACTION_CHANNEL_BRANCH)
            if position.balance == 0:
                self._close(position, at)
            return
        suitable = [p for p in INVESTMENTS if p[1] <= self._risk_level and p[2] == "CNY"]
        if source is None or not suitable:
            return
        amount = _part(source.balance, rng.randint(20, 60), 100_000)
        if amount < 1_000_000 or source.balance < amount:  # at least CNY 10,000
            return
        code, risk, currency = rng.choice(suitable)
        self._post(source, at, amount, False, pb.TRANSACTION_CHANNEL_BRANCH)
        self._buy(at, code, risk, currency, amount, amount, _local_day(at))

    def _fx_sell(self, at: dt.datetime) -> None:
        """Foreign currency sold for CNY: part of it, or all of it (the account sometimes
        closed after)."""
        rng = self.rng
        target = self._current()
        held = [a for a in self._foreign() if a.balance > 0]
        if target is None or not held:
            return
        account = rng.choice(held)
        everything = rng.random() < 0.3
        amount = account.balance if everything else _part(account.balance, rng.randint(10, 70), 100)
        rate = MID_RATES[account.currency] * (1 - FX_SPREAD)
        cny = int((Decimal(amount) * rate).quantize(Decimal(1), ROUND_HALF_EVEN))
        if cny <= 0:
            return
        channel = rng.choice((pb.TRANSACTION_CHANNEL_MOBILE_APP, pb.TRANSACTION_CHANNEL_BRANCH))
        self._post(account, at, amount, False, channel)
        self._post(target, at, cny, True, channel)
        if everything and rng.random() < 0.25:
            self._close(account, at)

    def _fx_buy(self, at: dt.datetime) -> None:
        """CNY sold for a foreign currency (a trip, school fees abroad)."""
        rng = self.rng
        source, foreign = self._current(), self._foreign()
        if source is None or not foreign:
            return
        account = rng.choice(foreign)
        cny = _part(source.balance, rng.randint(5, 30), 100_000)
        if cny < 100_000 or source.balance < cny:
            return
        rate = MID_RATES[account.currency] * (1 + FX_SPREAD)
        amount = int((Decimal(cny) / rate).quantize(Decimal(1), ROUND_HALF_EVEN))
        channel = rng.choice(
            (pb.TRANSACTION_CHANNEL_MOBILE_APP, pb.TRANSACTION_CHANNEL_ONLINE_BANKING)
        )
        self._post(source, at, cny, False, channel)
        self._post(account, at, amount, True, channel)

    def _call(self, at: dt.datetime) -> None:
        s = "call_centre"
        reason = self.rng.choice(CALL_REASONS)
        self._interaction(s, at, pb.INTERACTION_KIND_CALL_CENTRE_CALL, detail=reason)
        if self.rng.random() < 0.15:
            later = at + dt.timedelta(minutes=3)
            self._toggle_consent(
                s, later, pb.CONTACT_CHANNEL_PHONE_CALL, pb.CONTACT_PURPOSE_MARKETING, "call centre"
            )

    def _app_login(self, at: dt.datetime) -> None:
        rng, s = self.rng, "mobile_banking"
        self._interaction(s, at, pb.INTERACTION_KIND_APP_LOGIN, detail=rng.choice(APP_VERSIONS))
        later = at + dt.timedelta(minutes=rng.randint(1, 10))
        draw = rng.random()
        if draw < 0.01:
            self._preferences(s, later)
        elif draw < 0.02:
            channels = (pb.CONTACT_CHANNEL_SMS, pb.CONTACT_CHANNEL_PUSH, pb.CONTACT_CHANNEL_EMAIL)
            channel = rng.choice(channels)
            self._toggle_consent(s, later, channel, pb.CONTACT_PURPOSE_MARKETING, "mobile app 5.3")
        elif draw < 0.03:
            self._fx_sell(later)
