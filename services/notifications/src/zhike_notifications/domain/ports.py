"""What the notifications use cases need from storage and from the rest of the bank (storage
and transport implement these Protocols; tests of the use cases may implement them in memory).

A notification is stored with everything needed to send it again after a crash: the gates'
view of the message (`Message`), the template values (personal data: storage keeps them
encrypted), and, while an attempt is in flight, which provider it went to (`Sending`), so that a
dispatcher that takes over after a crash asks the same provider again with the same out-id (it
deduplicates on it) instead of failing over to another, which would send a second message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from zhike_notifications.domain.gates import ConsentEvidence, ConsentRecord, SentMessage
from zhike_notifications.domain.model import Channel, Message, Notification, Purpose
from zhike_notifications.domain.quiet_hours import QuietHours
from zhike_notifications.domain.retry import ErrorKind


@dataclass(frozen=True)
class Sending:
    """An attempt handed to a provider whose result is not yet recorded."""

    attempt: int
    provider: str
    started_at: dt.datetime


@dataclass(frozen=True)
class StoredNotification:
    notification: Notification
    message: Message
    values: Mapping[str, str] = field(default_factory=dict, repr=False)
    idempotency_key: str = ""
    # A digest of the request that created it (SendNotification): the same key with another
    # request is refused.
    request_digest: str = ""
    sending: Sending | None = None
    # The provider that may hold the message already ("": none): an attempt there went
    # unanswered (a time-out, a crash). Every later attempt, a redispatch's too, goes to it with
    # the same out-id, and none to another provider, which would send a second message.
    pinned_provider: str = ""
    language: str = ""  # the language it was rendered in, once it was
    # An offer's: the ProfileChanged.profile_version its decision was made on. The consents
    # notifications holds may be older than that for a moment (they come by another road).
    profile_version: int = 0

    def due_at(self) -> dt.datetime | None:
        """When the dispatcher should next look at it: the notification's due time, or its
        offer's close if that is sooner (a send deferred past the close is cancelled then)."""
        due = self.notification.due_at()
        closes = self.message.send_before
        if due is None or closes is None:
            return due
        return min(due, closes)


@dataclass(frozen=True)
class ConsentEntry:
    """A consent decision as notifications keeps it, ordered by when the customer decided
    (`decided_at`: the evidence's time, else the change's) and then by the profile version that
    carried it (0 for a decision notifications took itself: a "TD" reply, an unsubscribe link):
    a late or repeated ProfileChanged never overwrites a newer decision."""

    party_id: str
    record: ConsentRecord
    decided_at: dt.datetime
    profile_version: int = 0


@dataclass(frozen=True)
class HeldConsents:
    """The party's consent decisions and the highest profile version applied for him (0: none),
    read together: a dispatch that finds no consent can tell "refused" from "not here yet"
    only if both come from the same moment."""

    entries: tuple[ConsentEntry, ...]
    profile_version: int


@dataclass(frozen=True)
class ContactPreferences:
    """The customer's own switches as offers keeps them (its ContactPreferencesChanged):
    do-not-contact (no marketing) and the outbound channels he opted out of (nothing but
    transactional messages there). `version` is offers' count of his changes: a late or
    repeated event, of a lower or the same version, never overwrites the one held."""

    party_id: str
    do_not_contact: bool
    opted_out_channels: frozenset[Channel]
    version: int
    changed_at: dt.datetime


@dataclass(frozen=True)
class InboxEntry:
    notification_id: str
    party_id: str
    template_id: str
    language: str
    subject: str
    body: str
    created_at: dt.datetime
    read_at: dt.datetime | None = None


@dataclass(frozen=True)
class DecisionWithdrawal:
    """An offer decision withdrawn: its notifications are cancelled, and one that arrives later
    (OfferDecided after OfferWithdrawn) is created cancelled."""

    decision_id: str
    party_id: str
    at: dt.datetime


class NotificationStore(Protocol):
    async def add(self, stored: StoredNotification) -> bool:
        """Inserts it; False (and nothing written) when its id or its idempotency key is taken."""
        ...

    async def get(self, notification_id: str) -> StoredNotification | None: ...

    async def get_for_update(self, notification_id: str) -> StoredNotification | None:
        """Read for a write in this transaction (PostgreSQL: the row is locked)."""
        ...

    async def by_idempotency_key(self, key: str) -> StoredNotification | None: ...

    async def by_decision(self, decision_id: str) -> list[StoredNotification]: ...

    async def by_provider_message(
        self, provider: str, provider_message_id: str
    ) -> StoredNotification | None:
        """The notification a provider accepted under this id (receipts name it)."""
        ...

    async def save(self, stored: StoredNotification, expected_version: int) -> None:
        """Writes it over the row at `expected_version`; `ConcurrentUpdate` when the row moved
        on (another replica wrote first)."""
        ...

    async def due(
        self, now: dt.datetime, limit: int, exclude: Iterable[str] = ()
    ) -> list[tuple[str, str]]:
        """(notification id, party id) of up to `limit` notifications due by `now` — QUEUED or
        DEFERRED with their due time passed, or with an attempt in flight whose lease ran out —
        oldest first."""
        ...

    async def lease(self, notification_ids: Sequence[str], until: dt.datetime) -> None:
        """Nobody else looks at these before `until` (the dispatcher holding them works)."""
        ...

    async def history(self, party_id: str, since: dt.datetime) -> list[SentMessage]:
        """What the party was sent since `since`: every notification handed to a provider
        (SENT, DELIVERED, or with an attempt in flight), any channel."""
        ...

    async def of_party(
        self, party_id: str, before: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Notification]:
        """Newest first; `before`: (created at, id) of the previous page's last."""
        ...

    async def requested_since(self, party_id: str, since: dt.datetime) -> list[dt.datetime]:
        """When each SendNotification request stored for the party after `since` was made
        (whatever its status now; offers' decisions are not requests), oldest first."""
        ...

    async def prune(self, before: dt.datetime, limit: int) -> int:
        """Deletes up to `limit` notifications created before `before` that are finished
        (nothing more will be sent); how many it deleted."""
        ...


class ConsentStore(Protocol):
    async def held(self, party_id: str) -> HeldConsents:
        """The party's consents by (channel, purpose) and the profile version they are as of,
        in one read (one snapshot: a ProfileChanged applied meanwhile is in both or neither)."""
        ...

    async def put(self, entries: Sequence[ConsentEntry]) -> int:
        """Keeps each entry unless its (party, channel, purpose) holds a newer decision
        (`ConsentEntry`'s order); how many it took."""
        ...

    async def saw_profile(self, party_id: str, profile_version: int) -> None:
        """Raises the party's applied profile version to `profile_version` if that is higher."""
        ...


class PreferenceStore(Protocol):
    async def get(self, party_id: str) -> ContactPreferences | None:
        """None: offers never announced a change (the defaults: contact allowed)."""
        ...

    async def put(self, preferences: ContactPreferences) -> bool:
        """Keeps them unless the party's held version is the same or higher; whether it did."""
        ...


class InboxStore(Protocol):
    async def add(self, entry: InboxEntry) -> None: ...

    async def page(
        self,
        party_id: str,
        before: tuple[dt.datetime, str] | None,
        limit: int,
        unread_only: bool,
    ) -> list[InboxEntry]:
        """Newest first; `before`: (created at, id) of the previous page's last."""
        ...

    async def unread_count(self, party_id: str) -> int: ...

    async def known(self, party_id: str, notification_ids: Sequence[str]) -> set[str]:
        """Which of these ids are in the party's inbox."""
        ...

    async def mark_read(
        self, party_id: str, notification_ids: Sequence[str], at: dt.datetime
    ) -> int:
        """Marks the unread ones read at `at`; how many it marked."""
        ...

    async def prune(self, before: dt.datetime, limit: int) -> int:
        """Deletes up to `limit` messages created before `before`; how many it deleted."""
        ...


class WithdrawalStore(Protocol):
    async def add(self, withdrawal: DecisionWithdrawal) -> bool:
        """False when the decision was already withdrawn."""
        ...

    async def get(self, decision_id: str) -> DecisionWithdrawal | None: ...

    async def prune(self, before: dt.datetime, limit: int) -> int:
        """Deletes up to `limit` withdrawals made before `before`; how many it deleted."""
        ...


class WebhookDeliveryStore(Protocol):
    async def first_time(self, provider: str, delivery_id: str, at: dt.datetime) -> bool:
        """Records a provider's webhook delivery id; False when that provider's id was seen
        before (a replay). Ids are the provider's own: another provider may use the same."""
        ...

    async def prune(self, before: dt.datetime, limit: int) -> int: ...


@dataclass(frozen=True)
class StatusChanged:
    """A notification reached SENT, DELIVERED, FAILED or SUPPRESSED: published."""

    notification: Notification


@dataclass(frozen=True)
class ConsentWithdrawnByCustomer:
    """The customer withdrew consent through a message (an SMS reply, an unsubscribe link)."""

    party_id: str
    channel: Channel
    purpose: Purpose
    notification_id: str
    evidence: ConsentEvidence


@dataclass(frozen=True)
class SendingStopped:
    """Sending stopped with no provider accepting the message (a permanent error, or retries
    exhausted): parked on the dead-letter stream, so that an operator who fixed the provider
    account re-dispatches it by replaying the letter (`zhike dlq replay`)."""

    notification_id: str
    attempts: int
    error: str  # the provider's error code, never the message or the address


OutboundEvent = StatusChanged | ConsentWithdrawnByCustomer | SendingStopped


class NotificationsUnitOfWork(Protocol):
    """One transaction over the notifications' state and outbox."""

    @property
    def notifications(self) -> NotificationStore: ...
    @property
    def consents(self) -> ConsentStore: ...
    @property
    def preferences(self) -> PreferenceStore: ...
    @property
    def inbox(self) -> InboxStore: ...
    @property
    def withdrawals(self) -> WithdrawalStore: ...
    @property
    def webhook_deliveries(self) -> WebhookDeliveryStore: ...
    async def lock(self, names: Iterable[str]) -> None:
        """Named locks held until the transaction ends (one writer per party at a time)."""
        ...

    def record(self, event: OutboundEvent) -> None:
        """An event to publish if, and when, the transaction commits."""
        ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Called once the transaction has committed (not if it rolls back)."""
        ...

    async def commit(self) -> None: ...


# --- the rest of the bank ----------------------------------------------------------------


@dataclass(frozen=True)
class PartyContact:
    """What notifications asks of identity and the profile when it sends: where to reach the
    party, and how he wants to be reached. Addresses are personal data: never logged."""

    party_id: str
    phone: str = field(default="", repr=False)  # E.164, the golden record's most recent
    email: str = field(default="", repr=False)
    language: str = ""  # BCP 47; "": not known
    time_zone: str = ""  # IANA; "": not known
    quiet_hours: QuietHours | None = None  # None: not known (the policy's default)
    # The profile's preferences carry neither: offers' ContactPreferencesChanged does
    # (`ContactPreferences`, kept by notifications); the gates take both.
    opted_out_channels: frozenset[Channel] = frozenset()
    do_not_contact: bool = False

    def address(self, channel: Channel) -> str:
        """The address on `channel` ("" when the party has none). Push goes to the party's
        devices through the push provider, which knows them by the party id."""
        match channel:
            case Channel.SMS:
                return self.phone
            case Channel.EMAIL:
                return self.email
            case Channel.PUSH:
                return self.party_id
            case Channel.INBOX:
                return self.party_id


class DirectoryUnavailable(Exception):
    """Identity or the profile could not be asked now: the send waits and tries again."""


class PartyDirectory(Protocol):
    async def contact(self, party_id: str) -> PartyContact | None:
        """The party's contact details and preferences; None when identity does not know the
        party. Raises `DirectoryUnavailable` when it cannot be asked now."""
        ...


# --- providers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One rendered message for one recipient, as the dispatcher hands it to a provider."""

    out_id: str  # the notification id: the same for every attempt, the provider dedups on it
    channel: Channel
    to: str = field(repr=False)
    body: str = field(repr=False)
    subject: str = field(default="", repr=False)
    unsubscribe_url: str = field(default="", repr=False)


@dataclass(frozen=True)
class ProviderAnswer:
    """What a provider answered: accepted (with its message id), or an error of a kind."""

    provider: str
    provider_message_id: str = ""
    error: ErrorKind | None = None  # None: accepted
    code: str = ""  # the error's code ("http_503", "smtp_550", "timeout"): no personal data
    retry_after: dt.timedelta | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


class ProviderGateway(Protocol):
    def providers(self, channel: Channel) -> tuple[str, ...]:
        """The channel's providers, in failover order (empty: the channel is not configured)."""
        ...

    async def send(self, provider: str, message: Outgoing) -> ProviderAnswer:
        """Hands the message to the named provider; errors come back as answers, not raised."""
        ...
