"""Retries: provider failover in the configured order at once, exponential backoff with full
jitter between rounds (seeded), transient errors only; permanent errors are never retried and an
ambiguous one never goes to another provider."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_notifications.domain.model import GiveUpReason
from zhike_notifications.domain.retry import (
    ErrorKind,
    Retry,
    RetryPolicy,
    Stop,
    after_failure,
    classify_http_status,
    classify_smtp_reply,
)

NOW = dt.datetime(2026, 3, 17, 2, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(
    providers=("sms-a", "sms-b"),
    max_attempts=6,
    base_delay=dt.timedelta(seconds=2),
    max_delay=dt.timedelta(seconds=30),
)


def test_a_permanent_error_is_never_retried() -> None:
    assert after_failure(1, "sms-a", ErrorKind.PERMANENT, NOW, POLICY, random.Random(1)) == Stop(
        GiveUpReason.PERMANENT_ERROR, 1
    )


def test_a_transient_error_fails_over_to_the_next_provider_at_once() -> None:
    step = after_failure(1, "sms-a", ErrorKind.TRANSIENT, NOW, POLICY, random.Random(1))
    assert step == Retry(2, NOW, "sms-b")


def test_after_a_round_of_providers_the_next_waits_a_jittered_backoff() -> None:
    step = after_failure(2, "sms-b", ErrorKind.TRANSIENT, NOW, POLICY, random.Random(7))
    assert isinstance(step, Retry)
    assert (step.attempt, step.provider) == (3, "sms-a")
    expected = dt.timedelta(seconds=random.Random(7).uniform(0, 2))  # round 1: [0, base]
    assert step.at == NOW + expected


def test_the_same_seed_gives_the_same_schedule() -> None:
    def schedule(seed: int) -> list[dt.datetime]:
        rng = random.Random(seed)
        steps = [
            after_failure(n, POLICY.provider_for(n), ErrorKind.TRANSIENT, NOW, POLICY, rng)
            for n in range(1, 6)
        ]
        return [step.at for step in steps if isinstance(step, Retry)]

    assert schedule(42) == schedule(42)
    assert schedule(42) != schedule(43)


@given(seed=st.integers(0, 2**32), attempt=st.integers(1, 5))
def test_the_backoff_is_full_jitter_under_a_growing_capped_ceiling(seed: int, attempt: int) -> None:
    single = RetryPolicy(
        ("sms-a",),
        max_attempts=6,
        base_delay=dt.timedelta(seconds=2),
        max_delay=dt.timedelta(seconds=30),
    )
    step = after_failure(attempt, "sms-a", ErrorKind.TRANSIENT, NOW, single, random.Random(seed))
    assert isinstance(step, Retry)
    ceiling = min(30.0, 2.0 * 2 ** (attempt - 1))  # 2, 4, 8, 16, 30 s
    assert 0 <= (step.at - NOW).total_seconds() <= ceiling


def test_full_jitter_spreads_retries_over_the_whole_range() -> None:
    rng = random.Random(2026)
    single = RetryPolicy(
        ("sms-a",), base_delay=dt.timedelta(seconds=8), max_delay=dt.timedelta(seconds=8)
    )
    delays = []
    for _ in range(200):
        step = after_failure(1, "sms-a", ErrorKind.TRANSIENT, NOW, single, rng)
        assert isinstance(step, Retry)
        delays.append((step.at - NOW).total_seconds())
    # Not a fixed delay, nor "base ± a little": draws from near 0 to near the ceiling.
    assert min(delays) < 1
    assert max(delays) > 7


def test_retries_stop_after_the_last_attempt() -> None:
    step = after_failure(6, "sms-b", ErrorKind.TRANSIENT, NOW, POLICY, random.Random(1))
    assert step == Stop(GiveUpReason.RETRIES_EXHAUSTED, 6)


def test_an_ambiguous_error_is_retried_at_the_same_provider_only() -> None:
    step = after_failure(1, "sms-a", ErrorKind.AMBIGUOUS, NOW, POLICY, random.Random(3))
    assert isinstance(step, Retry)
    assert step.provider == "sms-a"
    assert NOW <= step.at <= NOW + POLICY.base_delay


def test_a_transient_error_at_a_provider_that_may_hold_the_message_is_not_failed_over() -> None:
    step = after_failure(
        3, "sms-b", ErrorKind.TRANSIENT, NOW, POLICY, random.Random(3), pinned=True
    )
    assert isinstance(step, Retry)
    assert (step.attempt, step.provider) == (4, "sms-b")


def test_retry_after_is_honoured_when_the_same_provider_is_next() -> None:
    single = RetryPolicy(("sms-a",))
    wait = dt.timedelta(seconds=90)
    step = after_failure(1, "sms-a", ErrorKind.TRANSIENT, NOW, single, random.Random(1), wait)
    assert step == Retry(2, NOW + wait, "sms-a")
    # Another provider is next: it is tried at once, whatever sms-a asked for.
    step = after_failure(1, "sms-a", ErrorKind.TRANSIENT, NOW, POLICY, random.Random(1), wait)
    assert step == Retry(2, NOW, "sms-b")


@pytest.mark.parametrize("seconds", [86_400, 345_600_000_000])
def test_retry_after_is_honoured_up_to_the_policys_longest_wait(seconds: int) -> None:
    single = RetryPolicy(("sms-a",), max_delay=dt.timedelta(seconds=300))
    wait = dt.timedelta(seconds=seconds)
    step = after_failure(1, "sms-a", ErrorKind.TRANSIENT, NOW, single, random.Random(1), wait)
    assert step == Retry(2, NOW + dt.timedelta(seconds=300), "sms-a")


def test_a_provider_no_longer_configured_fails_over_to_the_first() -> None:
    step = after_failure(1, "sms-old", ErrorKind.TRANSIENT, NOW, POLICY, random.Random(1))
    assert isinstance(step, Retry)
    assert step.provider == "sms-a"


def test_a_policy_without_providers_is_refused() -> None:
    with pytest.raises(ValueError, match="providers"):
        RetryPolicy(())
    with pytest.raises(ValueError, match="providers"):
        RetryPolicy(("a", "a"))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ErrorKind.TRANSIENT),
        (502, ErrorKind.TRANSIENT),
        (503, ErrorKind.TRANSIENT),
        (429, ErrorKind.TRANSIENT),
        (408, ErrorKind.TRANSIENT),
        (400, ErrorKind.PERMANENT),
        (401, ErrorKind.PERMANENT),
        (404, ErrorKind.PERMANENT),
        (422, ErrorKind.PERMANENT),
    ],
)
def test_http_answers_are_classified(status: int, kind: ErrorKind) -> None:
    assert classify_http_status(status) is kind


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (421, ErrorKind.TRANSIENT),
        (451, ErrorKind.TRANSIENT),
        (550, ErrorKind.PERMANENT),
        (554, ErrorKind.PERMANENT),
    ],
)
def test_smtp_replies_are_classified(code: int, kind: ErrorKind) -> None:
    assert classify_smtp_reply(code) is kind


def test_a_success_is_not_classified_as_an_error() -> None:
    with pytest.raises(ValueError, match="not an error"):
        classify_http_status(200)
    with pytest.raises(ValueError, match="not a failure"):
        classify_smtp_reply(250)
