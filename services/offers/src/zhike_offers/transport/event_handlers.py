"""Events → offers use cases, applied inside the consumer's unit of work (with its inbox row).

Two consumers, each with its table of handlers:
- `offers-profile` on ZHIKE_PROFILE: the profile's ProfileChanged feeds offers' projection of
  the party's facts, and re-decides the party's outbound offers when a fact they read changed.
  The new events of a fetch are applied as one batch (one transaction, each party re-decided
  once); a malformed one is dead-lettered with the field named.
- `offers-notifications` on ZHIKE_NOTIFICATIONS: NotificationSent and NotificationDelivered
  become the message's contact (`NotificationReactions`: one per notification id, whichever
  comes first). Only their two subjects are consumed: a failed or suppressed message adds no
  contact, and ConsentWithdrawn reaches offers as the profile's ProfileChanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from zhike.notifications.v1 import events_pb2 as notification_events
from zhike.profile.v1 import events_pb2 as profile_events
from zhike_offers.domain.ports import OffersUnitOfWork
from zhike_offers.domain.service import NotificationReactions, ProfileReactions
from zhike_offers.storage.repository import SqlOffersUnitOfWork
from zhike_offers.transport.event_codec import (
    NOTIFICATION_DELIVERED_SUBJECT,
    NOTIFICATION_SENT_SUBJECT,
    message_sent,
    profile_change,
)
from zhike_runtime.events.consumer import (
    ConsumerSpec,
    EventContext,
    EventHandler,
    ReceivedEvent,
    unit_of,
)
from zhike_runtime.unit_of_work import UnitOfWork

PROFILE_STREAM = "ZHIKE_PROFILE"
PROFILE_SUBJECTS = ("zhike.profile.v1.>",)
PROFILE_DURABLE = "offers-profile"
NOTIFICATIONS_STREAM = "ZHIKE_NOTIFICATIONS"
NOTIFICATIONS_SUBJECTS = (NOTIFICATION_SENT_SUBJECT, NOTIFICATION_DELIVERED_SUBJECT)
NOTIFICATIONS_DURABLE = "offers-notifications"


def _unit(context: EventContext) -> OffersUnitOfWork:
    return unit_of(context.unit, SqlOffersUnitOfWork)


class ProfileEventHandlers:
    def __init__(self, reactions: ProfileReactions) -> None:
        self._reactions = reactions

    async def profile_changed(
        self,
        _session: AsyncSession,
        message: profile_events.ProfileChanged,
        context: EventContext,
    ) -> None:
        await self._reactions.apply(_unit(context), profile_change(message))

    async def batch(self, unit: UnitOfWork, received: Sequence[ReceivedEvent]) -> None:
        """A fetch's new events in one transaction: the projection at once, each party decided
        again once. A malformed one fails the batch: its events then go one by one, and that one
        alone is dead-lettered."""
        offers_unit = unit_of(unit, SqlOffersUnitOfWork)
        changes = [
            profile_change(cast(profile_events.ProfileChanged, item.message)) for item in received
        ]
        await self._reactions.apply_batch(offers_unit, changes)


def profile_consumer(
    reactions: ProfileReactions, unit_of_work: Callable[[], SqlOffersUnitOfWork]
) -> ConsumerSpec:
    handlers = ProfileEventHandlers(reactions)
    return ConsumerSpec(
        durable=PROFILE_DURABLE,
        stream=PROFILE_STREAM,
        filter_subjects=PROFILE_SUBJECTS,
        handlers=(EventHandler(profile_events.ProfileChanged, handlers.profile_changed),),
        unit_of_work=unit_of_work,
        batch_handler=handlers.batch,
    )


class NotificationEventHandlers:
    def __init__(self, reactions: NotificationReactions) -> None:
        self._reactions = reactions

    async def notification_sent(
        self,
        _session: AsyncSession,
        message: notification_events.NotificationSent,
        context: EventContext,
    ) -> None:
        await self._reactions.message_sent(_unit(context), message_sent(message))

    async def notification_delivered(
        self,
        _session: AsyncSession,
        message: notification_events.NotificationDelivered,
        context: EventContext,
    ) -> None:
        await self._reactions.message_sent(_unit(context), message_sent(message))


def notifications_consumer(
    reactions: NotificationReactions, unit_of_work: Callable[[], SqlOffersUnitOfWork]
) -> ConsumerSpec:
    handlers = NotificationEventHandlers(reactions)
    return ConsumerSpec(
        durable=NOTIFICATIONS_DURABLE,
        stream=NOTIFICATIONS_STREAM,
        filter_subjects=NOTIFICATIONS_SUBJECTS,
        handlers=(
            EventHandler(notification_events.NotificationSent, handlers.notification_sent),
            EventHandler(
                notification_events.NotificationDelivered, handlers.notification_delivered
            ),
        ),
        unit_of_work=unit_of_work,
    )
