"""What to do after a failed send attempt: fail over, retry later, or stop (pure).

- A permanent error (a wrong number, a refused address, a 4xx) is never retried: FAILED.
- A transient error (the provider is down or busy: 5xx, 429, connection refused) fails over to
  the next provider in the configured order at once; once every provider has failed in a round,
  the next round waits an exponential backoff with full jitter: a uniform draw from
  [0, min(max_delay, base_delay × 2^(round−1))], from the random generator passed in (seeded in
  tests). A `retry_after` the provider asked for is honoured when the same provider is next, up
  to `max_delay`.
- An ambiguous error (a time-out after the request was sent: the provider may have accepted it)
  is retried at the same provider only, with the same out-id that provider deduplicates on:
  failing over could send the message twice. So is any later error of the message there
  (`pinned`): the provider may still hold it, whatever it answers now.
- After `max_attempts` attempts: FAILED (retries exhausted).
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from dataclasses import dataclass

from zhike_notifications.domain.model import GiveUpReason


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # not accepted, may succeed later or elsewhere
    AMBIGUOUS = "ambiguous"  # may have been accepted: the same provider only
    PERMANENT = "permanent"  # will never succeed


@dataclass(frozen=True)
class RetryPolicy:
    providers: tuple[str, ...]  # the failover order
    max_attempts: int = 6
    base_delay: dt.timedelta = dt.timedelta(seconds=2)
    max_delay: dt.timedelta = dt.timedelta(minutes=5)

    def __post_init__(self) -> None:
        if not self.providers or len(set(self.providers)) != len(self.providers):
            raise ValueError("providers: at least one, each once")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be ≥ 1")
        if self.base_delay <= dt.timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("base_delay must be > 0 and max_delay ≥ base_delay")

    def provider_for(self, attempt: int) -> str:
        """The provider of attempt `attempt` (1, 2, …) when every failure was transient."""
        return self.providers[(attempt - 1) % len(self.providers)]


@dataclass(frozen=True)
class Retry:
    attempt: int  # the next attempt's number
    at: dt.datetime
    provider: str


@dataclass(frozen=True)
class Stop:
    reason: GiveUpReason
    attempts: int


def after_failure(
    attempt: int,
    provider: str,
    error: ErrorKind,
    now: dt.datetime,
    policy: RetryPolicy,
    rng: random.Random,
    retry_after: dt.timedelta | None = None,
    *,
    pinned: bool = False,
) -> Retry | Stop:
    """The step after attempt `attempt` through `provider` failed with `error` at `now`;
    `pinned`: an earlier attempt there went unanswered (it may hold the message), so there is
    no failing over."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if error is ErrorKind.PERMANENT:
        return Stop(GiveUpReason.PERMANENT_ERROR, attempt)
    if attempt >= policy.max_attempts:
        return Stop(GiveUpReason.RETRIES_EXHAUSTED, attempt)
    following = attempt + 1
    if error is ErrorKind.AMBIGUOUS or pinned:
        next_provider = provider
        delay = _backoff(attempt, policy, rng)
    else:
        next_provider = _next_provider(provider, policy)
        # Fail over at once while some provider has not been tried in this round.
        delay = (
            dt.timedelta(0)
            if attempt % len(policy.providers)
            else _backoff(attempt // len(policy.providers), policy, rng)
        )
    if retry_after is not None and next_provider == provider:
        # Never past the longest wait configured: a provider's word (a day, a century) must
        # neither hold a passcode back nor overflow the clock.
        delay = max(delay, min(retry_after, policy.max_delay))
    return Retry(following, now + delay, next_provider)


def _next_provider(provider: str, policy: RetryPolicy) -> str:
    if provider not in policy.providers:  # a provider since removed from the configuration
        return policy.providers[0]
    index = policy.providers.index(provider)
    return policy.providers[(index + 1) % len(policy.providers)]


def _backoff(round_: int, policy: RetryPolicy, rng: random.Random) -> dt.timedelta:
    """Full jitter: uniform in [0, min(max, base × 2^(round−1))]."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** min(round_ - 1, 30))
    return dt.timedelta(seconds=rng.uniform(0, ceiling.total_seconds()))


def classify_http_status(status: int) -> ErrorKind:
    """An SMS or push provider's HTTP answer: 408, 425, 429 and 5xx are transient; any other
    4xx is permanent (the request itself is wrong)."""
    if 200 <= status < 300:
        raise ValueError(f"HTTP {status} is not an error")
    if status in (408, 425, 429) or status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


def classify_smtp_reply(code: int) -> ErrorKind:
    """An SMTP reply: 4yz is a transient failure, 5yz a permanent one (RFC 5321 §4.2.1)."""
    if 400 <= code < 500:
        return ErrorKind.TRANSIENT
    if 500 <= code < 600:
        return ErrorKind.PERMANENT
    raise ValueError(f"SMTP {code} is not a failure")
