"""Events → notifications use cases, applied inside the consumer's unit of work (with its inbox
row).

- `notifications-offers` on ZHIKE_OFFERS: OfferDecided queues the decision's message (once per
  decision), OfferWithdrawn cancels every send of it not yet handed to a provider,
  ContactPreferencesChanged keeps the customer's do-not-contact and opted-out channels, the
  highest version per party (an older or repeated event never overwrites newer preferences).
- `notifications-profile` on ZHIKE_PROFILE: the consent decisions in ProfileChanged, kept per
  party, channel and purpose, newest decision first (a late event never overwrites a newer one).

- `notifications-dispatch` on its own ZHIKE_NOTIFICATIONS: RedispatchNotification, which only a
  replay of its dead letters publishes (a send that failed permanently, parked by the dispatcher
  in the transaction that recorded FAILED), queues the notification again.

A fetch's events are applied in one transaction; when one of them fails, the fetch goes one event
at a time and only a malformed event is dead-lettered, with the field named. A fetch of offers'
events takes the locks of all its parties first, in one order, so that two replicas' fetches
never wait for each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from zhike.notifications.v1 import commands_pb2
from zhike.offers.v1 import events_pb2 as offers_events
from zhike.profile.v1 import events_pb2 as profile_events
from zhike_notifications.domain.ports import NotificationsUnitOfWork
from zhike_notifications.domain.service import Intake
from zhike_notifications.storage.repository import SqlNotificationsUnitOfWork
from zhike_notifications.transport import event_codec
from zhike_runtime.events.consumer import (
    ConsumerSpec,
    EventContext,
    EventHandler,
    ReceivedEvent,
    apply_in_turn,
    unit_of,
)
from zhike_runtime.unit_of_work import UnitOfWork

OFFERS_STREAM = "ZHIKE_OFFERS"
OFFERS_SUBJECTS = ("zhike.offers.v1.>",)
OFFERS_DURABLE = "notifications-offers"
PROFILE_STREAM = "ZHIKE_PROFILE"
PROFILE_SUBJECTS = ("zhike.profile.v1.>",)
PROFILE_DURABLE = "notifications-profile"
NOTIFICATIONS_STREAM = "ZHIKE_NOTIFICATIONS"


def _unit(context: EventContext) -> NotificationsUnitOfWork:
    return unit_of(context.unit, SqlNotificationsUnitOfWork)


class EventHandlers:
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def offers_batch(self, unit: UnitOfWork, events: Sequence[ReceivedEvent]) -> None:
        """Offers' events of a fetch in one transaction: every party's lock first (decisions and
        withdrawals take it one by one), then each event in stream order."""
        party_ids = {
            event.message.party_id
            for event in events
            if isinstance(event.message, offers_events.OfferDecided | offers_events.OfferWithdrawn)
        }
        await self._intake.lock_parties(unit_of(unit, SqlNotificationsUnitOfWork), party_ids)
        await apply_in_turn(unit, events)

    async def offer_decided(
        self, _session: AsyncSession, message: offers_events.OfferDecided, context: EventContext
    ) -> None:
        await self._intake.offer_decided(_unit(context), event_codec.offer_decision(message))

    async def offer_withdrawn(
        self,
        _session: AsyncSession,
        message: offers_events.OfferWithdrawn,
        context: EventContext,
    ) -> None:
        await self._intake.offer_withdrawn(_unit(context), event_codec.decision_withdrawal(message))

    async def preferences_changed(
        self,
        _session: AsyncSession,
        message: offers_events.ContactPreferencesChanged,
        context: EventContext,
    ) -> None:
        await self._intake.preferences_changed(
            _unit(context), event_codec.contact_preferences(message)
        )

    async def redispatch(
        self,
        _session: AsyncSession,
        message: commands_pb2.RedispatchNotification,
        context: EventContext,
    ) -> None:
        await self._intake.redispatch(_unit(context), event_codec.redispatched(message))

    async def profile_changed(
        self,
        _session: AsyncSession,
        message: profile_events.ProfileChanged,
        context: EventContext,
    ) -> None:
        await self._intake.profile_changed(_unit(context), event_codec.profile_news(message))


def offers_consumer(
    intake: Intake, unit_of_work: Callable[[], SqlNotificationsUnitOfWork]
) -> ConsumerSpec:
    handlers = EventHandlers(intake)
    return ConsumerSpec(
        durable=OFFERS_DURABLE,
        stream=OFFERS_STREAM,
        filter_subjects=OFFERS_SUBJECTS,
        handlers=(
            EventHandler(offers_events.OfferDecided, handlers.offer_decided),
            EventHandler(offers_events.OfferWithdrawn, handlers.offer_withdrawn),
            EventHandler(offers_events.ContactPreferencesChanged, handlers.preferences_changed),
        ),
        unit_of_work=unit_of_work,
        # A fetch's events in one transaction (each handler as it is, in stream order): one
        # commit for a burst of decisions instead of one each.
        batch_handler=handlers.offers_batch,
    )


def profile_consumer(
    intake: Intake, unit_of_work: Callable[[], SqlNotificationsUnitOfWork]
) -> ConsumerSpec:
    handlers = EventHandlers(intake)
    return ConsumerSpec(
        durable=PROFILE_DURABLE,
        stream=PROFILE_STREAM,
        filter_subjects=PROFILE_SUBJECTS,
        handlers=(EventHandler(profile_events.ProfileChanged, handlers.profile_changed),),
        unit_of_work=unit_of_work,
        batch_handler=apply_in_turn,
    )


def dispatch_consumer(
    intake: Intake, unit_of_work: Callable[[], SqlNotificationsUnitOfWork]
) -> ConsumerSpec:
    """Re-dispatches what an operator replays from `zhike.dlq.notifications-dispatch`."""
    handlers = EventHandlers(intake)
    return ConsumerSpec(
        durable=event_codec.DISPATCH_DURABLE,
        stream=NOTIFICATIONS_STREAM,
        filter_subjects=(event_codec.REDISPATCH_SUBJECT,),
        handlers=(EventHandler(commands_pb2.RedispatchNotification, handlers.redispatch),),
        unit_of_work=unit_of_work,
    )
