"""The ignore rule against the README's wording: `ignore_limit` ignores within
`ignore_window_days`, with no click or accept between them, suppress the offer for
`ignore_suppression_days`; ignores inside a suppression count for nothing, and after it the
count starts again — however long ago the ignores that began it fell."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_offers.domain.contact_policy import (
    ContactEvent,
    ContactHistory,
    ContactKind,
    ContactPolicy,
    Suppression,
    SuppressionRule,
)

from .builders import NOW, days, event, facts, offer

DAY_0 = NOW


def ignored_on(*day_numbers: int) -> list[ContactEvent]:
    return [event(ContactKind.IGNORE, DAY_0 + days(n), channel="mobile_app") for n in day_numbers]


def check_on(
    day: int, events: list[ContactEvent], policy: ContactPolicy | None = None
) -> Suppression | None:
    return (policy or ContactPolicy()).check(
        offer(),  # on the app, where the offer cap counts no ignore, click or accept
        channel="mobile_app",
        facts=facts(),
        history=ContactHistory(events),
        now=DAY_0 + days(day),
    )


def suppressed_until_day(day: int) -> Suppression:
    return Suppression(
        SuppressionRule.IGNORED,
        "ignored: 3 impressions ignored within 30 days, suppressed for 60 days",
        DAY_0 + days(day),
    )


# Days 0, 1 and 2 suppress until day 62; days 50, 55 and 60 fall inside that suppression.
ABSORBED = ignored_on(0, 1, 2, 50, 55, 60)


def test_days_0_1_2_suppress_until_62_and_the_ignores_during_it_never_suppress_later() -> None:
    assert check_on(61, ABSORBED) == suppressed_until_day(62)
    assert check_on(63, ABSORBED) is None
    # Day 0 is 91 days back: the ignores of days 50, 55 and 60 still count for nothing.
    assert check_on(91, ABSORBED) is None
    assert [day for day in range(62, 200) if check_on(day, ABSORBED) is not None] == []


def test_three_fresh_ignores_after_the_suppression_suppress_for_60_days_from_the_third() -> None:
    fresh = [*ABSORBED, *ignored_on(63, 64, 65)]
    assert check_on(65, fresh) == suppressed_until_day(125)
    # Day 124: days 0 to 2 are 124 days back, and still the suppression is day 65's.
    assert check_on(124, fresh) == suppressed_until_day(125)
    assert check_on(125, fresh) is None


def test_an_ignore_absorbed_by_a_suppression_does_not_join_the_ignores_after_it() -> None:
    # Days 60, 63 and 64 are within 30 days, but day 60 fell inside the suppression.
    two_fresh = [*ABSORBED, *ignored_on(63, 64)]
    assert check_on(64, two_fresh) is None
    assert check_on(91, two_fresh) is None


# --- the rule against a brute-force reading of the README over the whole history -------------


def readme_rule(
    history: list[tuple[int, ContactKind]], now: int, limit: int, window: int, period: int
) -> int | None:
    """The day the suppression in force on day `now` lifts (None: none in force), replaying the
    README's rule over every event since the first: ignores inside a suppression count for
    nothing, a click or accept starts the count again, as does a suppression."""
    suppressed_until: int | None = None
    counted: list[int] = []
    for day, kind in sorted(history):
        if day > now:
            break
        if suppressed_until is not None and day < suppressed_until:
            continue
        if kind is not ContactKind.IGNORE:
            counted = []
            continue
        counted.append(day)
        if len(counted) >= limit and day - counted[-limit] < window:
            suppressed_until, counted = day + period, []
    if suppressed_until is None or now >= suppressed_until:
        return None
    return suppressed_until


def pause_ends_since(
    history: list[tuple[int, ContactKind]], since: int, now: int, pause: int
) -> bool:
    """Whether, on some day from `since` to `now`, the offer had gone `pause` days without an
    ignore (the time before its first event counting as such a pause)."""
    ignores = sorted(day for day, kind in history if kind is ContactKind.IGNORE and day <= now)
    if not ignores or ignores[0] >= since:
        return True
    return any(
        later - earlier >= pause and later >= since
        for earlier, later in zip(ignores, [*ignores[1:], now], strict=True)
    )


KINDS = st.sampled_from([ContactKind.IGNORE] * 5 + [ContactKind.CLICK, ContactKind.ACCEPT])


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[int, ContactKind]]:
    """Events on days from 0, drawn as the days between them: bursts and pauses alike."""
    day = 0
    history: list[tuple[int, ContactKind]] = []
    for gap, kind in draw(st.lists(st.tuples(st.integers(0, 50), KINDS), max_size=20)):
        day += gap
        history.append((day, kind))
    return history


@settings(max_examples=200, deadline=None)
@given(
    history=histories(),
    after=st.integers(-60, 150),
    limit=st.integers(1, 4),
    window=st.integers(1, 60),
    period=st.integers(0, 90),
)
def test_the_ignore_rule_replays_its_lookback_and_matches_all_history_after_a_pause_in_it(
    history: list[tuple[int, ContactKind]], after: int, limit: int, window: int, period: int
) -> None:
    now = (history[-1][0] if history else 0) + after
    policy = ContactPolicy(
        ignore_limit=limit, ignore_window_days=window, ignore_suppression_days=period
    )
    events = [event(kind, DAY_0 + days(day), channel="mobile_app") for day, kind in history]
    found = check_on(now, events, policy)
    found_until = None if found is None else found.until

    def on(day: int | None) -> dt.datetime | None:
        return None if day is None else DAY_0 + days(day)

    # The lookback: the span of the ignores that can suppress now (window + suppression), and
    # as much again before it to rebuild the suppression in force at its start.
    since = now - 2 * (window + period)
    # Always: the README's rule over the lookback's events, as if none came before them.
    recent = [(day, kind) for day, kind in history if day >= since]
    assert found_until == on(readme_rule(recent, now, limit, window, period))
    # Which is the README's rule over the whole history whenever, within the lookback, the
    # offer had gone max(window, suppression) days without an ignore.
    if pause_ends_since(history, since, now, max(window, period)):
        assert found_until == on(readme_rule(history, now, limit, window, period))
