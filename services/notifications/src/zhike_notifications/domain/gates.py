"""The gates a message passes before it is sent, in order (pure).

| # | gate | marketing | service | transactional |
|---|---|---|---|---|
| 1 | consent, channel × purpose, with evidence | explicit consent needed | refused only by a "no" | refused only by a "no" |
| 2 | do-not-contact | refuses | — | — |
| 3 | channel preference (channels opted out) | refuses | refuses | — |
| 4 | content dedup (same offer, any channel, window) | refuses | — | — |
| 5 | frequency cap, rolling, across all channels | refuses (last refusing gate) | — | — |
| 6 | quiet hours, marketing window, working days | defers | defers (quiet hours) | — |

Consent. A marketing message needs the party's consent for its channel and the marketing
purpose, given (silence — no record — counts as refusal) and with evidence (where, when, which
text version). On SMS the consent text version must be one the policy knows, and state the type
of message (the template's topic) and a frequency; the frequency it states is enforced over the
party's marketing SMS (MIIT rules on commercial SMS). A service or transactional message is
refused only when the party said no to its channel and purpose. The in-app inbox needs no channel
consent: it never alerts the customer.

Refusals are final for this message (SUPPRESSED, with the reason and a detail that names rules
and numbers, never the customer's data); quiet hours only ever defer. A deferred message is
evaluated again, every gate, when its time comes: consent may have been withdrawn, the cap used.

`history` is what the party was sent: every message handed to a provider (SENT or DELIVERED, or
being sent), whatever its channel. Every entry counts, even one stamped after `now`: that is a
message another replica handed over while this one waited for the party's lock, or one stamped by
a clock a little ahead, and leaving it out would let the cap be passed once too often.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from zhike_notifications.domain.calendar import WorkingCalendar
from zhike_notifications.domain.model import (
    Category,
    Channel,
    Message,
    Purpose,
    Suppression,
    SuppressionReason,
)
from zhike_notifications.domain.quiet_hours import (
    QuietHours,
    SendWindowPolicy,
    next_allowed,
    time_zone,
)

LANGUAGES = ("zh-CN", "en")


class Gate(enum.StrEnum):
    CONSENT = "consent"
    DO_NOT_CONTACT = "do_not_contact"
    CHANNEL_PREFERENCE = "channel_preference"
    CONTENT_DEDUP = "content_dedup"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"


@dataclass(frozen=True)
class ConsentEvidence:
    captured_where: str  # "branch 0101", "mobile app 5.2"
    captured_at: dt.datetime
    text_version: str  # the consent text the customer was shown


@dataclass(frozen=True)
class ConsentRecord:
    """The decision in force for a channel and purpose (profile's ConsentChanged)."""

    channel: Channel
    purpose: Purpose
    given: bool
    evidence: ConsentEvidence | None = None


@dataclass(frozen=True)
class Frequency:
    """ "At most `limit` messages in `days` days", as a consent text states it."""

    limit: int
    days: int

    def __post_init__(self) -> None:
        if self.limit < 1 or self.days < 1:
            raise ValueError("a consent frequency needs limit ≥ 1 and days ≥ 1")

    def __str__(self) -> str:
        return f"{self.limit} in {self.days} days"


@dataclass(frozen=True)
class ConsentText:
    """A version of the consent text customers are shown, and what it declares."""

    version: str
    message_types: frozenset[str]  # the topics of marketing messages it covers
    frequency: Frequency | None  # None: it states none (not enough for marketing SMS)


@dataclass(frozen=True)
class PartySnapshot:
    """What the gates know of the party when they run."""

    party_id: str
    consents: tuple[ConsentRecord, ...] = ()
    do_not_contact: bool = False
    opted_out_channels: frozenset[Channel] = frozenset()
    language: str = ""  # "": not known (the policy's default)
    time_zone: str = ""  # IANA; "": not known (the policy's default)
    quiet_hours: QuietHours | None = None  # None: the policy's default

    def consent(self, channel: Channel, purpose: Purpose) -> ConsentRecord | None:
        for record in self.consents:
            if record.channel is channel and record.purpose is purpose:
                return record
        return None


@dataclass(frozen=True)
class SentMessage:
    """One message the party was sent (or is being sent), as the gates count it."""

    at: dt.datetime
    channel: Channel
    category: Category
    content_key: str  # Message.content_key


@dataclass(frozen=True)
class CapWindow:
    days: int
    limit: int

    def __post_init__(self) -> None:
        if self.days < 1 or self.limit < 0:
            raise ValueError("a cap window needs days ≥ 1 and limit ≥ 0")


@dataclass(frozen=True)
class GatePolicy:
    # Marketing messages per party across all channels, in rolling windows ending now.
    frequency_cap: tuple[CapWindow, ...] = (CapWindow(7, 2), CapWindow(30, 6))
    # The same offer (or template) to the same party on any channel: at most once in this long.
    dedup_days: int = 7
    consent_texts: Mapping[str, ConsentText] = field(default_factory=dict)
    send_window: SendWindowPolicy = field(default_factory=SendWindowPolicy)
    default_time_zone: str = "Asia/Shanghai"  # the bank's
    default_quiet_hours: QuietHours | None = field(
        default_factory=lambda: QuietHours(dt.time(21, 0), dt.time(8, 0))
    )
    default_language: str = "zh-CN"

    def __post_init__(self) -> None:
        if self.dedup_days < 0:
            raise ValueError("dedup_days must be ≥ 0")
        if self.default_language not in LANGUAGES:
            raise ValueError(f"default_language must be one of {', '.join(LANGUAGES)}")
        time_zone(self.default_time_zone, self.default_time_zone)  # raises when unknown
        for version, text in self.consent_texts.items():
            if version != text.version:
                raise ValueError(f"consent_texts[{version!r}] holds version {text.version!r}")
        object.__setattr__(self, "consent_texts", MappingProxyType(dict(self.consent_texts)))

    @property
    def history_days(self) -> int:
        """How far back the gates look: the longest of the cap windows, the dedup window and
        the consent texts' frequencies (each configurable up to a year)."""
        windows = [window.days for window in self.frequency_cap] + [self.dedup_days]
        windows += [t.frequency.days for t in self.consent_texts.values() if t.frequency]
        return max(windows)


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send now, in `language`; `consent` is the record that allowed it (kept with the send)."""

    language: str
    consent: ConsentRecord | None


@dataclass(frozen=True)
class Defer:
    """Not before `until`; then every gate runs again."""

    until: dt.datetime
    language: str
    consent: ConsentRecord | None
    detail: str  # which window held it, in the customer's zone


@dataclass(frozen=True)
class Suppress:
    gate: Gate
    suppression: Suppression

    @property
    def reason(self) -> SuppressionReason:
        return self.suppression.reason


Verdict = Send | Defer | Suppress


def evaluate(
    message: Message,
    party: PartySnapshot,
    history: Iterable[SentMessage],
    now: dt.datetime,
    policy: GatePolicy,
    calendar: WorkingCalendar,
) -> Verdict:
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    past = list(history)
    consent = party.consent(message.channel, message.purpose)
    refusal = (
        _consent(message, consent, past, now, policy)
        or _do_not_contact(message, party)
        or _channel_preference(message, party)
        or _content_dedup(message, past, now, policy)
        or _frequency_cap(message, past, now, policy)
    )
    if refusal is not None:
        return refusal
    language = preferred_language(party.language, LANGUAGES, policy.default_language)
    if message.category is Category.TRANSACTIONAL or not message.channel.outbound:
        return Send(language, consent)
    zone = time_zone(party.time_zone, policy.default_time_zone)
    quiet = party.quiet_hours if party.quiet_hours is not None else policy.default_quiet_hours
    until = next_allowed(now, zone, quiet, message.category, calendar, policy.send_window)
    window = f"quiet hours {quiet}" if quiet is not None else "no quiet hours"
    if message.category is Category.MARKETING:
        window = f"marketing window {policy.send_window.marketing_window} on working days, {window}"
    if until is None:
        return _suppress(
            Gate.QUIET_HOURS,
            SuppressionReason.NO_SEND_WINDOW,
            f"{window} ({zone.key}) leave no time to send within "
            f"{policy.send_window.horizon_days} days",
        )
    if until > now:
        return Defer(until, language, consent, f"{window} ({zone.key})")
    return Send(language, consent)


def preferred_language(preference: str, languages: Sequence[str], default: str) -> str:
    """The party's language if a template language matches it exactly or by its primary subtag
    ("zh-Hans-CN" → "zh-CN", "en-GB" → "en"), else `default`: never a refusal."""
    wanted = preference.strip().replace("_", "-").lower()
    if not wanted:
        return default
    for language in languages:
        if language.lower() == wanted:
            return language
    primary = wanted.split("-", 1)[0]
    for language in languages:
        if language.lower().split("-", 1)[0] == primary:
            return language
    return default


# --- the gates -------------------------------------------------------------------------------


def _suppress(gate: Gate, reason: SuppressionReason, detail: str) -> Suppress:
    return Suppress(gate, Suppression(reason, detail))


def _consent(
    message: Message,
    record: ConsentRecord | None,
    past: Sequence[SentMessage],
    now: dt.datetime,
    policy: GatePolicy,
) -> Suppress | None:
    if not message.channel.outbound:
        return None
    what = f"{message.channel.value}/{message.purpose.value}"
    if message.category is not Category.MARKETING:
        if record is not None and not record.given:
            return _suppress(Gate.CONSENT, SuppressionReason.NO_CONSENT, f"consent refused: {what}")
        return None
    if record is None:
        return _suppress(
            Gate.CONSENT,
            SuppressionReason.NO_CONSENT,
            f"no consent on record: {what} (silence is refusal)",
        )
    if not record.given:
        return _suppress(Gate.CONSENT, SuppressionReason.NO_CONSENT, f"consent refused: {what}")
    evidence = record.evidence
    if evidence is None or not evidence.text_version or not evidence.captured_where:
        return _suppress(
            Gate.CONSENT,
            SuppressionReason.CONSENT_WITHOUT_EVIDENCE,
            f"consent {what} has no evidence (where, when and which text)",
        )
    if message.channel is Channel.SMS:
        return _sms_consent_scope(message, evidence.text_version, past, now, policy)
    return None


def _sms_consent_scope(
    message: Message,
    version: str,
    past: Sequence[SentMessage],
    now: dt.datetime,
    policy: GatePolicy,
) -> Suppress | None:
    text = policy.consent_texts.get(version)
    if text is None:
        detail = f"consent text {version!r} is not known: its message types and frequency cannot be checked"
    elif not message.topic or message.topic not in text.message_types:
        topic = message.topic or "(none)"
        detail = f"consent text {version!r} does not state messages of type {topic!r}"
    elif text.frequency is None:
        detail = f"consent text {version!r} states no frequency for marketing SMS"
    else:
        since = now - dt.timedelta(days=text.frequency.days)
        used = sum(
            1
            for sent in past
            if sent.at > since
            and sent.channel is Channel.SMS
            and sent.category is Category.MARKETING
        )
        if used < text.frequency.limit:
            return None
        detail = (
            f"consent text {version!r} allows {text.frequency} marketing SMS; {used} sent in the "
            f"last {text.frequency.days} days"
        )
    return _suppress(Gate.CONSENT, SuppressionReason.CONSENT_SCOPE, detail)


def _do_not_contact(message: Message, party: PartySnapshot) -> Suppress | None:
    if message.category is Category.MARKETING and party.do_not_contact:
        return _suppress(
            Gate.DO_NOT_CONTACT,
            SuppressionReason.DO_NOT_CONTACT,
            "do-not-contact: the party receives no marketing",
        )
    return None


def _channel_preference(message: Message, party: PartySnapshot) -> Suppress | None:
    if message.category is Category.TRANSACTIONAL:
        return None
    if message.channel in party.opted_out_channels:
        return _suppress(
            Gate.CHANNEL_PREFERENCE,
            SuppressionReason.CHANNEL_OPTED_OUT,
            f"the party opted out of {message.channel.value}",
        )
    return None


def _content_dedup(
    message: Message, past: Sequence[SentMessage], now: dt.datetime, policy: GatePolicy
) -> Suppress | None:
    if message.category is not Category.MARKETING or policy.dedup_days == 0:
        return None
    since = now - dt.timedelta(days=policy.dedup_days)
    for sent in past:
        if sent.at > since and sent.content_key == message.content_key:
            return _suppress(
                Gate.CONTENT_DEDUP,
                SuppressionReason.DUPLICATE_CONTENT,
                f"{message.content_key} already sent on {sent.channel.value} within the last "
                f"{policy.dedup_days} days",
            )
    return None


def _frequency_cap(
    message: Message, past: Sequence[SentMessage], now: dt.datetime, policy: GatePolicy
) -> Suppress | None:
    if message.category is not Category.MARKETING:
        return None
    for window in policy.frequency_cap:
        since = now - dt.timedelta(days=window.days)
        used = sum(1 for sent in past if sent.at > since and sent.category is Category.MARKETING)
        if used >= window.limit:
            return _suppress(
                Gate.FREQUENCY_CAP,
                SuppressionReason.FREQUENCY_CAP,
                f"frequency cap: {used} marketing messages in the last {window.days} days on all "
                f"channels (limit {window.limit})",
            )
    return None
