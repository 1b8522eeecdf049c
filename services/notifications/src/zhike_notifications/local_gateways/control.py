"""How a local gateway is told to misbehave, per channel.

A fault is a mode — answer normally (`ok`), refuse (`4xx`), fail (`5xx`) or throttle (`429`, HTTP
only) — with an optional exact status code, a delay before the answer, and a count: the fault
applies to the next `count` messages and then the gateway is back to normal (no count: until
changed). The codes keep their protocol's meaning: over HTTP 5xx is a provider error (the sender
retries), over SMTP 5yz is a permanent refusal and 4yz the one to retry.

A delayed *accepted* message is stored before the delay (the provider took it, its answer is
late: the sender's time-out then hides an accept, as a real slow provider does); a delayed
refusal stores nothing.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from zhike_notifications.domain.model import Channel


class FaultMode(enum.StrEnum):
    OK = "ok"
    REFUSE = "4xx"
    FAIL = "5xx"
    THROTTLE = "429"


# The status each mode answers with unless one is given, per protocol.
HTTP_DEFAULTS = {FaultMode.REFUSE: 400, FaultMode.FAIL: 503, FaultMode.THROTTLE: 429}
SMTP_DEFAULTS = {FaultMode.REFUSE: 451, FaultMode.FAIL: 554}
_RANGES = {FaultMode.REFUSE: range(400, 500), FaultMode.FAIL: range(500, 600)}
MAX_DELAY_MS = 120_000


@dataclass(frozen=True)
class Fault:
    mode: FaultMode = FaultMode.OK
    count: int | None = None  # the next `count` messages; None: until changed
    delay_ms: int = 0  # before the answer
    status: int | None = None  # the exact code, inside the mode's class
    retry_after: int | None = None  # seconds, sent as Retry-After with an HTTP 429 or 5xx

    def problems(self, channel: Channel) -> list[tuple[str, str]]:
        """(field, why) for every setting that does not fit `channel`'s gateway."""
        found: list[tuple[str, str]] = []
        if self.count is not None and self.count < 1:
            found.append(("count", "must be at least 1 (omit it: until changed)"))
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            found.append(("delay_ms", f"must be from 0 to {MAX_DELAY_MS}"))
        if self.retry_after is not None and self.retry_after < 0:
            found.append(("retry_after", "must not be negative"))
        if channel is Channel.EMAIL and self.mode is FaultMode.THROTTLE:
            found.append(("mode", "429 is HTTP: the SMTP gateway refuses with 4xx or 5xx"))
        if self.status is not None:
            if self.mode is FaultMode.OK:
                found.append(("status", "only a 4xx, 5xx or 429 mode answers with a status"))
            elif self.mode is FaultMode.THROTTLE and self.status != 429:
                found.append(("status", "mode 429 answers 429"))
            elif self.mode in _RANGES and self.status not in _RANGES[self.mode]:
                found.append(("status", f"mode {self.mode.value} needs a {self.mode.value} code"))
        return found

    def answer_status(self, channel: Channel) -> int | None:
        """The status this fault answers with on `channel`; None: accept the message."""
        if self.mode is FaultMode.OK:
            return None
        if self.status is not None:
            return self.status
        defaults = SMTP_DEFAULTS if channel is Channel.EMAIL else HTTP_DEFAULTS
        return defaults[self.mode]


class FaultControl:
    """The fault in force for one channel's gateway (one event loop: no locking needed)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._fault = Fault()
        self._remaining: int | None = None

    def set(self, fault: Fault) -> None:
        problems = fault.problems(self.channel)
        if problems:
            raise ValueError("; ".join(f"{field}: {why}" for field, why in problems))
        self._fault = fault
        self._remaining = fault.count

    def reset(self) -> None:
        self.set(Fault())

    def take(self) -> Fault:
        """The fault for the message arriving now (its count is used up by one)."""
        fault = self._fault
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self.reset()
        return fault

    def state(self) -> dict[str, Any]:
        state = asdict(self._fault)
        state["mode"] = self._fault.mode.value
        state["remaining"] = self._remaining
        return state
