"""zhike.source.v1.SourceEvent → the domain's SourceEvent, validated.

The same checks run at both doors: `IngestSourceEvents` refuses a bad event with
INVALID_ARGUMENT naming the field (`events[3].balance_changed.currency`), and the stream
consumer dead-letters it with the same words. Every field a fact needs is checked here (proto3
defaults that mean "missing", unknown enum numbers, impossible dates and times, amounts of the
wrong sign, codes that could carry personal data), so the domain only sees well-formed facts.

A record's dates (an account opened or closed, a risk assessed) are measured from the event's
day in the bank's time zone: none more than `MAX_RECORD_YEARS` years before it (0001-01-01, the
"no date" of many systems, is refused, not kept as a date), and a close or assessment date at
most `DATE_AHEAD` after it (the fact happened at event_time: a later date is a typo, such as 2062
for 2026, and would keep a closed account in the average assets, or hide a valid assessment,
until that day). An opening date may be later (a value date, a trade settled the next day).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2, timeofday_pb2

from zhike.source.v1 import source_event_pb2 as pb
from zhike_profile.domain.facts import (
    CardTier,
    Channel,
    Consent,
    ConsentEvidence,
    CustomerRisk,
    Direction,
    InteractionKind,
    Preferences,
    ProductLine,
    ProductRisk,
    Purpose,
    QuietHours,
    RiskAssessment,
    SourceKey,
)
from zhike_profile.domain.source_events import (
    AddTransaction,
    Change,
    CloseAccount,
    OpenAccount,
    RecordInteraction,
    SetBalance,
    SetCardTier,
    SetConsent,
    SetOverdue,
    SetPreferences,
    SetProductRisk,
    SetRiskAssessment,
    SourceEvent,
)
from zhike_runtime.events import headers as h
from zhike_runtime.events.decoding import CLOCK_AHEAD
from zhike_runtime.validation import Violations, iana_zone

SUBJECT_PREFIX = "zhike.source.v1"
EVENT_TYPE = pb.SourceEvent.DESCRIPTOR.full_name
# The inbox keeps event ids of up to 64 characters; the key is "<source_system>:<event_id>".
MAX_MESSAGE_ID = 64
MAX_OVERDUE_DAYS = 36_500
# The largest amount an event may carry, in minor units (10 trillion in major units): far above
# any account, and low enough that over 9,000 of them still add up inside the BIGINT columns
# sums go into. Without it, an event was accepted and then failed in the consumer on every
# delivery, lost.
MAX_AMOUNT_MINOR_UNITS = 10**15
# How far back a record's date may go, in calendar years before the event's: as far as identity
# lets a birth date go (no account is older than its holder).
MAX_RECORD_YEARS = 150
# How far after the event's day (in the bank's time zone) a close or assessment date may be: a
# source may date by a calendar a day ahead of the bank's (a branch east of the bank's zone).
DATE_AHEAD = dt.timedelta(days=1)
# ZHIKE_BUSINESS_TIME_ZONE's default, for callers outside the service (the simulator's tests).
DEFAULT_BANK_ZONE = ZoneInfo("Asia/Shanghai")

_CURRENCY = re.compile(r"[A-Z]{3}")
_MERCHANT_CATEGORY = re.compile(r"[0-9]{4}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_PAN_LIKE = re.compile(r"[0-9]{13,19}")
# Codes only (ATM id, reason code, app version): nothing that reads as text about a person.
_DETAIL = re.compile(r"[A-Za-z0-9._:/-]{1,64}")

_PRODUCT_LINES = {
    pb.PRODUCT_LINE_CURRENT_ACCOUNT: ProductLine.CURRENT_ACCOUNT,
    pb.PRODUCT_LINE_SAVINGS: ProductLine.SAVINGS,
    pb.PRODUCT_LINE_TIME_DEPOSIT: ProductLine.TIME_DEPOSIT,
    pb.PRODUCT_LINE_CREDIT_CARD: ProductLine.CREDIT_CARD,
    pb.PRODUCT_LINE_DEBIT_CARD: ProductLine.DEBIT_CARD,
    pb.PRODUCT_LINE_MORTGAGE: ProductLine.MORTGAGE,
    pb.PRODUCT_LINE_PERSONAL_LOAN: ProductLine.PERSONAL_LOAN,
    pb.PRODUCT_LINE_INVESTMENT: ProductLine.INVESTMENT,
}
PRODUCT_LINE_NUMBERS = {line: number for number, line in _PRODUCT_LINES.items()}
_CARD_TIERS = {
    pb.CARD_TIER_STANDARD: CardTier.STANDARD,
    pb.CARD_TIER_GOLD: CardTier.GOLD,
    pb.CARD_TIER_PLATINUM: CardTier.PLATINUM,
    pb.CARD_TIER_DIAMOND: CardTier.DIAMOND,
}
_CARD_LINES = {
    pb.CARD_TYPE_CREDIT: ProductLine.CREDIT_CARD,
    pb.CARD_TYPE_DEBIT: ProductLine.DEBIT_CARD,
}
_LOAN_LINES = {
    pb.LOAN_TYPE_MORTGAGE: ProductLine.MORTGAGE,
    pb.LOAN_TYPE_PERSONAL: ProductLine.PERSONAL_LOAN,
}
_PRODUCT_RISKS = {number: ProductRisk(number) for number in range(1, 6)}
_CUSTOMER_RISKS = {number: CustomerRisk(number) for number in range(1, 6)}
_DIRECTIONS = {pb.DIRECTION_CREDIT: Direction.CREDIT, pb.DIRECTION_DEBIT: Direction.DEBIT}
_CHANNELS = {
    number: number
    for number in pb.TransactionChannel.values()
    if number != pb.TRANSACTION_CHANNEL_UNSPECIFIED
}
_CARD_PURCHASE_CHANNELS = {
    pb.TRANSACTION_CHANNEL_CARD_PRESENT,
    pb.TRANSACTION_CHANNEL_CARD_NOT_PRESENT,
}
_INTERACTIONS = {
    pb.INTERACTION_KIND_BRANCH_VISIT: InteractionKind.BRANCH_VISIT,
    pb.INTERACTION_KIND_CALL_CENTRE_CALL: InteractionKind.CALL_CENTRE_CALL,
    pb.INTERACTION_KIND_APP_LOGIN: InteractionKind.APP_LOGIN,
    pb.INTERACTION_KIND_ATM_USE: InteractionKind.ATM_USE,
}
CONTACT_CHANNELS = {
    pb.CONTACT_CHANNEL_SMS: Channel.SMS,
    pb.CONTACT_CHANNEL_EMAIL: Channel.EMAIL,
    pb.CONTACT_CHANNEL_PUSH: Channel.PUSH,
    pb.CONTACT_CHANNEL_PHONE_CALL: Channel.PHONE_CALL,
    pb.CONTACT_CHANNEL_BRANCH: Channel.BRANCH,
}
CONTACT_PURPOSES = {
    pb.CONTACT_PURPOSE_MARKETING: Purpose.MARKETING,
    pb.CONTACT_PURPOSE_SERVICE: Purpose.SERVICE,
    pb.CONTACT_PURPOSE_RISK_ALERTS: Purpose.RISK_ALERTS,
}

E = TypeVar("E")


def subject_for(source_system: str) -> str:
    """zhike.source.v1.<source_system> (validated as a single subject token first)."""
    return f"{SUBJECT_PREFIX}.{source_system}"


def message_id(source_system: str, event_id: str) -> str:
    """The event's key: Nats-Msg-Id, and the consumer's inbox id."""
    return f"{source_system}:{event_id}"


def stream_headers(message: pb.SourceEvent) -> dict[str, str]:
    """The headers a source event is published with (IngestSourceEvents, and a streaming
    adapter): its key as Nats-Msg-Id (JetStream's de-duplication) and the inbox's event id."""
    key = message_id(message.source_record.source_system, message.event_id)
    return {h.MSG_ID: key, h.EVENT_ID: key, h.EVENT_TYPE: EVENT_TYPE, h.CONTENT_TYPE: h.PROTOBUF}


def published(message: pb.SourceEvent) -> pb.SourceEvent:
    """The event as IngestSourceEvents publishes it: a copy without the fields this contract
    does not know, so that whatever a caller adds never reaches the stream."""
    copy = pb.SourceEvent()
    copy.CopyFrom(message)
    copy.DiscardUnknownFields()
    return copy


def is_same_event(stored: bytes, message: pb.SourceEvent) -> bool:
    """Whether `stored`, the payload ZHIKE_SOURCE holds under the event's key, is `message` as
    published (fields it does not know aside, whichever door it came through)."""
    try:
        held = pb.SourceEvent.FromString(stored)
    except DecodeError:
        return False
    return published(held) == published(message)


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _digit_runs(text: str) -> list[str]:
    """The runs of digits a reader sees in `text`, as ASCII digits. A card number is written
    with any separator (spaces, dashes of every kind, '_', ',', '·', '*', …) and in digits of
    any script: after NFKC (full-width digits made ASCII) everything but letters and digits is
    skipped, and only a letter ends a run."""
    read: list[str] = []
    for char in unicodedata.normalize("NFKC", text):
        if char.isdecimal():
            read.append(str(unicodedata.decimal(char)))
        elif char.isalpha():
            read.append(" ")
    return "".join(read).split()


def _holds_card_number(text: str) -> bool:
    return any(_is_card_number(run) for run in _digit_runs(text))


# A mainland mobile number (11 digits from 1[3-9]) or a resident ID number (17 digits and a
# check character) among the runs of digits, however written; an ID's "X" ends its run.
_MOBILE_OR_ID = re.compile(r"1[3-9][0-9]{9}|[0-9]{17}[0-9X]?")


def _holds_phone_or_id_number(text: str) -> bool:
    return any(_MOBILE_OR_ID.fullmatch(run) for run in _digit_runs(text))


def _is_card_number(value: str) -> bool:
    """13-19 digits passing Luhn: a card number (PAN), which must never be stored or sent."""
    if not _PAN_LIKE.fullmatch(value):
        return False
    total = 0
    for index, char in enumerate(reversed(value)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class _Fields:
    """The checks of one message, with the path of its fields."""

    def __init__(self, v: Violations, prefix: str, now: dt.datetime, day: dt.date) -> None:
        self.v = v
        self.prefix = prefix
        self.now = now  # the time the event is decoded: what "in the future" is measured from
        # The event's day in the bank's time zone (the decoding's, without an event time):
        # what a record's dates are measured from.
        self.day = day

    def at(self, name: str) -> str:
        return _path(self.prefix, name)

    def account_id(self, value: str) -> str:
        field = self.at("account_id")
        text = self.v.text(field, value, required=True, max_length=64)
        if text and _holds_card_number(text):
            self.v.add(field, "must not be a card number (PAN): send the card account's reference")
            return ""
        return text

    def no_card_number(self, name: str, text: str) -> str:
        """`text`, unless it holds a card number: every code and text a source event carries is
        stored, shown to staff, and some (a product code) published to other services."""
        if text and _holds_card_number(text):
            self.v.add(self.at(name), "must not hold a card number (PAN)")
            return ""
        return text

    def no_personal_number(self, name: str, text: str) -> str:
        """`text`, unless it holds a card, mobile or resident ID number: free text about where
        something happened, never about whom (codes such as a reference number may hold long
        runs of digits, so they are checked for card numbers only)."""
        text = self.no_card_number(name, text)
        if text and _holds_phone_or_id_number(text):
            self.v.add(self.at(name), "must not hold a mobile or ID number")
            return ""
        return text

    def currency(self, value: str, name: str = "currency") -> str:
        if not _CURRENCY.fullmatch(value):
            self.v.add(self.at(name), "must be an ISO 4217 code: three upper-case letters")
            return ""
        return value

    def code(self, name: str, value: str, *, required: bool, max_length: int = 32) -> str:
        code = self.v.token(self.at(name), value, required=required, max_length=max_length)
        return self.no_card_number(name, code)

    def text(self, name: str, value: str, *, required: bool, max_length: int) -> str:
        text = self.v.text(self.at(name), value, required=required, max_length=max_length)
        return self.no_card_number(name, text)

    def enum(self, name: str, value: int, known: Mapping[Any, E]) -> E | None:
        if value == 0:
            self.v.add(self.at(name), "is required")
            return None
        if value not in known:
            self.v.add(self.at(name), f"unknown value {value}")
            return None
        return known[value]

    def amount(self, name: str, value: int, *, positive: bool) -> int:
        if positive and value <= 0:
            self.v.add(self.at(name), "must be positive")
        elif value < 0:
            self.v.add(self.at(name), "must not be negative")
        return self.balance(name, value)

    def balance(self, name: str, value: int) -> int:
        """An amount that may be negative (an overdrawn balance), within the cap."""
        if abs(value) > MAX_AMOUNT_MINOR_UNITS:
            self.v.add(self.at(name), f"must be at most {MAX_AMOUNT_MINOR_UNITS} in magnitude")
        return value

    def date(self, name: str, value: date_pb2.Date, present: bool) -> dt.date | None:
        if not present:
            self.v.add(self.at(name), "is required")
            return None
        try:
            return dt.date(value.year, value.month, value.day)
        except ValueError:
            self.v.add(self.at(name), "is not a valid date")
            return None

    def record_date(
        self, name: str, value: date_pb2.Date, present: bool, *, not_after_event: bool = False
    ) -> dt.date | None:
        """`date`, a date a bank record can hold: at most `MAX_RECORD_YEARS` calendar years
        before the event's, and with `not_after_event` (a close, an assessment) at most
        `DATE_AHEAD` after the event's day."""
        day = self.date(name, value, present)
        if day is None:
            return None
        if day.year < self.day.year - MAX_RECORD_YEARS:
            self.v.add(
                self.at(name), f"must not be more than {MAX_RECORD_YEARS} years before event_time"
            )
            return None
        if not_after_event and day > self.day + DATE_AHEAD:
            self.v.add(
                self.at(name),
                "must not be more than a day after the day of event_time (in the bank's zone)",
            )
            return None
        return day

    def time(self, name: str, value: Timestamp, present: bool) -> dt.datetime | None:
        if not present:
            self.v.add(self.at(name), "is required")
            return None
        if not 0 <= value.nanos <= 999_999_999:
            self.v.add(self.at(name), "nanos must be within 0 and 999,999,999")
            return None
        try:
            return value.ToDatetime(tzinfo=dt.UTC)
        except (ValueError, OverflowError):
            self.v.add(self.at(name), "must be between years 1 and 9999")
            return None

    def recent_time(self, name: str, value: Timestamp, present: bool) -> dt.datetime | None:
        """`time`, and at most `CLOCK_AHEAD` after the decoding: an event's own time, and a
        consent's capture, which wins over every later one while it is the newest."""
        at = self.time(name, value, present)
        if at is not None and at > self.now + CLOCK_AHEAD:
            self.v.add(self.at(name), "is more than a day in the future")
            return None
        return at

    def time_of_day(self, name: str, value: timeofday_pb2.TimeOfDay) -> dt.time | None:
        """To the second, as the profile keeps and tells it: valid nanos are dropped."""
        if not 0 <= value.nanos <= 999_999_999:
            self.v.add(self.at(f"{name}.nanos"), "must be within 0 and 999,999,999")
            return None
        try:
            return dt.time(value.hours, value.minutes, value.seconds)
        except ValueError:
            self.v.add(self.at(name), "is not a valid time of day")
            return None


def decode_source_event(
    v: Violations,
    prefix: str,
    message: pb.SourceEvent,
    now: dt.datetime,
    zone: ZoneInfo = DEFAULT_BANK_ZONE,
) -> SourceEvent | None:
    """The event, or None with every problem added to `v` (paths start with `prefix`). `zone`
    is the bank's: a record's dates are measured from the event's day there (the service
    passes its ZHIKE_BUSINESS_TIME_ZONE)."""
    top = _Fields(v, prefix, now, now.astimezone(zone).date())
    source: SourceKey | None = None
    if not message.HasField("source_record"):
        v.add(top.at("source_record"), "is required")
    else:
        key = message.source_record
        system = v.token(top.at("source_record.source_system"), key.source_system)
        record = v.text(
            top.at("source_record.source_record_id"),
            key.source_record_id,
            required=True,
            max_length=128,
        )
        if system and record:
            source = SourceKey(system, record)
    event_id = v.token(top.at("event_id"), message.event_id)
    if event_id and source and len(message_id(source.source_system, event_id)) > MAX_MESSAGE_ID:
        v.add(
            top.at("event_id"),
            f"is too long: source system and event id together must be at most "
            f"{MAX_MESSAGE_ID - 1} characters",
        )
    at = top.recent_time("event_time", message.event_time, message.HasField("event_time"))
    if message.sequence < 1:
        v.add(top.at("sequence"), "must be at least 1")
    which = message.WhichOneof("fact")
    changes: tuple[Change, ...] = ()
    if which is None:
        v.add(top.at("fact"), "set one fact (account_opened, balance_changed, …)")
    else:
        decode = _FACTS[which]
        day = top.day if at is None else at.astimezone(zone).date()
        changes = decode(_Fields(v, top.at(which), now, day), getattr(message, which))
    if v or source is None or at is None:
        return None
    return SourceEvent(source, event_id, at, message.sequence, changes)


def _account_opened(f: _Fields, m: pb.AccountOpened) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    line = f.enum("product_line", m.product_line, _PRODUCT_LINES)
    code = f.text("product_code", m.product_code, required=True, max_length=64)
    currency = f.currency(m.currency)
    branch = f.code("branch_code", m.branch_code, required=False)
    opened = f.record_date("open_date", m.open_date, m.HasField("open_date"))
    if line is None or opened is None:
        return ()
    return (OpenAccount(account, line, code, currency, branch, opened),)


def _account_closed(f: _Fields, m: pb.AccountClosed) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    closed = f.record_date(
        "close_date", m.close_date, m.HasField("close_date"), not_after_event=True
    )
    return () if closed is None else (CloseAccount(account, closed),)


def _balance_changed(f: _Fields, m: pb.BalanceChanged) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    currency = f.currency(m.currency)
    f.balance("change_minor_units", m.change_minor_units)
    balance = f.balance("balance_minor_units", m.balance_minor_units)
    return (SetBalance(account, currency, balance),)


def _transaction_posted(f: _Fields, m: pb.TransactionPosted) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    currency = f.currency(m.currency)
    amount = f.amount("amount_minor_units", m.amount_minor_units, positive=True)
    direction = f.enum("direction", m.direction, _DIRECTIONS)
    channel = f.enum("channel", m.channel, _CHANNELS)
    if m.merchant_category and not _MERCHANT_CATEGORY.fullmatch(m.merchant_category):
        f.v.add(f.at("merchant_category"), "must be four digits (ISO 18245) or empty")
    if m.salary and direction is not Direction.CREDIT:
        f.v.add(f.at("salary"), "a salary is a credit (direction DIRECTION_CREDIT)")
    if direction is None or channel is None:
        return ()
    purchase = direction is Direction.DEBIT and channel in _CARD_PURCHASE_CHANNELS
    return (AddTransaction(account, currency, amount, direction, m.salary, purchase),)


def _card_issued(f: _Fields, m: pb.CardIssued) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    line = f.enum("card_type", m.card_type, _CARD_LINES)
    tier = f.enum("card_tier", m.card_tier, _CARD_TIERS)
    code = f.text("product_code", m.product_code, required=True, max_length=64)
    currency = f.currency(m.currency)
    branch = f.code("branch_code", m.branch_code, required=False)
    issued = f.record_date("issue_date", m.issue_date, m.HasField("issue_date"))
    if line is None or tier is None or issued is None:
        return ()
    return (
        OpenAccount(account, line, code, currency, branch, issued),
        SetCardTier(account, tier),
    )


def _card_tier_changed(f: _Fields, m: pb.CardTierChanged) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    tier = f.enum("card_tier", m.card_tier, _CARD_TIERS)
    return () if tier is None else (SetCardTier(account, tier),)


def _loan_drawn(f: _Fields, m: pb.LoanDrawn) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    line = f.enum("loan_type", m.loan_type, _LOAN_LINES)
    code = f.text("product_code", m.product_code, required=True, max_length=64)
    currency = f.currency(m.currency)
    f.amount("amount_minor_units", m.amount_minor_units, positive=True)
    outstanding = f.amount("outstanding_minor_units", m.outstanding_minor_units, positive=False)
    branch = f.code("branch_code", m.branch_code, required=False)
    drawn = f.record_date("draw_date", m.draw_date, m.HasField("draw_date"))
    if line is None or drawn is None:
        return ()
    return (
        OpenAccount(account, line, code, currency, branch, drawn),
        SetBalance(account, currency, outstanding),
    )


def _loan_repaid(f: _Fields, m: pb.LoanRepaid) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    currency = f.currency(m.currency)
    f.amount("amount_minor_units", m.amount_minor_units, positive=True)
    outstanding = f.amount("outstanding_minor_units", m.outstanding_minor_units, positive=False)
    return (SetBalance(account, currency, outstanding),)


def _loan_overdue(f: _Fields, m: pb.LoanOverdue) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    if not 0 <= m.overdue_days <= MAX_OVERDUE_DAYS:
        f.v.add(f.at("overdue_days"), f"must be within 0 and {MAX_OVERDUE_DAYS}")
    return (SetOverdue(account, m.overdue_days),)


def _investment_bought(f: _Fields, m: pb.InvestmentBought) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    code = f.text("product_code", m.product_code, required=True, max_length=64)
    risk = f.enum("product_risk", m.product_risk, _PRODUCT_RISKS)
    currency = f.currency(m.currency)
    f.amount("amount_minor_units", m.amount_minor_units, positive=True)
    holding = f.amount("holding_minor_units", m.holding_minor_units, positive=False)
    branch = f.code("branch_code", m.branch_code, required=False)
    traded = f.record_date("trade_date", m.trade_date, m.HasField("trade_date"))
    if risk is None or traded is None:
        return ()
    return (
        OpenAccount(account, ProductLine.INVESTMENT, code, currency, branch, traded),
        SetProductRisk(account, risk),
        SetBalance(account, currency, holding),
    )


def _investment_redeemed(f: _Fields, m: pb.InvestmentRedeemed) -> tuple[Change, ...]:
    account = f.account_id(m.account_id)
    currency = f.currency(m.currency)
    f.amount("amount_minor_units", m.amount_minor_units, positive=True)
    holding = f.amount("holding_minor_units", m.holding_minor_units, positive=False)
    return (SetBalance(account, currency, holding),)


def _interaction_recorded(f: _Fields, m: pb.InteractionRecorded) -> tuple[Change, ...]:
    kind = f.enum("kind", m.kind, _INTERACTIONS)
    branch = f.code("branch_code", m.branch_code, required=kind is InteractionKind.BRANCH_VISIT)
    detail = m.detail
    if detail and not _DETAIL.fullmatch(detail):
        f.v.add(f.at("detail"), "must be a code: letters, digits and . _ : / -, at most 64")
    else:
        detail = f.no_card_number("detail", detail)
    if kind is None:
        return ()
    return (RecordInteraction(kind, branch, detail),)


def _consent(f: _Fields, m: pb.ConsentGiven | pb.ConsentWithdrawn, given: bool) -> Change | None:
    channel = f.enum("channel", m.channel, CONTACT_CHANNELS)
    purpose = f.enum("purpose", m.purpose, CONTACT_PURPOSES)
    if not m.HasField("evidence"):
        f.v.add(f.at("evidence"), "is required")
        return None
    evidence = _Fields(f.v, f.at("evidence"), f.now, f.day)
    where = evidence.no_personal_number(
        "captured_where",
        evidence.text("captured_where", m.evidence.captured_where, required=True, max_length=100),
    )
    captured = evidence.recent_time(
        "capture_time", m.evidence.capture_time, m.evidence.HasField("capture_time")
    )
    version = evidence.text("text_version", m.evidence.text_version, required=True, max_length=32)
    if channel is None or purpose is None or captured is None:
        return None
    return SetConsent(Consent(channel, purpose, given, ConsentEvidence(captured, where, version)))


def _consent_given(f: _Fields, m: pb.ConsentGiven) -> tuple[Change, ...]:
    change = _consent(f, m, True)
    return () if change is None else (change,)


def _consent_withdrawn(f: _Fields, m: pb.ConsentWithdrawn) -> tuple[Change, ...]:
    change = _consent(f, m, False)
    return () if change is None else (change,)


def _preference_changed(f: _Fields, m: pb.PreferenceChanged) -> tuple[Change, ...]:
    language = m.language
    if language and (len(language) > 35 or not _LANGUAGE.fullmatch(language)):
        f.v.add(f.at("language"), "must be a BCP 47 language tag, e.g. zh-CN")
    zone = m.time_zone
    if zone and (len(zone) > 64 or zone.startswith(("/", ".")) or iana_zone(zone) is None):
        f.v.add(f.at("time_zone"), "must be an IANA time zone, e.g. Asia/Shanghai")
    quiet: QuietHours | None = None
    has_start, has_end = m.HasField("quiet_hours_start"), m.HasField("quiet_hours_end")
    if has_start != has_end:
        f.v.add(
            f.at("quiet_hours_end" if has_start else "quiet_hours_start"), "set both or neither"
        )
    elif has_start:
        start = f.time_of_day("quiet_hours_start", m.quiet_hours_start)
        end = f.time_of_day("quiet_hours_end", m.quiet_hours_end)
        if start is not None and end is not None:
            if start == end:
                f.v.add(f.at("quiet_hours_end"), "must differ from quiet_hours_start")
            quiet = QuietHours(start, end)
    channel = None
    if m.preferred_channel:
        channel = f.enum("preferred_channel", m.preferred_channel, CONTACT_CHANNELS)
    return (SetPreferences(Preferences(language, zone, quiet, channel)),)


def _risk_assessment_completed(f: _Fields, m: pb.RiskAssessmentCompleted) -> tuple[Change, ...]:
    level = f.enum("customer_risk", m.customer_risk, _CUSTOMER_RISKS)
    assessed = f.record_date(
        "assess_date", m.assess_date, m.HasField("assess_date"), not_after_event=True
    )
    expires = f.date("expire_date", m.expire_date, m.HasField("expire_date"))
    if assessed is not None and expires is not None and expires <= assessed:
        f.v.add(f.at("expire_date"), "must be after assess_date")
    if level is None or assessed is None or expires is None:
        return ()
    return (SetRiskAssessment(RiskAssessment(level, assessed, expires)),)


_FACTS: dict[str, Callable[[_Fields, Any], tuple[Change, ...]]] = {
    "account_opened": _account_opened,
    "account_closed": _account_closed,
    "balance_changed": _balance_changed,
    "transaction_posted": _transaction_posted,
    "card_issued": _card_issued,
    "card_tier_changed": _card_tier_changed,
    "loan_drawn": _loan_drawn,
    "loan_repaid": _loan_repaid,
    "loan_overdue": _loan_overdue,
    "investment_bought": _investment_bought,
    "investment_redeemed": _investment_redeemed,
    "interaction_recorded": _interaction_recorded,
    "consent_given": _consent_given,
    "consent_withdrawn": _consent_withdrawn,
    "preference_changed": _preference_changed,
    "risk_assessment_completed": _risk_assessment_completed,
}
