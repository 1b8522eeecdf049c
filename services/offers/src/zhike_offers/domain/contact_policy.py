"""One contact policy per customer, over the party's contact history (pure).

Rules, checked in this order; the first that applies names the suppression:

- do-not-contact: no marketing offer at all (service offers still go).
- channel opt-out: nothing on a channel the party opted out of (offers decides no
  transactional messages, so no offer of either category goes there).
- consent: on an outbound channel (sms, email, push) a marketing offer needs the party's
  marketing consent for that channel; a service offer is held back only when service contact on
  that channel was refused.
- decline cool-down: after a DECLINE of an offer, nothing of it for the offer's
  `cool_down_days` (else the policy's default).
- ignored: `ignore_limit` IGNOREs of an offer within `ignore_window_days`, with no click or
  accept between them, suppress it for `ignore_suppression_days` from the last of them; an
  ignore within a suppression counts for nothing, and the count starts again after it. The rule
  replays the offer's events of its last `ignore_lookback_days` as if none came before them, so
  what it finds never depends on how much older history a caller happened to load. That is the
  rule over the whole history whenever, at some time within the lookback, the offer had gone
  max(window, suppression) days without an ignore: no suppression begun before such a pause is
  in force after it, and no ignore before it is within a window of one after it. Only ignores
  that kept coming less than that apart, suppression after suppression, for the whole lookback
  can be judged otherwise (as if the lookback began with no suppression in force).
- offer cap: at most the offer's `max_contacts` contacts (outbound decisions and impressions) in
  its last `window_days`.
- budget: marketing contacts across all channels, in rolling windows that end at `now` (never
  calendar periods): by default at most 2 in 7 days and 6 in 30 days. A contact counted is a
  marketing offer decided outbound (DECIDED_OUTBOUND, counted when decided: a contact later
  withdrawn still counts, erring toward fewer messages) or shown on a channel listed in
  `budget_channels` (an IMPRESSION: reported, or a message notifications sent of an offer not
  decided outbound); the budget limits marketing decisions on those channels. By default these
  are the outbound channels: an offer shown where the customer came to the bank (app, branch,
  call centre) is not a contact the bank started, and is governed by the per-offer rules.

Events stamped up to `CLOCK_SKEW` after `now` count as already happened: another replica or a
channel whose clock is ahead of this one stamped them, and a contact it just made must not
slip past the budget here. Events later than that are ignored.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zhike_offers.domain.catalogue import Offer
from zhike_offers.domain.eligibility import CHANNELS, OUTBOUND_CHANNELS
from zhike_offers.domain.facts import ConsentPurpose, OfferFacts

# How far ahead of this replica's clock another's (or a channel's) may be: RecordResponse
# refuses a response time later than that.
CLOCK_SKEW = dt.timedelta(minutes=5)


class ContactKind(enum.StrEnum):
    DECIDED_OUTBOUND = "decided_outbound"  # an outbound decision handed to notifications
    IMPRESSION = "impression"  # shown on a channel
    CLICK = "click"
    ACCEPT = "accept"
    DECLINE = "decline"
    IGNORE = "ignore"  # shown and not acted upon
    # Notifications sent an outbound decision's message: counted by nothing, as the decision
    # already counts it (a message of any other offer is an IMPRESSION on its channel).
    DELIVERED = "delivered"


@dataclass(frozen=True, order=True)
class ContactEvent:
    at: dt.datetime
    offer_id: str
    channel: str
    kind: ContactKind
    # The offer's category when the contact happened (a later change of category does not
    # rewrite what the customer already received).
    marketing: bool = True


_CANONICAL = operator.attrgetter("at", "offer_id", "channel", "kind", "marketing")


class ContactHistory:
    """A party's contact events, in a canonical order (whatever order they were listed in),
    indexed once for the checks of one decision."""

    def __init__(self, events: Iterable[ContactEvent] = ()) -> None:
        # The dataclass order, as a C-built key tuple: several times faster than __lt__.
        self.events: tuple[ContactEvent, ...] = tuple(sorted(events, key=_CANONICAL))
        by_offer: defaultdict[str, list[ContactEvent]] = defaultdict(list)
        for event in self.events:
            by_offer[event.offer_id].append(event)
        self._by_offer = dict(by_offer)

    def of_offer(self, offer_id: str) -> Sequence[ContactEvent]:
        return self._by_offer.get(offer_id, ())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContactHistory) and other.events == self.events

    def __hash__(self) -> int:
        return hash(self.events)

    def __repr__(self) -> str:
        return f"ContactHistory({len(self.events)} events)"


class SuppressionRule(enum.StrEnum):
    DO_NOT_CONTACT = "do_not_contact"
    CHANNEL_OPTED_OUT = "channel_opted_out"
    NO_CONSENT = "no_consent"
    DECLINE_COOL_DOWN = "decline_cool_down"
    IGNORED = "ignored"
    OFFER_CAP = "offer_cap"
    BUDGET = "budget"


@dataclass(frozen=True)
class Suppression:
    rule: SuppressionRule
    explanation: str  # names the rule and its numbers
    until: dt.datetime | None = None  # when it lifts, if that is known


@dataclass(frozen=True)
class BudgetWindow:
    days: int
    limit: int


@dataclass(frozen=True)
class RemainingBudget:
    remaining: int  # marketing contacts still allowed now
    window: BudgetWindow  # the window that allows the fewest
    used: int


_COUNTED = frozenset({ContactKind.DECIDED_OUTBOUND, ContactKind.IMPRESSION})
_ENGAGED = frozenset({ContactKind.CLICK, ContactKind.ACCEPT})


@dataclass(frozen=True)
class ContactPolicy:
    budget: tuple[BudgetWindow, ...] = (BudgetWindow(7, 2), BudgetWindow(30, 6))
    budget_channels: frozenset[str] = OUTBOUND_CHANNELS
    ignore_limit: int = 3
    ignore_window_days: int = 30
    ignore_suppression_days: int = 60
    decline_cool_down_days: int = 30

    def __post_init__(self) -> None:
        for index, window in enumerate(self.budget):
            if window.days < 1 or window.limit < 0:
                raise ValueError(f"budget[{index}]: days must be ≥ 1 and limit ≥ 0")
        unknown = sorted(self.budget_channels - set(CHANNELS))
        if unknown:
            raise ValueError(f"budget_channels: unknown {', '.join(unknown)}")
        if self.ignore_limit < 1 or self.ignore_suppression_days < 0:
            raise ValueError("ignore_limit must be ≥ 1 and ignore_suppression_days ≥ 0")
        if self.ignore_window_days < 1:
            raise ValueError("ignore_window_days must be ≥ 1")
        if self.decline_cool_down_days < 0:
            raise ValueError("decline_cool_down_days must be ≥ 0")

    def check(
        self,
        offer: Offer,
        *,
        channel: str,
        facts: OfferFacts,
        history: ContactHistory,
        now: dt.datetime,
        with_budget: bool = True,
    ) -> Suppression | None:
        """None when the policy lets `offer` reach the party on `channel` now, else the first
        rule that holds it back. A decision checks the budget once for all its offers
        (`with_budget=False` here), as several chosen offers share it."""
        events = [
            event for event in history.of_offer(offer.offer_id) if event.at <= now + CLOCK_SKEW
        ]
        return (
            self.permission(offer, channel=channel, facts=facts)
            or self._cool_down(offer, events, now)
            or self._ignored(events, now)
            or self._offer_cap(offer, events, now)
            or (self._budget(offer, channel, history, now) if with_budget else None)
        )

    def permission(self, offer: Offer, *, channel: str, facts: OfferFacts) -> Suppression | None:
        """The party's own say, whatever the history: do-not-contact, channel opt-outs and
        consent."""
        if offer.marketing and facts.do_not_contact:
            return Suppression(
                SuppressionRule.DO_NOT_CONTACT,
                "do-not-contact: the party receives no marketing offers",
            )
        if channel in facts.opted_out_channels:
            return Suppression(
                SuppressionRule.CHANNEL_OPTED_OUT,
                f"channel opt-out: the party opted out of {channel}",
            )
        if channel in OUTBOUND_CHANNELS:
            if offer.marketing and facts.consent(channel, ConsentPurpose.MARKETING) is not True:
                return Suppression(
                    SuppressionRule.NO_CONSENT, f"consent: no marketing consent for {channel}"
                )
            if not offer.marketing and facts.consent(channel, ConsentPurpose.SERVICE) is False:
                return Suppression(
                    SuppressionRule.NO_CONSENT, f"consent: service contact refused for {channel}"
                )
        return None

    def remaining_budget(self, history: ContactHistory, now: dt.datetime) -> RemainingBudget | None:
        """How many more marketing contacts the budget allows now (None: no budget set)."""
        times = [
            event.at
            for event in history.events
            if event.marketing and event.at <= now + CLOCK_SKEW and self._counts(event)
        ]
        tightest: RemainingBudget | None = None
        for window in self.budget:
            # Rolling: the window is (now - days, now + skew], whatever the calendar says.
            used = len(times) - bisect.bisect_right(times, now - dt.timedelta(days=window.days))
            remaining = max(window.limit - used, 0)
            if tightest is None or remaining < tightest.remaining:
                tightest = RemainingBudget(remaining, window, used)
        return tightest

    def limited_by_budget(self, offer: Offer, channel: str) -> bool:
        return offer.marketing and channel in self.budget_channels

    def _counts(self, event: ContactEvent) -> bool:
        return event.kind is ContactKind.DECIDED_OUTBOUND or (
            event.kind is ContactKind.IMPRESSION and event.channel in self.budget_channels
        )

    def _cool_down(
        self, offer: Offer, events: Sequence[ContactEvent], now: dt.datetime
    ) -> Suppression | None:
        days = offer.contact_limits.cool_down_days
        days = self.decline_cool_down_days if days is None else days
        declines = [event.at for event in events if event.kind is ContactKind.DECLINE]
        if not declines:
            return None
        until = declines[-1] + dt.timedelta(days=days)
        if now >= until:
            return None
        return Suppression(
            SuppressionRule.DECLINE_COOL_DOWN,
            f"decline cool-down: declined within the last {days} days",
            until,
        )

    @property
    def ignore_lookback_days(self) -> int:
        """How far back the ignore rule reads: a suppression in force now began with an ignore
        within its period, and the ignores that caused it lie within the window before that;
        as much again before those rebuilds the suppression in force when they came (which
        made some of them count for nothing) — 180 days by default."""
        return 2 * (self.ignore_window_days + self.ignore_suppression_days)

    def _ignored(self, events: Sequence[ContactEvent], now: dt.datetime) -> Suppression | None:
        period = dt.timedelta(days=self.ignore_suppression_days)
        window = dt.timedelta(days=self.ignore_window_days)
        start = now - dt.timedelta(days=self.ignore_lookback_days)
        ignores: list[dt.datetime] = []  # since the last engagement or suppression
        until: dt.datetime | None = None
        for event in events:
            if event.at < start or (until is not None and event.at < until):
                continue  # before the lookback (unread), or in a suppression: counts for nothing
            if event.kind in _ENGAGED:
                ignores = []
            elif event.kind is ContactKind.IGNORE:
                ignores = [at for at in ignores if at > event.at - window] + [event.at]
                if len(ignores) >= self.ignore_limit:
                    until, ignores = event.at + period, []
        if until is None or now >= until:
            return None
        return Suppression(
            SuppressionRule.IGNORED,
            f"ignored: {self.ignore_limit} impressions ignored within "
            f"{self.ignore_window_days} days, suppressed for {self.ignore_suppression_days} days",
            until,
        )

    def _offer_cap(
        self, offer: Offer, events: Sequence[ContactEvent], now: dt.datetime
    ) -> Suppression | None:
        limits = offer.contact_limits
        since = now - dt.timedelta(days=limits.window_days)
        used = sum(1 for event in events if event.kind in _COUNTED and event.at > since)
        if used < limits.max_contacts:
            return None
        return Suppression(
            SuppressionRule.OFFER_CAP,
            f"offer cap: {used} contacts with this offer in the last {limits.window_days} days "
            f"(limit {limits.max_contacts})",
        )

    def _budget(
        self, offer: Offer, channel: str, history: ContactHistory, now: dt.datetime
    ) -> Suppression | None:
        if not self.limited_by_budget(offer, channel):
            return None
        budget = self.remaining_budget(history, now)
        if budget is None or budget.remaining > 0:
            return None
        return Suppression(SuppressionRule.BUDGET, budget_explanation(budget))


def budget_explanation(budget: RemainingBudget) -> str:
    return (
        f"budget: {budget.used} marketing contacts in the last {budget.window.days} days "
        f"(limit {budget.window.limit})"
    )
