"""The notifications use cases: messages asked for, dispatched through the gates to a provider,
and what comes back (receipts, replies, unsubscribes). Each use case owns its transaction.

Dispatch of one notification, and why it is shaped so (at most once, even across a crash):

1. With the party's lock (one writer per party, so two replicas never both pass the frequency
   cap), read the notification, the party's consents and what he was sent; run the gates.
   A refusal (SUPPRESSED) or a deferral (DEFERRED until …) is written and that is all. A send is
   written as `Sending(attempt, provider)` before anything leaves: from then on it counts as sent
   for the cap and dedup, and the choice of provider is on record.
2. The message goes to that provider with the notification id as its out-id; the provider
   deduplicates on it.
3. The answer is written: accepted (SENT), or a retry planned (failover at once, then backoff),
   or given up (FAILED). A retry runs the gates again (step 1): quiet hours may have begun.

A crash between 2 and 3 leaves `Sending` on the row; when its lease runs out any dispatcher takes
it up again and asks the same provider with the same out-id, without running the gates again, so
the provider answers with the message it already holds and the customer gets one. From then on,
as after a time-out, the message is pinned to that provider (`pinned_provider`): it may hold it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace

from zhike_notifications.domain import gates, lifecycle
from zhike_notifications.domain.calendar import WorkingCalendar
from zhike_notifications.domain.gates import (
    ConsentEvidence,
    ConsentRecord,
    GatePolicy,
    PartySnapshot,
)
from zhike_notifications.domain.model import (
    Category,
    Channel,
    GiveUpReason,
    Message,
    Notification,
    Purpose,
    Status,
    Suppression,
    SuppressionReason,
    message_purpose,
)
from zhike_notifications.domain.ports import (
    ConsentEntry,
    ConsentWithdrawnByCustomer,
    ContactPreferences,
    DecisionWithdrawal,
    DirectoryUnavailable,
    InboxEntry,
    NotificationsUnitOfWork,
    Outgoing,
    PartyContact,
    PartyDirectory,
    ProviderAnswer,
    ProviderGateway,
    Sending,
    SendingStopped,
    StatusChanged,
    StoredNotification,
)
from zhike_notifications.domain.rate_limit import (
    DEFAULT_RATE_LIMIT,
    RateWindow,
    lookback,
    over_limit,
)
from zhike_notifications.domain.replies import ReplyAction, parse_reply
from zhike_notifications.domain.retry import ErrorKind, RetryPolicy, Stop, after_failure
from zhike_notifications.domain.templates import CompiledTemplate, Rendered, RenderFailed
from zhike_runtime.errors import (
    ConcurrentUpdate,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from zhike_runtime.ids import new_id
from zhike_runtime.paging import PageTokens
from zhike_runtime.paging import page_size as resolve_page_size
from zhike_runtime.validation import Violations

log = logging.getLogger(__name__)

UnitOfWorkFactory = Callable[[], AbstractAsyncContextManager[NotificationsUnitOfWork]]
Clock = Callable[[], dt.datetime]

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# An offer decision's message is queued under this key prefix and the decision id.
OFFER_DECISION_KEY = "offer-decision:"
# Statuses a notification is announced in (NotificationSent/Delivered/Failed/Suppressed).
ANNOUNCED = frozenset({Status.SENT, Status.DELIVERED, Status.FAILED, Status.SUPPRESSED})
INBOX_PROVIDER = "inbox"  # the in-app inbox is its own provider: written, so delivered at once


def party_lock(party_id: str) -> str:
    return f"notifications:party:{party_id}"


@dataclass(frozen=True)
class DispatchConfig:
    gate_policy: GatePolicy
    calendar: WorkingCalendar
    retry_policies: Mapping[Channel, RetryPolicy]
    # How long an attempt in flight is left to its dispatcher before another takes it up.
    lease: dt.timedelta = dt.timedelta(seconds=60)
    # An offer decided on a profile version whose consents have not reached notifications yet
    # (they come by another road: ProfileChanged, not offers) waits for them this long, looking
    # again every `consent_catch_up_step`, before a consent refusal is taken as final.
    consent_catch_up: dt.timedelta = dt.timedelta(seconds=30)
    consent_catch_up_step: dt.timedelta = dt.timedelta(seconds=1)
    # Identity or the profile could not be asked: the notification is looked at again then.
    directory_retry: dt.timedelta = dt.timedelta(seconds=5)
    sms_signature: str = ""  # 【银行名】, prepended by gateways in China; counted in the length


@dataclass(frozen=True)
class OfferDecision:
    """An outbound offer decision to deliver (offers' OfferDecided)."""

    decision_id: str
    party_id: str
    offer_id: str
    channel: Channel
    template_id: str
    category: Category
    decided_at: dt.datetime
    profile_version: int = 0  # the ProfileChanged.profile_version it was decided on
    offer_valid_until: dt.datetime | None = None  # when the offer closes (None: it does not)


@dataclass(frozen=True)
class SendRequest:
    """A SendNotification call, as received."""

    party_id: str
    channel: Channel | None
    template_id: str
    idempotency_key: str
    category: Category | None
    purpose: Purpose | None
    values: Mapping[str, str]


@dataclass(frozen=True)
class ConsentChange:
    """A consent decision the profile published (ProfileChanged's ConsentChanged)."""

    party_id: str
    record: ConsentRecord
    changed_at: dt.datetime
    profile_version: int


@dataclass(frozen=True)
class ProfileNews:
    """What notifications takes from a ProfileChanged: its version and its consents."""

    party_id: str
    profile_version: int
    consents: tuple[ConsentChange, ...] = ()


def outcome_event(stored: StoredNotification) -> StatusChanged | None:
    return StatusChanged(stored.notification) if stored.notification.status in ANNOUNCED else None


def _apply(stored: StoredNotification, event: lifecycle.Event) -> tuple[StoredNotification, bool]:
    applied = lifecycle.apply(stored.notification, event)
    return replace(stored, notification=applied.notification), applied.changed


async def _save(
    unit: NotificationsUnitOfWork, before: StoredNotification, after: StoredNotification
) -> None:
    await unit.notifications.save(after, before.notification.version)
    if after.notification.status is not before.notification.status:
        event = outcome_event(after)
        if event is not None:
            unit.record(event)


class Templates:
    """The templates the service knows, by id (compiled when loaded: a bad one never starts)."""

    def __init__(self, templates: Mapping[str, CompiledTemplate]) -> None:
        self._templates = dict(templates)

    def get(self, template_id: str) -> CompiledTemplate | None:
        return self._templates.get(template_id)

    def check(
        self,
        v: Violations,
        field: str,
        template_id: str,
        channel: Channel,
        category: Category,
    ) -> CompiledTemplate | None:
        template = self._templates.get(template_id)
        if template is None:
            v.add(field, f"is not a template of this service: {template_id!r}")
            return None
        draft = template.draft
        if draft.channel is not channel:
            v.add(field, f"is a {draft.channel.value} template, not {channel.value}")
        if draft.category is not category:
            v.add(field, f"is a {draft.category.value} template, not {category.value}")
        return template


# The blind-index purpose of the request digest that idempotency keys are checked against.
REQUEST_DIGEST_PURPOSE = "notifications.request_digest"


def _digest(
    request: SendRequest, category: Category, purpose: Purpose, blind: Callable[[str], str]
) -> str:
    """What tells a retried request from another under the same idempotency key: a keyed hash
    (the blind index), since an unkeyed one of a one-time passcode's six digits, beside the rest
    of the row in clear, gives the sealed code back in seconds."""
    document = {
        "party_id": request.party_id,
        "channel": request.channel.value if request.channel else "",
        "template_id": request.template_id,
        "category": category.value,
        "purpose": purpose.value,
        "values": dict(sorted(request.values.items())),
    }
    canonical = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return blind(canonical)


class Intake:
    """Messages asked for: offers' decisions (and their withdrawals), SendNotification calls, and
    the consents the profile publishes."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        templates: Templates,
        clock: Clock,
        on_new: Callable[[], None] = lambda: None,
        *,
        request_digest: Callable[[str], str],
        decision_lifetime: dt.timedelta | None = None,
        rate_limit: Sequence[RateWindow] = DEFAULT_RATE_LIMIT,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._templates = templates
        self._clock = clock
        self._on_new = on_new
        self._request_digest = request_digest
        self._decision_lifetime = decision_lifetime
        self._rate_limit = tuple(rate_limit)

    async def offer_decided(self, unit: NotificationsUnitOfWork, decision: OfferDecision) -> None:
        """Queues the decision's message once (its id is derived from the decision's); created
        CANCELLED when the decision was already withdrawn (the events crossed)."""
        v = Violations()
        template = self._templates.check(
            v, "template_id", decision.template_id, decision.channel, decision.category
        )
        if template is not None and template.draft.fields:
            # A decision carries no values: refused now (dead-lettered), not queued to fail.
            fields = ", ".join(sorted(template.draft.fields))
            v.add("template_id", f"declares fields an offer decision has no values for: {fields}")
        v.raise_if_any()
        assert template is not None
        notification = Notification(
            notification_id=f"offer-{decision.decision_id}",
            party_id=decision.party_id,
            channel=decision.channel,
            category=decision.category,
            template_id=decision.template_id,
            created_at=decision.decided_at,
            decision_id=decision.decision_id,
            offer_id=decision.offer_id,
        )
        # Under the party's lock, as the withdrawal is taken: with two replicas on the offers
        # consumer, a withdrawal committed between this read and this insert would find nothing
        # to cancel, and the decision would be queued to be sent.
        await unit.lock([party_lock(decision.party_id)])
        withdrawal = await unit.withdrawals.get(decision.decision_id)
        if withdrawal is not None:
            notification = lifecycle.apply(
                notification, lifecycle.Withdrawal(decision.decision_id, withdrawal.at)
            ).notification
        message = Message(
            party_id=decision.party_id,
            channel=decision.channel,
            category=decision.category,
            purpose=message_purpose(decision.category, None),
            template_id=decision.template_id,
            topic=template.draft.topic,
            offer_id=decision.offer_id,
            decision_id=decision.decision_id,
            send_before=self._send_before(decision),
        )
        stored = StoredNotification(
            notification,
            message,
            idempotency_key=f"{OFFER_DECISION_KEY}{decision.decision_id}",
            profile_version=decision.profile_version,
        )
        if await unit.notifications.add(stored) and withdrawal is None:
            unit.after_commit(self._on_new)

    def _send_before(self, decision: OfferDecision) -> dt.datetime | None:
        """When the decision's message may no longer go out: when its offer closes, and at the
        latest `decision_lifetime` after it was made. Withdrawals are kept that long (Retention),
        so a decision arriving later (a dead letter replayed weeks on) may have had its
        withdrawal deleted already: it is cancelled unsent, as past its offer's close."""
        closes = decision.offer_valid_until
        if self._decision_lifetime is None:
            return closes
        latest = decision.decided_at + self._decision_lifetime
        return latest if closes is None else min(closes, latest)

    async def lock_parties(self, unit: NotificationsUnitOfWork, party_ids: Iterable[str]) -> None:
        """The parties' locks taken at once, in one order (a batch of offers' events then never
        waits in a circle with another replica's batch)."""
        await unit.lock([party_lock(party_id) for party_id in party_ids])

    async def offer_withdrawn(
        self, unit: NotificationsUnitOfWork, withdrawal: DecisionWithdrawal
    ) -> None:
        """Cancels every send of the decision not yet handed to a provider, and remembers the
        withdrawal for a decision that has not arrived yet."""
        await unit.lock([party_lock(withdrawal.party_id)])
        await unit.withdrawals.add(withdrawal)
        for stored in await unit.notifications.by_decision(withdrawal.decision_id):
            after, changed = _apply(
                stored, lifecycle.Withdrawal(withdrawal.decision_id, withdrawal.at)
            )
            if changed:
                await _save(unit, stored, after)

    async def profile_changed(self, unit: NotificationsUnitOfWork, news: ProfileNews) -> None:
        """The consents a ProfileChanged carries, and the version they are as of."""
        await self.consent_changes(unit, news.consents)
        await unit.consents.saw_profile(news.party_id, news.profile_version)

    async def preferences_changed(
        self, unit: NotificationsUnitOfWork, preferences: ContactPreferences
    ) -> None:
        """Offers' ContactPreferencesChanged: kept unless a newer version is held. Nothing queued
        changes now; the gates read them when each message is dispatched."""
        await unit.preferences.put(preferences)

    async def redispatch(self, unit: NotificationsUnitOfWork, notification_id: str) -> bool:
        """A RedispatchNotification (a dead letter replayed): the notification, if it failed to
        send, is QUEUED again and dispatched like a new one (every gate run again). A duplicate,
        or a replay of one that is no longer FAILED, changes nothing; False then."""
        found = await unit.notifications.get(notification_id)
        if found is None:
            return False  # pruned meanwhile: nothing to send
        await unit.lock([party_lock(found.notification.party_id)])
        stored = await unit.notifications.get_for_update(notification_id)
        if stored is None:
            return False
        applied = lifecycle.redispatch(stored.notification)
        if not applied.changed:
            log.info("redispatch ignored", extra={"why": applied.ignored})
            return False
        await unit.notifications.save(
            replace(stored, notification=applied.notification, sending=None),
            stored.notification.version,
        )
        await unit.notifications.lease([notification_id], self._clock())
        unit.after_commit(self._on_new)
        return True

    async def consent_changes(
        self, unit: NotificationsUnitOfWork, changes: Sequence[ConsentChange]
    ) -> None:
        entries = [
            ConsentEntry(
                change.party_id,
                change.record,
                change.record.evidence.captured_at if change.record.evidence else change.changed_at,
                change.profile_version,
            )
            for change in changes
        ]
        if entries:
            await unit.consents.put(entries)

    async def send(self, request: SendRequest) -> StoredNotification:
        """SendNotification: validated, then queued once per idempotency key, unless the party
        is over the rate limit (`domain/rate_limit.py`): then ResourceExhausted, with when to
        retry, and nothing stored. A retry of a request taken before (same key, same request)
        gets its first answer whatever the limit, and does not count again."""
        v = Violations()
        _check_party(v, request.party_id)
        if not IDEMPOTENCY_KEY.fullmatch(request.idempotency_key):
            v.add(
                "idempotency_key",
                "is required: 1-128 characters of A-Z, a-z, 0-9, '_', '.', ':', '-'",
            )
        elif request.idempotency_key.startswith(OFFER_DECISION_KEY):
            # Taken by a caller first, the decision's own message would never be queued.
            v.add("idempotency_key", f"must not begin with {OFFER_DECISION_KEY!r}: offers' own")
        if request.channel is None:
            v.add("channel", "is required")
        if request.category is None:
            v.add("category", "is required")
        v.raise_if_any()
        assert request.channel is not None
        assert request.category is not None
        purpose = message_purpose(request.category, request.purpose)
        template = self._templates.check(
            v, "template_id", request.template_id, request.channel, request.category
        )
        v.raise_if_any()
        assert template is not None
        # The values are checked now (every declared field, no other), not when it is sent.
        template.render(
            "zh-CN",
            request.values,
            unsubscribe_url="https://unsubscribe.invalid/check",
        )
        digest = _digest(request, request.category, purpose, self._request_digest)
        async with self._unit_of_work() as unit:
            # First without the party's lock: a retry gets its answer and a party over the limit
            # is refused without queueing behind a flood of its own requests, each holding one
            # of the pool's connections while other parties' passcodes wait. (Until its window
            # moves on, a count only grows: "over" read now stays true.)
            checked = await self._replayed_or_room(unit, request, digest)
            if isinstance(checked, StoredNotification):
                return checked
            # Then under it, one writer per party (the dispatcher's lock): two replicas counting
            # the party's requests at once would each see room for the last one. What another
            # replica stored meanwhile is read now, and the time after it.
            await unit.lock([party_lock(request.party_id)])
            checked = await self._replayed_or_room(unit, request, digest)
            if isinstance(checked, StoredNotification):
                return checked
            now = checked
            stored = StoredNotification(
                Notification(
                    notification_id=new_id(),
                    party_id=request.party_id,
                    channel=request.channel,
                    category=request.category,
                    template_id=request.template_id,
                    created_at=now,
                ),
                Message(
                    party_id=request.party_id,
                    channel=request.channel,
                    category=request.category,
                    purpose=purpose,
                    template_id=request.template_id,
                    topic=template.draft.topic,
                ),
                values=dict(request.values),
                idempotency_key=request.idempotency_key,
                request_digest=digest,
            )
            added = await unit.notifications.add(stored)
            if added:
                await unit.commit()
        if added:
            self._on_new()
            return stored
        # The key was taken meanwhile by a request for another party (under that party's lock).
        async with self._unit_of_work() as unit:
            first = await unit.notifications.by_idempotency_key(request.idempotency_key)
        if first is None:  # the id collided, not the key: cannot happen with UUIDv7 ids
            raise ConcurrentUpdate("notification id taken; try again")
        return _replayed(first, request.idempotency_key, digest)

    async def _replayed_or_room(
        self, unit: NotificationsUnitOfWork, request: SendRequest, digest: str
    ) -> StoredNotification | dt.datetime:
        """A retry of a request taken before: its first answer (not counted again). Else the
        time the party was found to have room under the rate limit; ResourceExhausted when it
        has none (nothing stored or published: the transaction ends unwritten)."""
        first = await unit.notifications.by_idempotency_key(request.idempotency_key)
        if first is not None:
            return _replayed(first, request.idempotency_key, digest)
        now = self._clock()
        requested = await unit.notifications.requested_since(
            request.party_id, now - lookback(self._rate_limit)
        )
        refused = over_limit(self._rate_limit, requested, now)
        if refused is not None:
            raise ResourceExhausted(str(refused.window), refused.retry_after)
        return now


def _replayed(first: StoredNotification, key: str, digest: str) -> StoredNotification:
    """The notification a request under the same idempotency key created, if this request is
    that one again."""
    if first.request_digest != digest:
        raise FailedPrecondition("idempotency_key was used for a different request", key)
    return first


class CannotRender(Exception):
    """A notification's message cannot be rendered (its template gone, or refusing its values):
    no attempt will ever send it."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code  # names what failed, never a value


class Dispatcher:
    """Sends what is due: the gates, then a provider, then the answer (module docstring)."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        templates: Templates,
        directory: PartyDirectory,
        providers: ProviderGateway,
        config: DispatchConfig,
        clock: Clock,
        *,
        unsubscribe_url: Callable[[str], str],
        rng: random.Random | None = None,
        batch_size: int = 64,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._templates = templates
        self._directory = directory
        self._providers = providers
        self._config = config
        self._clock = clock
        self._unsubscribe_url = unsubscribe_url
        self._rng = rng or random.Random()
        self._batch_size = batch_size

    async def dispatch_due(self) -> int:
        """One round: takes up to a batch of due notifications (leased, so other replicas skip
        them) and dispatches them, a party's in order, parties side by side; how many it took.
        A notification failing with an unexpected error is logged and comes back when its lease
        ends; only a round where every one failed raises."""
        now = self._clock()
        async with self._unit_of_work() as unit:
            due = await unit.notifications.due(now, self._batch_size)
            if not due:
                return 0
            await unit.notifications.lease([ident for ident, _ in due], now + self._config.lease)
            await unit.commit()
        by_party: dict[str, list[str]] = {}
        for notification_id, party_id in due:
            by_party.setdefault(party_id, []).append(notification_id)
        outcomes = await asyncio.gather(
            *(self._dispatch_party(party_id, ids) for party_id, ids in by_party.items())
        )
        failed = [failure for party_failures in outcomes for failure in party_failures]
        if failed and len(failed) == len(due):
            # Nothing went: more likely the database or a dependency than the rows. The loop
            # reports it and naps before the next round.
            raise failed[0][1]
        if failed:
            # Each comes back when its lease runs out; the rest of the round went out.
            log.error(
                "notifications failed to dispatch; tried again when their lease ends",
                exc_info=failed[0][1],
                extra={"failed": len(failed), "notification_ids": [i for i, _ in failed[:10]]},
            )
        return len(due)

    async def _dispatch_party(
        self, party_id: str, notification_ids: Sequence[str]
    ) -> list[tuple[str, Exception]]:
        """Dispatches the party's notifications in order; returns those that failed with an
        unexpected error, which do not hold up the ones after them."""
        # The party's contact details are asked once for the round's notifications of the party
        # (a burst of them need not ask identity and the profile each time), and before the
        # party's lock is taken: no network wait while holding it. The in-app inbox needs none.
        contact: PartyContact | None = None
        asked = False
        failed: list[tuple[str, Exception]] = []
        for notification_id in notification_ids:
            try:
                if not asked and await self._needs_contact(notification_id):
                    contact = await self._directory.contact(party_id)
                    asked = True
                await self.dispatch(notification_id, party_id, contact)
            except ConcurrentUpdate:
                # Another replica wrote it first; whatever is left is due again and taken then.
                log.info("notification changed while dispatching; left for the next round")
            except DirectoryUnavailable:
                log.warning("party directory unavailable; the notification is tried again soon")
                await self._again_in(notification_id, self._config.directory_retry)
            except CannotRender as error:
                # This notification fails; the party's others and the round go on.
                await self._fail_unrenderable(notification_id, party_id, error.code)
            except Exception as error:  # noqa: BLE001 - reported by the round, retried at lease end
                # A row this release cannot read, a defect: the party's later messages (a
                # passcode behind a broken offer) must still go out, this round and every other.
                failed.append((notification_id, error))
        return failed

    async def _needs_contact(self, notification_id: str) -> bool:
        # Notification ids of the inbox are not told apart from others by their id: read it.
        async with self._unit_of_work() as unit:
            stored = await unit.notifications.get(notification_id)
        return stored is not None and stored.notification.channel is not Channel.INBOX

    async def _fail_unrenderable(self, notification_id: str, party_id: str, code: str) -> None:
        """FAILED, and parked as a dead letter as any send that stopped: once its template is
        mended, an operator replays it."""
        async with self._unit_of_work() as unit:
            await unit.lock([party_lock(party_id)])
            stored = await unit.notifications.get_for_update(notification_id)
            if stored is None or stored.notification.status not in (Status.QUEUED, Status.DEFERRED):
                return
            attempts = stored.notification.attempts
            after, _ = _apply(
                replace(stored, sending=None),
                lifecycle.Unrenderable(attempts, code, self._clock()),
            )
            await _save(unit, stored, after)
            unit.record(SendingStopped(notification_id, attempts, code))
            await unit.commit()

    async def _again_in(self, notification_id: str, delay: dt.timedelta) -> None:
        """Leaves it to the next round after `delay` (not the whole lease)."""
        async with self._unit_of_work() as unit:
            await unit.notifications.lease([notification_id], self._clock() + delay)
            await unit.commit()

    async def dispatch(
        self, notification_id: str, party_id: str, contact: PartyContact | None
    ) -> None:
        """Runs one notification of `party_id` as far as it goes now, with the party's contact
        details as the directory gave them (None: not known)."""
        planned = await self._decide(notification_id, party_id, contact)
        if planned is None:
            return
        stored, outgoing = planned
        assert stored.sending is not None
        provider = stored.sending.provider
        try:
            # Bounded well inside the attempt's lease: past the lease another replica takes the
            # attempt up, and two calls for one message would be in flight (an adapter's own
            # time-outs apply per phase or per command, so they do not bound the call).
            async with asyncio.timeout(self._config.lease.total_seconds() / 2):
                answer = await self._providers.send(provider, outgoing)
        except TimeoutError:
            # It may have gone out: the same provider again, with the same out-id.
            answer = ProviderAnswer(provider, error=ErrorKind.AMBIGUOUS, code="timeout")
        await self._record_answer(notification_id, stored.sending, answer)

    async def _decide(
        self, notification_id: str, party_id: str, contact: PartyContact | None
    ) -> tuple[StoredNotification, Outgoing] | None:
        """Step 1 under the party's lock: the gates' verdict written, or the attempt recorded
        and the message to send returned."""
        async with self._unit_of_work() as unit:
            await unit.lock([party_lock(party_id)])
            # The time is read once the lock is held: what another replica sent while this one
            # waited is then in the past, where the gates' windows look.
            now = self._clock()
            stored = await unit.notifications.get_for_update(notification_id)
            if stored is None or stored.notification.party_id != party_id:
                return None
            if stored.sending is not None:
                if stored.sending.started_at + self._config.lease > now:
                    # Another replica is sending it now: its round took it up when this round's
                    # lease on it ran out. Not a crash to take over.
                    return None
                # Taken up after a crash or a lost lease: the same provider, the same out-id,
                # and from now on that provider only (the first call may have reached it).
                outgoing = self._outgoing(stored, contact, stored.language)
                if outgoing is None:
                    return None
                sending = replace(stored.sending, started_at=now)
                after = replace(stored, sending=sending, pinned_provider=sending.provider)
                await unit.notifications.save(after, stored.notification.version)
                await unit.notifications.lease([notification_id], now + self._config.lease)
                await unit.commit()
                return after, outgoing
            due = stored.due_at()
            if due is None or due > now:
                return None
            closed = stored.message.send_before
            if closed is not None and now >= closed:
                # The offer closed: offers withdraws the decision (expired) on its next round,
                # up to half a minute later; a send falling due meanwhile would go out.
                after, _ = _apply(stored, lifecycle.Withdrawal(stored.message.decision_id, closed))
                await _save(unit, stored, after)
                await unit.commit()
                return None
            verdict, consents_as_of = await self._gates(unit, stored, contact, now)
            version = stored.notification.version
            if self._consents_behind(stored, verdict, consents_as_of, now):
                until = now + self._config.consent_catch_up_step
                after, _ = _apply(stored, lifecycle.Deferred(until, version))
                await _save(unit, stored, after)
                await unit.notifications.lease([notification_id], now)
                await unit.commit()
                return None
            if isinstance(verdict, gates.Suppress):
                after, _ = _apply(stored, lifecycle.Suppressed(verdict.suppression, version))
                await _save(unit, stored, after)
                await unit.commit()
                return None
            if isinstance(verdict, gates.Defer):
                after, _ = _apply(stored, lifecycle.Deferred(verdict.until, version))
                await _save(unit, stored, after)
                # Released: due again at its new time, even one sooner than the lease's end.
                await unit.notifications.lease([notification_id], now)
                await unit.commit()
                return None
            if stored.notification.channel is Channel.INBOX:
                await self._deliver_to_inbox(unit, stored, verdict.language, now)
                await unit.commit()
                return None
            outgoing = self._outgoing(stored, contact, verdict.language)
            if outgoing is None:
                suppression = Suppression(
                    SuppressionReason.NO_ADDRESS,
                    f"the party has no {stored.notification.channel.value} address",
                )
                after, _ = _apply(stored, lifecycle.Suppressed(suppression, version))
                await _save(unit, stored, after)
                await unit.commit()
                return None
            provider = self._provider_for(stored)
            if provider is None:
                return None
            sending = Sending(stored.notification.next_attempt, provider, now)
            after = replace(stored, sending=sending, language=verdict.language)
            await unit.notifications.save(after, version)
            await unit.notifications.lease([notification_id], now + self._config.lease)
            await unit.commit()
            return after, outgoing

    def _consents_behind(
        self,
        stored: StoredNotification,
        verdict: gates.Verdict,
        consents_as_of: int,
        now: dt.datetime,
    ) -> bool:
        """A consent refusal of an offer decided on a newer profile than the consents the gates
        read (`consents_as_of`), still inside the catch-up time: the consent that allowed the
        decision may be on its way (offers and notifications read the profile's events each at
        its own pace)."""
        if not isinstance(verdict, gates.Suppress) or verdict.gate is not gates.Gate.CONSENT:
            return False
        if now - stored.notification.created_at > self._config.consent_catch_up:
            return False
        return stored.profile_version > consents_as_of

    async def _gates(
        self,
        unit: NotificationsUnitOfWork,
        stored: StoredNotification,
        contact: PartyContact | None,
        now: dt.datetime,
    ) -> tuple[gates.Verdict, int]:
        """The gates' verdict, and the profile version the consents it read are as of."""
        party_id = stored.notification.party_id
        held = await unit.consents.held(party_id)
        consents = tuple(entry.record for entry in held.entries)
        # The customer's switches, read in the same unit of work as his consents (offers
        # announces them; the directory may add its own).
        switches = await unit.preferences.get(party_id)
        do_not_contact = bool(switches and switches.do_not_contact)
        opted_out = switches.opted_out_channels if switches else frozenset[Channel]()
        if contact is not None:
            do_not_contact = do_not_contact or contact.do_not_contact
            opted_out = opted_out | contact.opted_out_channels
        snapshot = PartySnapshot(
            party_id=party_id,
            consents=consents,
            do_not_contact=do_not_contact,
            opted_out_channels=opted_out,
            language=contact.language if contact else "",
            time_zone=contact.time_zone if contact else "",
            quiet_hours=contact.quiet_hours if contact else None,
        )
        since = now - dt.timedelta(days=self._config.gate_policy.history_days)
        history = await unit.notifications.history(party_id, since)
        verdict = gates.evaluate(
            stored.message,
            snapshot,
            history,
            now,
            self._config.gate_policy,
            self._config.calendar,
        )
        return verdict, held.profile_version

    def _provider_for(self, stored: StoredNotification) -> str | None:
        configured = self._providers.providers(stored.notification.channel)
        if not configured:
            log.error(
                "no provider configured for a channel",
                extra={"channel": stored.notification.channel.value},
            )
            return None
        pinned = stored.pinned_provider
        if pinned:
            if pinned in configured:
                return pinned
            # It may hold the message: another provider could send it twice. Left as a channel
            # without providers is, until the configuration names it again.
            log.error(
                "the provider that may hold a message is no longer configured; not sent elsewhere",
                extra={"provider": pinned},
            )
            return None
        retry = stored.notification.retry
        if retry is not None and retry.provider in configured:
            return retry.provider
        return configured[0]

    def _render(self, stored: StoredNotification, language: str) -> Rendered:
        """The message; `CannotRender` when its template is gone or refuses its values."""
        template_id = stored.notification.template_id
        template = self._templates.get(template_id)
        if template is None:
            log.error(
                "a notification's template is not configured", extra={"template": template_id}
            )
            raise CannotRender("template_unknown")
        unsubscribe = ""
        if stored.notification.category is Category.MARKETING:
            unsubscribe = self._unsubscribe_url(stored.notification.notification_id)
        try:
            return template.render(
                language,
                stored.values,
                unsubscribe_url=unsubscribe if stored.notification.channel is Channel.EMAIL else "",
                sms_signature=self._config.sms_signature,
            )
        except (InvalidArgument, RenderFailed) as error:
            # Both name fields, parts and lines, never a value: safe to log.
            log.error(
                "a notification's template cannot render it",
                extra={"template": template_id, "why": str(error)},
            )
            code = "template_values" if isinstance(error, InvalidArgument) else "template_failed"
            raise CannotRender(code) from None

    def _outgoing(
        self, stored: StoredNotification, contact: PartyContact | None, language: str
    ) -> Outgoing | None:
        channel = stored.notification.channel
        address = contact.address(channel) if contact else ""
        if not address:
            return None
        rendered = self._render(stored, language)
        marketing_email = (
            channel is Channel.EMAIL and stored.notification.category is Category.MARKETING
        )
        return Outgoing(
            out_id=stored.notification.notification_id,
            channel=channel,
            to=address,
            body=rendered.body,
            subject=rendered.subject,
            unsubscribe_url=(
                self._unsubscribe_url(stored.notification.notification_id)
                if marketing_email
                else ""
            ),
        )

    async def _deliver_to_inbox(
        self,
        unit: NotificationsUnitOfWork,
        stored: StoredNotification,
        language: str,
        now: dt.datetime,
    ) -> None:
        rendered = self._render(stored, language)
        notification = stored.notification
        await unit.inbox.add(
            InboxEntry(
                notification.notification_id,
                notification.party_id,
                notification.template_id,
                rendered.language,
                rendered.subject,
                rendered.body,
                now,
            )
        )
        after = replace(stored, language=rendered.language)
        for event in (
            lifecycle.SendResult(
                notification.next_attempt,
                INBOX_PROVIDER,
                lifecycle.SendOutcome.ACCEPTED,
                now,
                provider_message_id=notification.notification_id,
            ),
            lifecycle.Receipt(lifecycle.ReceiptKind.DELIVERED, now),
        ):
            after, _ = _apply(after, event)
        await _save(unit, stored, after)
        # The inbox skips SENT on the way to DELIVERED: offers and the profile hear of both.
        unit.record(StatusChanged(replace(after.notification, status=Status.SENT)))

    async def _record_answer(
        self, notification_id: str, sending: Sending, answer: ProviderAnswer
    ) -> None:
        now = self._clock()
        async with self._unit_of_work() as unit:
            stored = await unit.notifications.get_for_update(notification_id)
            if stored is None or stored.sending != sending:
                return  # someone else took the attempt up meanwhile and records it
            policy = self._config.retry_policies[stored.notification.channel]
            if answer.accepted:
                event: lifecycle.Event = lifecycle.SendResult(
                    sending.attempt,
                    sending.provider,
                    lifecycle.SendOutcome.ACCEPTED,
                    now,
                    provider_message_id=answer.provider_message_id,
                )
                after, _ = _apply(replace(stored, sending=None), event)
            else:
                assert answer.error is not None
                # An attempt left without an answer pins the message to its provider for good.
                pinned_provider = (
                    sending.provider
                    if answer.error is ErrorKind.AMBIGUOUS
                    else stored.pinned_provider
                )
                step = after_failure(
                    sending.attempt,
                    sending.provider,
                    answer.error,
                    now,
                    policy,
                    self._rng,
                    answer.retry_after,
                    pinned=pinned_provider == sending.provider,
                )
                permanent = isinstance(step, Stop) and step.reason is GiveUpReason.PERMANENT_ERROR
                outcome = (
                    lifecycle.SendOutcome.PERMANENT_ERROR
                    if permanent
                    else lifecycle.SendOutcome.TRANSIENT_ERROR
                )
                after, _ = _apply(
                    replace(stored, sending=None, pinned_provider=pinned_provider),
                    lifecycle.SendResult(
                        sending.attempt, sending.provider, outcome, now, error=answer.code
                    ),
                )
                if isinstance(step, Stop):
                    if not permanent:
                        after, _ = _apply(
                            after, lifecycle.RetriesExhausted(step.attempts, answer.code, now)
                        )
                else:
                    after, _ = _apply(
                        after, lifecycle.RetryScheduled(step.attempt, step.at, step.provider)
                    )
            await _save(unit, stored, after)
            gave_up = after.notification.gave_up
            if gave_up is not None and stored.notification.gave_up is None:
                # Parked in the same transaction that records FAILED: an operator lists it and,
                # once the provider is fixed, replays it (Intake.redispatch).
                unit.record(
                    SendingStopped(notification_id, after.notification.attempts, gave_up.error)
                )
            # Released: a failover planned for now goes at once, not when the lease ends.
            await unit.notifications.lease([notification_id], now)
            await unit.commit()


class WebhookReplayed(Exception):
    """A webhook delivery id seen before: the request is a replay and changes nothing."""


class Deliveries:
    """What providers and customers send back: receipts, SMS replies, unsubscribe links."""

    def __init__(self, unit_of_work: UnitOfWorkFactory, clock: Clock) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock

    async def record_receipt(
        self,
        delivery_id: str,
        provider: str,
        provider_message_id: str,
        kind: lifecycle.ReceiptKind,
        at: dt.datetime,
        error: str,
    ) -> bool:
        """A provider's receipt, with the webhook's delivery id recorded in the same
        transaction (a replay raises `WebhookReplayed`). False when no notification was
        accepted under that id yet — a receipt may overtake our own record of the send — and
        then the delivery id is not used up, so the provider's retry finds it."""
        async with self._unit_of_work() as unit:
            if not await unit.webhook_deliveries.first_time(provider, delivery_id, self._clock()):
                raise WebhookReplayed
            found = await unit.notifications.by_provider_message(provider, provider_message_id)
            if found is None:
                return False
            stored = await unit.notifications.get_for_update(found.notification.notification_id)
            if stored is None:
                return False
            receipt = lifecycle.Receipt(kind, at, error, provider_message_id)
            after, changed = _apply(stored, receipt)
            if changed:
                await _save(unit, stored, after)
            await unit.commit()
        return True

    async def record_reply(
        self, delivery_id: str, provider: str, in_reply_to: str, text: str, at: dt.datetime
    ) -> ReplyAction | None:
        """An SMS reply to a message we sent; None when no message has that provider id."""
        reply = parse_reply(text)
        async with self._unit_of_work() as unit:
            if not await unit.webhook_deliveries.first_time(provider, delivery_id, self._clock()):
                raise WebhookReplayed
            found = await unit.notifications.by_provider_message(provider, in_reply_to)
            if found is None:
                return None
            if reply.action is ReplyAction.UNSUBSCRIBE:
                assert reply.channel is not None
                assert reply.purpose is not None
                await self._withdraw(
                    unit,
                    found.notification,
                    reply.channel,
                    reply.purpose,
                    "sms reply",
                    _reply_time(found.notification, at, self._clock()),
                )
            await unit.commit()
        return reply.action

    async def unsubscribe(self, notification_id: str, at: dt.datetime) -> bool:
        """An e-mail's unsubscribe link: consent to marketing e-mail withdrawn."""
        async with self._unit_of_work() as unit:
            stored = await unit.notifications.get(notification_id)
            if stored is None:
                return False
            await self._withdraw(
                unit,
                stored.notification,
                stored.notification.channel,
                Purpose.MARKETING,
                f"{stored.notification.channel.value} unsubscribe link",
                at,
            )
            await unit.commit()
        return True

    async def _withdraw(
        self,
        unit: NotificationsUnitOfWork,
        notification: Notification,
        channel: Channel,
        purpose: Purpose,
        where: str,
        at: dt.datetime,
    ) -> None:
        evidence = ConsentEvidence(where, at, "")
        record = ConsentRecord(channel, purpose, given=False, evidence=evidence)
        taken = await unit.consents.put([ConsentEntry(notification.party_id, record, at, 0)])
        if taken:
            unit.record(
                ConsentWithdrawnByCustomer(
                    notification.party_id, channel, purpose, notification.notification_id, evidence
                )
            )


def _reply_time(answered: Notification, at: dt.datetime, now: dt.datetime) -> dt.datetime:
    """When the customer replied, as the provider says, if it can be: not before the message
    he answers was sent, nor after now. Outside that, it is the provider's clock, and ours is
    taken: a withdrawal stamped hours early would lose to a consent captured meanwhile (the
    customer who answered TD would go on getting marketing), one stamped ahead would overrule
    his next consent. Never before the send, though: this replica's clock may be behind the one
    that recorded it."""
    # A reply names a provider's message id, which only an accepted message has.
    sent = answered.accepted.at if answered.accepted is not None else answered.created_at
    return at if sent <= at <= now else max(now, sent)


@dataclass(frozen=True)
class NotificationPage:
    notifications: tuple[Notification, ...]
    next_page_token: str


@dataclass(frozen=True)
class InboxPage:
    messages: tuple[InboxEntry, ...]
    next_page_token: str
    unread_count: int


def _position(
    v: Violations, page_tokens: PageTokens, query: str, token: str
) -> tuple[dt.datetime, str] | None:
    position = page_tokens.read(v, "page_token", query, token)
    if position is None:
        return None
    try:
        at, last = position
        return dt.datetime.fromisoformat(at), last
    except ValueError:
        v.add("page_token", "is not a page token this service issued")
        return None


class Queries:
    """Reading notifications and the inbox; marking inbox messages read."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        clock: Clock,
        *,
        page_tokens: PageTokens,
        max_page_size: int,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._page_tokens = page_tokens
        self._max_page_size = max_page_size

    async def get(self, notification_id: str) -> Notification:
        v = Violations()
        # Ids are UUIDs or "offer-<decision id>": letters, digits, '-' and '_' (a NUL byte
        # would reach PostgreSQL, which refuses it in text, as INTERNAL).
        v.token("notification_id", notification_id, max_length=128)
        v.raise_if_any()
        async with self._unit_of_work() as unit:
            stored = await unit.notifications.get(notification_id)
        if stored is None:
            raise NotFound("notification", notification_id)
        return stored.notification

    async def of_party(self, party_id: str, page_size: int, page_token: str) -> NotificationPage:
        v = Violations()
        _check_party(v, party_id)
        # The contract refuses a size above the maximum (ListNotificationsRequest.page_size).
        size = resolve_page_size(
            v, "page_size", page_size, maximum=self._max_page_size, refuse_above=True
        )
        query = f"notifications|{party_id}"
        before = _position(v, self._page_tokens, query, page_token)
        v.raise_if_any()
        async with self._unit_of_work() as unit:
            found = await unit.notifications.of_party(party_id, before, size + 1)
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = self._page_tokens.issue(
                query, [last.created_at.isoformat(), last.notification_id]
            )
        return NotificationPage(tuple(found[:size]), token)

    async def inbox(
        self, party_id: str, page_size: int, page_token: str, unread_only: bool
    ) -> InboxPage:
        v = Violations()
        _check_party(v, party_id)
        size = resolve_page_size(v, "page_size", page_size, maximum=self._max_page_size)
        query = f"inbox|{party_id}|{unread_only}"
        before = _position(v, self._page_tokens, query, page_token)
        v.raise_if_any()
        async with self._unit_of_work() as unit:
            found = await unit.inbox.page(party_id, before, size + 1, unread_only)
            unread = await unit.inbox.unread_count(party_id)
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = self._page_tokens.issue(
                query, [last.created_at.isoformat(), last.notification_id]
            )
        return InboxPage(tuple(found[:size]), token, unread)

    async def mark_read(self, party_id: str, notification_ids: Sequence[str]) -> int:
        v = Violations()
        _check_party(v, party_id)
        if not notification_ids:
            v.add("notification_ids", "name at least one message")
        if len(notification_ids) > self._max_page_size:
            v.add("notification_ids", f"at most {self._max_page_size} at a time")
        for index, ident in enumerate(notification_ids):
            v.token(f"notification_ids[{index}]", ident, max_length=128)
        v.raise_if_any()
        wanted = list(dict.fromkeys(notification_ids))
        async with self._unit_of_work() as unit:
            known = await unit.inbox.known(party_id, wanted)
            missing = [ident for ident in wanted if ident not in known]
            if missing:
                # The same answer for another party's message as for none at all.
                raise NotFound("inbox message", missing[0])
            marked = await unit.inbox.mark_read(party_id, wanted, self._clock())
            await unit.commit()
        return marked


def _check_party(v: Violations, party_id: str) -> None:
    v.uuid("party_id", party_id)


class Retention:
    """Deletes what has outlived its keeping: finished notifications (send records, kept at
    least five months: settings), inbox messages, decision withdrawals and webhook delivery ids.

    A withdrawal is kept `withdrawal_retention` from when it was made; Intake sends no decision
    older than that (`decision_lifetime`, the same period), so a decision whose withdrawal is
    gone is never sent."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        clock: Clock,
        *,
        retention_days: int,
        inbox_message_retention_days: int,
        withdrawal_retention: dt.timedelta,
        webhook_replay_days: int = 2,
        chunk: int = 5000,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._retention = dt.timedelta(days=retention_days)
        self._inbox_retention = dt.timedelta(days=inbox_message_retention_days)
        self._withdrawal_retention = withdrawal_retention
        self._replay = dt.timedelta(days=webhook_replay_days)
        self._chunk = chunk

    async def prune(self) -> int:
        """Deletes a chunk of each kind per transaction until none is left; how many in all."""
        now = self._clock()
        total = 0
        while True:
            async with self._unit_of_work() as unit:
                deleted = [
                    await unit.notifications.prune(now - self._retention, self._chunk),
                    await unit.inbox.prune(now - self._inbox_retention, self._chunk),
                    await unit.withdrawals.prune(now - self._withdrawal_retention, self._chunk),
                    await unit.webhook_deliveries.prune(now - self._replay, self._chunk),
                ]
                await unit.commit()
            total += sum(deleted)
            if max(deleted) < self._chunk:
                return total
