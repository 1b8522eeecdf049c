"""The contact policy: rolling budget, per-offer caps, decline cool-down, ignore suppression,
do-not-contact and consent — each named when it holds an offer back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_offers.domain.catalogue import Offer
from zhike_offers.domain.contact_policy import (
    BudgetWindow,
    ContactEvent,
    ContactHistory,
    ContactKind,
    ContactPolicy,
    Suppression,
    SuppressionRule,
)
from zhike_offers.domain.facts import OfferFacts

from .builders import NOW, days, event, facts, offer

SMS_OFFER: dict[str, Any] = {
    "channels": ["sms", "mobile_app"],
    "templates": {"sms": "tpl"},
    "outbound": True,
}
DECIDED = ContactKind.DECIDED_OUTBOUND


def check(
    subject: Offer,
    events: list[ContactEvent],
    now: dt.datetime = NOW,
    *,
    channel: str = "sms",
    party: OfferFacts | None = None,
    policy: ContactPolicy | None = None,
) -> Suppression | None:
    return (policy or ContactPolicy()).check(
        subject,
        channel=channel,
        facts=party or facts(),
        history=ContactHistory(events),
        now=now,
    )


def test_the_budget_is_rolling_not_calendar() -> None:
    sms = offer("sms_offer", **SMS_OFFER)
    # Sunday 29 and Monday 30 November: a new calendar week and month have begun by 1 December,
    # but both contacts are within the last 7 days.
    contacts = [
        event(DECIDED, dt.datetime(2026, 11, 29, 10, tzinfo=dt.UTC), "other", "email"),
        event(DECIDED, dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC), "another", "push"),
    ]
    found = check(sms, contacts, dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC))
    assert found == Suppression(
        SuppressionRule.BUDGET, "budget: 2 marketing contacts in the last 7 days (limit 2)"
    )
    # Seven days after the first contact, it has left the window: the budget has room again.
    assert check(sms, contacts, dt.datetime(2026, 12, 6, 10, tzinfo=dt.UTC)) is None
    just_before = dt.datetime(2026, 12, 6, 9, 59, tzinfo=dt.UTC)
    assert check(sms, contacts, just_before) is not None


def test_the_longer_window_limits_too() -> None:
    sms = offer("sms_offer", **SMS_OFFER)
    # Six contacts in 30 days, never more than two in any 7 days.
    contacts = [event(DECIDED, NOW - days(8 * n + 8), f"o{n}") for n in range(3)] + [
        event(DECIDED, NOW - days(8 * n + 9), f"p{n}") for n in range(3)
    ]
    found = check(sms, contacts)
    assert found is not None
    assert found.explanation == "budget: 6 marketing contacts in the last 30 days (limit 6)"


def test_service_offers_neither_count_nor_are_limited_by_the_budget() -> None:
    service = offer("service_offer", category="service", **SMS_OFFER)
    marketing = offer("sms_offer", **SMS_OFFER)
    service_contacts = [
        event(DECIDED, NOW - days(n), "service_offer", marketing=False) for n in range(1, 3)
    ]
    assert check(marketing, service_contacts) is None
    marketing_contacts = [event(DECIDED, NOW - days(n), f"m{n}") for n in range(1, 3)]
    assert check(service, marketing_contacts) is None


def test_the_budget_counts_app_impressions_only_when_the_app_is_a_budget_channel() -> None:
    sms = offer("sms_offer", **SMS_OFFER)
    shown = [event(ContactKind.IMPRESSION, NOW - days(n), f"m{n}", "mobile_app") for n in (1, 2)]
    assert check(sms, shown) is None
    widened = ContactPolicy(budget_channels=frozenset({"sms", "email", "push", "mobile_app"}))
    found = check(sms, shown, policy=widened)
    assert found is not None
    assert found.rule is SuppressionRule.BUDGET
    # In the app the budget does not limit by default: the customer came to the bank.
    assert (
        check(sms, [event(DECIDED, NOW - days(n), f"m{n}") for n in (1, 2)], channel="mobile_app")
        is None
    )


def test_a_decline_starts_the_cool_down() -> None:
    subject = offer(contact_limits={"cool_down_days": 90})
    declined_at = NOW - days(10)
    declined = [event(ContactKind.DECLINE, declined_at, channel="mobile_app")]
    assert check(subject, [], channel="mobile_app") is None
    found = check(subject, declined, channel="mobile_app")
    assert found is not None
    assert (found.rule, found.until) == (SuppressionRule.DECLINE_COOL_DOWN, declined_at + days(90))
    assert found.explanation == "decline cool-down: declined within the last 90 days"
    assert check(subject, declined, declined_at + days(90), channel="mobile_app") is None


def test_the_policy_default_cool_down_applies_when_the_offer_sets_none() -> None:
    declined = [event(ContactKind.DECLINE, NOW - days(20), channel="mobile_app")]
    policy = ContactPolicy(decline_cool_down_days=21)
    found = check(offer(), declined, channel="mobile_app", policy=policy)
    assert found is not None
    assert found.until == NOW + days(1)
    assert check(offer(), declined, NOW + days(1), channel="mobile_app", policy=policy) is None


def test_three_ignored_impressions_suppress_for_60_days_then_not() -> None:
    subject = offer(contact_limits={"max_contacts": 100})
    third = NOW - days(1)
    ignored = [
        event(ContactKind.IGNORE, third - days(2), channel="mobile_app"),
        event(ContactKind.IGNORE, third - days(1), channel="mobile_app"),
        event(ContactKind.IGNORE, third, channel="mobile_app"),
    ]
    assert check(subject, ignored[:2], channel="mobile_app") is None
    found = check(subject, ignored, channel="mobile_app")
    assert found is not None
    assert (found.rule, found.until) == (SuppressionRule.IGNORED, third + days(60))
    assert found.explanation == (
        "ignored: 3 impressions ignored within 30 days, suppressed for 60 days"
    )
    assert check(subject, ignored, third + days(60) - dt.timedelta(seconds=1), channel="mobile_app")
    assert check(subject, ignored, third + days(60), channel="mobile_app") is None
    # After the suppression the count starts again: one more ignore is not three.
    again = [*ignored, event(ContactKind.IGNORE, third + days(61), channel="mobile_app")]
    assert check(subject, again, third + days(62), channel="mobile_app") is None


def test_three_ignores_spread_over_more_than_the_window_do_not_suppress() -> None:
    subject = offer(contact_limits={"max_contacts": 100})
    ignored = [event(ContactKind.IGNORE, NOW - days(n), channel="mobile_app") for n in (40, 20, 1)]
    assert check(subject, ignored, channel="mobile_app") is None
    assert check(
        subject, ignored, channel="mobile_app", policy=ContactPolicy(ignore_window_days=40)
    )


ENGAGEMENTS = st.sampled_from([ContactKind.IGNORE, ContactKind.CLICK, ContactKind.ACCEPT])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(ENGAGEMENTS, st.integers(min_value=0, max_value=400 * 24)),
        max_size=25,
    ),
    st.integers(min_value=1, max_value=60),
    st.integers(min_value=1, max_value=4),
)
def test_the_ignore_rule_reads_nothing_older_than_its_lookback(
    hours_back: list[tuple[ContactKind, int]], window_days: int, limit: int
) -> None:
    # Storage loads history from a start that depends on the whole catalogue's longest window:
    # more history loaded must never change what the rule finds.
    policy = ContactPolicy(ignore_limit=limit, ignore_window_days=window_days)
    subject = offer(contact_limits={"max_contacts": 100})
    events = sorted(
        (event(kind, NOW - dt.timedelta(hours=h), channel="mobile_app") for kind, h in hours_back),
        key=lambda e: e.at,
    )
    start = NOW - days(policy.ignore_lookback_days)
    recent = [e for e in events if e.at >= start]

    assert check(subject, events, channel="mobile_app", policy=policy) == check(
        subject, recent, channel="mobile_app", policy=policy
    )


def test_a_click_between_ignores_starts_the_count_again() -> None:
    subject = offer(contact_limits={"max_contacts": 100})
    kinds = [ContactKind.IGNORE, ContactKind.IGNORE, ContactKind.CLICK, ContactKind.IGNORE]
    events = [event(kind, NOW - days(10 - n), channel="mobile_app") for n, kind in enumerate(kinds)]
    assert check(subject, events, channel="mobile_app") is None


def test_the_offer_cap_counts_outbound_decisions_and_impressions_in_its_window() -> None:
    subject = offer(contact_limits={"max_contacts": 2, "window_days": 14}, **SMS_OFFER)
    party = facts(consents={("sms", "marketing"): True})
    contacts = [
        event(ContactKind.IMPRESSION, NOW - days(3), channel="mobile_app"),
        event(ContactKind.DELIVERED, NOW - days(4)),  # the same contact as its decision
        event(DECIDED, NOW - days(4)),
        event(DECIDED, NOW - days(15)),  # outside the window
    ]
    found = check(subject, contacts, channel="mobile_app", party=party)
    assert found is not None
    assert found.explanation == (
        "offer cap: 2 contacts with this offer in the last 14 days (limit 2)"
    )
    assert check(subject, contacts, NOW + days(11), channel="mobile_app", party=party) is None


def test_do_not_contact_suppresses_marketing_but_not_service() -> None:
    party = facts(do_not_contact=True)
    found = check(offer(), [], channel="mobile_app", party=party)
    assert found is not None
    assert found.rule is SuppressionRule.DO_NOT_CONTACT
    assert check(offer(category="service"), [], channel="mobile_app", party=party) is None


@pytest.mark.parametrize("category", ["marketing", "service"])
def test_an_opted_out_channel_suppresses_every_offer_on_it_and_only_there(category: str) -> None:
    consents = {("sms", "marketing"): True, ("email", "marketing"): True}
    party = facts(consents=consents, opted_out_channels=frozenset({"sms"}))
    found = check(offer(**SMS_OFFER, category=category), [], party=party)
    assert found == Suppression(
        SuppressionRule.CHANNEL_OPTED_OUT, "channel opt-out: the party opted out of sms"
    )
    assert check(offer(**SMS_OFFER, category=category), [], channel="email", party=party) is None


@pytest.mark.parametrize("given", [False, None])
def test_outbound_marketing_needs_consent_for_that_channel(given: bool | None) -> None:
    consents = {} if given is None else {("sms", "marketing"): given}
    party = facts(consents={**consents, ("email", "marketing"): True})
    found = check(offer(**SMS_OFFER), [], party=party)
    assert found == Suppression(SuppressionRule.NO_CONSENT, "consent: no marketing consent for sms")
    # In the app the customer came to the bank: no outbound consent is needed.
    assert check(offer(**SMS_OFFER), [], channel="mobile_app", party=party) is None


def test_a_service_offer_is_held_back_only_where_service_contact_was_refused() -> None:
    service = offer(category="service", **SMS_OFFER)
    assert check(service, [], party=facts(consents={})) is None
    refused = facts(consents={("sms", "service"): False})
    found = check(service, [], party=refused)
    assert found is not None
    assert found.explanation == "consent: service contact refused for sms"


def test_contacts_stamped_by_a_clock_up_to_five_minutes_ahead_count_toward_the_budget() -> None:
    sms = offer("sms_offer", **SMS_OFFER)
    # Two contacts another replica, its clock four minutes ahead, stamped "just now".
    ahead = [event(DECIDED, NOW + dt.timedelta(minutes=4), f"m{n}", "email") for n in range(2)]
    found = check(sms, ahead)
    assert found is not None
    assert found.rule is SuppressionRule.BUDGET
    budget = ContactPolicy().remaining_budget(ContactHistory(ahead), NOW)
    assert budget is not None
    assert (budget.used, budget.remaining) == (2, 0)


def test_events_later_than_the_clock_skew_are_ignored() -> None:
    sms = offer("sms_offer", **SMS_OFFER)
    later = [event(DECIDED, NOW + dt.timedelta(minutes=6), f"m{n}") for n in range(5)]
    assert check(sms, later) is None
    assert check(sms, [event(DECIDED, NOW + days(1), f"m{n}") for n in range(5)]) is None


def test_a_policy_with_a_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        ContactPolicy(budget=(BudgetWindow(0, 2),))
