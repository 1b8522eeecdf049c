"""The gates, in order: consent (with evidence; for marketing SMS its stated type and frequency;
silence is refusal), do-not-contact, channel preference, content dedup, the rolling frequency
cap across channels, then quiet hours that defer. Transactional messages pass every marketing
gate but not a refusal of their channel."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.gates import (
    CapWindow,
    ConsentEvidence,
    ConsentRecord,
    ConsentText,
    Defer,
    Frequency,
    Gate,
    GatePolicy,
    PartySnapshot,
    Send,
    SentMessage,
    Suppress,
    Verdict,
    evaluate,
    preferred_language,
)
from zhike_notifications.domain.model import (
    Category,
    Channel,
    Message,
    Purpose,
    SuppressionReason,
    message_purpose,
)
from zhike_notifications.domain.quiet_hours import QuietHours
from zhike_runtime.errors import InvalidArgument

SHANGHAI = ZoneInfo("Asia/Shanghai")
CALENDAR = load_calendar()
# Tuesday 17 March 2026, 10:00 in Shanghai: a working day, inside the marketing window.
NOW = dt.datetime(2026, 3, 17, 10, 0, tzinfo=SHANGHAI)
PARTY_ID = "5b2f8c1e-7d4a-4e8b-9c3f-1a2b3c4d5e6f"
TEXT = ConsentText("mkt-sms-2025-01", frozenset({"wealth", "fx"}), Frequency(4, 30))
POLICY = GatePolicy(
    consent_texts={
        TEXT.version: TEXT,
        "mkt-sms-2024-06": ConsentText("mkt-sms-2024-06", frozenset({"cards"}), Frequency(2, 30)),
        "mkt-sms-2023-01": ConsentText("mkt-sms-2023-01", frozenset({"wealth"}), None),
    }
)
EVIDENCE = ConsentEvidence("mobile app 5.2", dt.datetime(2025, 6, 1, tzinfo=dt.UTC), TEXT.version)


def consent(
    channel: Channel = Channel.SMS,
    purpose: Purpose = Purpose.MARKETING,
    *,
    given: bool = True,
    version: str = TEXT.version,
) -> ConsentRecord:
    return ConsentRecord(
        channel, purpose, given, dataclasses.replace(EVIDENCE, text_version=version)
    )


ALL_MARKETING = tuple(consent(channel) for channel in (Channel.SMS, Channel.EMAIL, Channel.PUSH))
PARTY = PartySnapshot(PARTY_ID, consents=ALL_MARKETING)


def message(
    channel: Channel = Channel.SMS,
    category: Category = Category.MARKETING,
    *,
    offer_id: str = "usd_fx_wealth",
    purpose: Purpose | None = None,
    topic: str = "wealth",
) -> Message:
    return Message(
        party_id=PARTY_ID,
        channel=channel,
        category=category,
        purpose=message_purpose(category, purpose),
        template_id=f"tpl_{channel.value}",
        topic=topic if category is Category.MARKETING else "",
        offer_id=offer_id if category is Category.MARKETING else "",
        decision_id="d-1",
    )


def sent(
    days_ago: float,
    channel: Channel = Channel.EMAIL,
    category: Category = Category.MARKETING,
    content: str = "offer:other_offer",
) -> SentMessage:
    return SentMessage(NOW - dt.timedelta(days=days_ago), channel, category, content)


def check(
    subject: Message | None = None,
    party: PartySnapshot = PARTY,
    history: tuple[SentMessage, ...] = (),
    now: dt.datetime = NOW,
    policy: GatePolicy = POLICY,
) -> Verdict:
    return evaluate(subject or message(), party, history, now, policy, CALENDAR)


def refused(verdict: Verdict) -> tuple[Gate, SuppressionReason]:
    assert isinstance(verdict, Suppress), verdict
    assert PARTY_ID not in verdict.suppression.detail  # details name rules, never the party
    return verdict.gate, verdict.reason


def test_a_consented_marketing_sms_on_a_working_morning_is_sent_with_its_evidence() -> None:
    assert check() == Send("zh-CN", consent())


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.EMAIL, Channel.PUSH])
def test_silence_is_refusal_for_marketing(channel: Channel) -> None:
    verdict = check(message(channel), PartySnapshot(PARTY_ID))
    assert refused(verdict) == (Gate.CONSENT, SuppressionReason.NO_CONSENT)
    assert isinstance(verdict, Suppress)
    assert verdict.suppression.detail == (
        f"no consent on record: {channel.value}/marketing (silence is refusal)"
    )


def test_consent_to_another_purpose_or_channel_is_not_consent() -> None:
    party = PartySnapshot(
        PARTY_ID, consents=(consent(Channel.EMAIL), consent(Channel.SMS, Purpose.SERVICE))
    )
    assert refused(check(party=party)) == (Gate.CONSENT, SuppressionReason.NO_CONSENT)


def test_a_withdrawn_consent_refuses() -> None:
    party = PartySnapshot(PARTY_ID, consents=(consent(given=False),))
    assert refused(check(party=party)) == (Gate.CONSENT, SuppressionReason.NO_CONSENT)


def test_consent_without_evidence_refuses() -> None:
    bare = ConsentRecord(Channel.SMS, Purpose.MARKETING, True, None)
    assert refused(check(party=PartySnapshot(PARTY_ID, consents=(bare,)))) == (
        Gate.CONSENT,
        SuppressionReason.CONSENT_WITHOUT_EVIDENCE,
    )


@pytest.mark.parametrize(
    ("version", "topic", "history", "detail"),
    [
        (
            "mkt-sms-1999",
            "wealth",
            (),
            "consent text 'mkt-sms-1999' is not known: its message types and frequency cannot "
            "be checked",
        ),
        (
            "mkt-sms-2024-06",
            "wealth",
            (),
            "consent text 'mkt-sms-2024-06' does not state messages of type 'wealth'",
        ),
        (
            "mkt-sms-2023-01",
            "wealth",
            (),
            "consent text 'mkt-sms-2023-01' states no frequency for marketing SMS",
        ),
        (
            TEXT.version,
            "wealth",
            tuple(sent(d, Channel.SMS, content=f"offer:o{d}") for d in (29, 20, 12, 9)),
            "consent text 'mkt-sms-2025-01' allows 4 in 30 days marketing SMS; 4 sent in the "
            "last 30 days",
        ),
    ],
)
def test_a_marketing_sms_needs_consent_stating_its_type_and_frequency(
    version: str, topic: str, history: tuple[SentMessage, ...], detail: str
) -> None:
    party = PartySnapshot(PARTY_ID, consents=(consent(version=version),))
    # A cap wide enough that only the consent's own frequency counts here.
    policy = dataclasses.replace(POLICY, frequency_cap=(CapWindow(30, 100),))
    verdict = check(message(topic=topic), party, history, policy=policy)
    assert refused(verdict) == (Gate.CONSENT, SuppressionReason.CONSENT_SCOPE)
    assert isinstance(verdict, Suppress)
    assert verdict.suppression.detail == detail


def test_the_consent_frequency_counts_only_marketing_sms_in_its_period() -> None:
    history = (
        sent(31, Channel.SMS),  # before the period
        sent(1, Channel.SMS, Category.SERVICE),  # not marketing
        sent(2, Channel.EMAIL),  # not SMS
        sent(3, Channel.SMS, content="offer:a"),
    )
    policy = dataclasses.replace(POLICY, frequency_cap=(CapWindow(30, 100),))
    assert isinstance(check(history=history, policy=policy), Send)


def test_a_marketing_email_needs_no_sms_consent_text() -> None:
    party = PartySnapshot(PARTY_ID, consents=(consent(Channel.EMAIL, version="email-2020"),))
    assert check(message(Channel.EMAIL), party) == Send(
        "zh-CN", consent(Channel.EMAIL, version="email-2020")
    )


def test_do_not_contact_stops_marketing_but_not_service() -> None:
    party = dataclasses.replace(PARTY, do_not_contact=True)
    assert refused(check(party=party)) == (Gate.DO_NOT_CONTACT, SuppressionReason.DO_NOT_CONTACT)
    assert isinstance(check(message(category=Category.SERVICE), party), Send)


def test_an_opted_out_channel_stops_marketing_and_service_but_not_transactional() -> None:
    party = dataclasses.replace(PARTY, opted_out_channels=frozenset({Channel.SMS}))
    expected = (Gate.CHANNEL_PREFERENCE, SuppressionReason.CHANNEL_OPTED_OUT)
    assert refused(check(party=party)) == expected
    assert refused(check(message(category=Category.SERVICE), party)) == expected
    assert isinstance(check(message(category=Category.TRANSACTIONAL), party), Send)
    assert isinstance(check(message(Channel.EMAIL), party), Send)


def test_the_same_offer_on_any_channel_within_the_window_is_a_duplicate() -> None:
    earlier = (sent(3, Channel.PUSH, content="offer:usd_fx_wealth"),)
    verdict = check(history=earlier)
    assert refused(verdict) == (Gate.CONTENT_DEDUP, SuppressionReason.DUPLICATE_CONTENT)
    assert isinstance(verdict, Suppress)
    assert verdict.suppression.detail == (
        "offer:usd_fx_wealth already sent on push within the last 7 days"
    )
    # Outside the window, or another offer: not a duplicate.
    assert isinstance(check(history=(sent(8, content="offer:usd_fx_wealth"),)), Send)
    assert isinstance(check(message(offer_id="time_deposit_promo"), history=earlier), Send)


def test_the_frequency_cap_is_rolling_and_across_all_channels() -> None:
    two_this_week = (sent(6.9, Channel.EMAIL), sent(1, Channel.PUSH, content="offer:third"))
    verdict = check(history=two_this_week)
    assert refused(verdict) == (Gate.FREQUENCY_CAP, SuppressionReason.FREQUENCY_CAP)
    assert isinstance(verdict, Suppress)
    assert verdict.suppression.detail == (
        "frequency cap: 2 marketing messages in the last 7 days on all channels (limit 2)"
    )
    # One of them just over 7 days ago: within the cap again (a rolling, not calendar, week).
    assert isinstance(check(history=(sent(7.01), sent(1, content="offer:third"))), Send)


def test_the_longer_cap_window_counts_too() -> None:
    six_this_month = tuple(sent(8 + 3 * n, content=f"offer:o{n}") for n in range(6))
    assert refused(check(message(Channel.EMAIL), history=six_this_month)) == (
        Gate.FREQUENCY_CAP,
        SuppressionReason.FREQUENCY_CAP,
    )


def test_service_and_transactional_messages_do_not_use_the_cap() -> None:
    history = tuple(sent(0.1 * n, content=f"offer:o{n}") for n in range(1, 6))
    assert isinstance(check(message(category=Category.SERVICE), history=history), Send)
    assert isinstance(check(message(category=Category.TRANSACTIONAL), history=history), Send)
    # And they are not counted by it.
    service_sent = tuple(
        sent(0.1 * n, category=Category.SERVICE, content=f"template:t{n}") for n in range(1, 6)
    )
    assert isinstance(check(history=service_sent), Send)


SECONDS = 1 / 86_400  # in days, for `sent`


def test_messages_stamped_after_now_count_for_the_cap() -> None:
    """Another replica handed them over while this one waited for the party's lock (its `now`
    read earlier), or its clock runs a little ahead: they were sent, so they count."""
    handed_meanwhile = (sent(-2 * SECONDS), sent(-3 * SECONDS, content="offer:third"))
    assert refused(check(history=handed_meanwhile)) == (
        Gate.FREQUENCY_CAP,
        SuppressionReason.FREQUENCY_CAP,
    )


def test_a_message_stamped_after_now_counts_for_content_dedup() -> None:
    same_offer_meanwhile = (sent(-2 * SECONDS, Channel.PUSH, content="offer:usd_fx_wealth"),)
    assert refused(check(history=same_offer_meanwhile)) == (
        Gate.CONTENT_DEDUP,
        SuppressionReason.DUPLICATE_CONTENT,
    )


def test_the_gates_run_in_order_and_the_cap_is_the_last_refusal() -> None:
    """A marketing SMS failing every gate: each fix reveals the next gate, ending in quiet
    hours, which only defer."""
    night = dt.datetime(2026, 3, 17, 23, 0, tzinfo=SHANGHAI)
    party = PartySnapshot(
        PARTY_ID, do_not_contact=True, opted_out_channels=frozenset({Channel.SMS})
    )
    history: tuple[SentMessage, ...] = (
        sent(1, content="offer:usd_fx_wealth"),
        sent(2),
        sent(3, content="offer:third"),
    )
    seen: list[str] = []
    fixes = [
        "consent",
        "do-not-contact lifted",
        "channel opted in",
        "no duplicate left, two other marketing messages this week",
        "no marketing this week",
        "",
    ]
    for fix in fixes:
        verdict = check(party=party, history=history, now=night)
        seen.append(verdict.gate if isinstance(verdict, Suppress) else type(verdict).__name__)
        if fix == "consent":
            party = dataclasses.replace(party, consents=ALL_MARKETING)
        elif fix == "do-not-contact lifted":
            party = dataclasses.replace(party, do_not_contact=False)
        elif fix == "channel opted in":
            party = dataclasses.replace(party, opted_out_channels=frozenset())
        elif fix.startswith("no duplicate"):
            history = history[1:]
        elif fix:
            history = ()
    assert seen == [
        Gate.CONSENT,
        Gate.DO_NOT_CONTACT,
        Gate.CHANNEL_PREFERENCE,
        Gate.CONTENT_DEDUP,
        Gate.FREQUENCY_CAP,
        "Defer",
    ]


def test_a_transactional_message_bypasses_marketing_gates_and_quiet_hours() -> None:
    three_am = dt.datetime(2026, 10, 1, 3, 0, tzinfo=SHANGHAI)  # 国庆, at night
    party = PartySnapshot(PARTY_ID, do_not_contact=True)  # and no consent record at all
    history = tuple(sent(0.01 * n, Channel.SMS, content="template:tpl_sms") for n in range(9))
    verdict = check(message(category=Category.TRANSACTIONAL), party, history, three_am)
    assert verdict == Send("zh-CN", None)


def test_a_transactional_message_is_stopped_by_a_refusal_of_its_channel() -> None:
    fraud_alert = message(category=Category.TRANSACTIONAL, purpose=Purpose.RISK_ALERTS)
    party = PartySnapshot(
        PARTY_ID, consents=(consent(Channel.SMS, Purpose.RISK_ALERTS, given=False),)
    )
    verdict = check(fraud_alert, party)
    assert refused(verdict) == (Gate.CONSENT, SuppressionReason.NO_CONSENT)
    assert isinstance(verdict, Suppress)
    assert verdict.suppression.detail == "consent refused: sms/risk_alerts"


def test_a_service_message_at_night_is_deferred_to_the_end_of_quiet_hours() -> None:
    night = dt.datetime(2026, 3, 17, 23, 0, tzinfo=SHANGHAI)
    verdict = check(message(category=Category.SERVICE), now=night)
    assert verdict == Defer(
        dt.datetime(2026, 3, 18, 8, 0, tzinfo=SHANGHAI),
        "zh-CN",
        None,
        "quiet hours 21:00–08:00 (Asia/Shanghai)",
    )


def test_marketing_on_the_eve_of_national_day_is_deferred_past_the_holiday() -> None:
    eve = dt.datetime(2026, 9, 30, 20, 30, tzinfo=SHANGHAI)
    verdict = check(now=eve)
    assert isinstance(verdict, Defer)
    assert verdict.until == dt.datetime(2026, 10, 8, 9, 0, tzinfo=SHANGHAI)
    assert verdict.detail == (
        "marketing window 09:00–20:00 on working days, quiet hours 21:00–08:00 (Asia/Shanghai)"
    )


def test_the_customers_zone_and_quiet_hours_are_used() -> None:
    london = dataclasses.replace(
        PARTY, time_zone="Europe/London", quiet_hours=QuietHours(dt.time(22), dt.time(10))
    )
    # 10:00 in Shanghai is 02:00 in London: wait for his 10:00 (BST from 29 March: 09:00 UTC).
    verdict = check(party=london)
    assert isinstance(verdict, Defer)
    assert verdict.until == dt.datetime(2026, 3, 17, 10, 0, tzinfo=dt.UTC)


def test_a_bad_time_zone_preference_falls_back_to_the_banks() -> None:
    party = dataclasses.replace(PARTY, time_zone="Not/AZone")
    assert isinstance(check(party=party), Send)


def test_quiet_hours_leaving_no_marketing_time_suppress_rather_than_defer_forever() -> None:
    party = dataclasses.replace(PARTY, quiet_hours=QuietHours(dt.time(8), dt.time(21)))
    assert refused(check(party=party)) == (Gate.QUIET_HOURS, SuppressionReason.NO_SEND_WINDOW)


def test_the_inbox_needs_no_channel_consent_and_keeps_no_quiet_hours() -> None:
    night = dt.datetime(2026, 3, 14, 23, 0, tzinfo=SHANGHAI)  # a Saturday night
    assert check(message(Channel.INBOX), PartySnapshot(PARTY_ID), now=night) == Send("zh-CN", None)
    # The cap still counts it, and it counts toward the cap.
    assert refused(check(message(Channel.INBOX), history=(sent(1), sent(2)))) == (
        Gate.FREQUENCY_CAP,
        SuppressionReason.FREQUENCY_CAP,
    )
    inbox_sent = (sent(1, Channel.INBOX), sent(2, Channel.INBOX, content="offer:x"))
    assert refused(check(history=inbox_sent))[0] is Gate.FREQUENCY_CAP


@pytest.mark.parametrize(
    ("preference", "language"),
    [
        ("", "zh-CN"),
        ("zh-CN", "zh-CN"),
        ("zh_Hans_CN", "zh-CN"),
        ("en", "en"),
        ("en-GB", "en"),
        ("fr-FR", "zh-CN"),
    ],
)
def test_the_language_follows_the_preference_and_never_refuses(
    preference: str, language: str
) -> None:
    assert preferred_language(preference, ("zh-CN", "en"), "zh-CN") == language
    verdict = check(party=dataclasses.replace(PARTY, language=preference))
    assert verdict == Send(language, consent())


def test_a_purpose_that_does_not_fit_the_category_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as raised:
        message_purpose(Category.MARKETING, Purpose.SERVICE)
    assert [v.field for v in raised.value.violations] == ["purpose"]
    assert message_purpose(Category.TRANSACTIONAL, None) is Purpose.SERVICE
    assert message_purpose(Category.TRANSACTIONAL, Purpose.RISK_ALERTS) is Purpose.RISK_ALERTS
