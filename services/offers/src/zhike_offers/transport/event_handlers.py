"""Events → offers use cases, applied inside the consumer's unit of work (with its inbox row).

One consumer today, one table of handlers:
- `offers-profile` on ZHIKE_PROFILE: the profile's ProfileChanged feeds offers' projection of
  the party's facts, and re-decides the party's outbound offers when a fact they read changed.
  The new events of a fetch are applied as one batch (one transaction, each party re-decided
  once); a malformed one is dead-lettered with the field named.

Notifications' delivery events (issue 13) will come as a second consumer, `offers-notifications`
on ZHIKE_NOTIFICATIONS, with its own table here: a delivery becomes a DELIVERED contact event
(`ContactStore.add`, keyed by the delivery's id) for the contact policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from zhike.profile.v1 import events_pb2 as profile_events
from zhike_offers.domain.ports import OffersUnitOfWork
from zhike_offers.domain.service import ProfileReactions
from zhike_offers.storage.repository import SqlOffersUnitOfWork
from zhike_offers.transport.event_codec import profile_change
from zhike_runtime.events.consumer import (
    ConsumerSpec,
    EventContext,
    EventHandler,
    ReceivedEvent,
)
from zhike_runtime.unit_of_work import UnitOfWork

PROFILE_STREAM = "ZHIKE_PROFILE"
PROFILE_SUBJECTS = ("zhike.profile.v1.>",)
PROFILE_DURABLE = "offers-profile"


def _unit(context: EventContext) -> OffersUnitOfWork:
    if not isinstance(context.unit, SqlOffersUnitOfWork):
        raise TypeError("the offers' consumers run in the offers' unit of work")
    return context.unit


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
        if not isinstance(unit, SqlOffersUnitOfWork):
            raise TypeError("the offers' consumers run in the offers' unit of work")
        changes = [
            profile_change(cast(profile_events.ProfileChanged, item.message)) for item in received
        ]
        await self._reactions.apply_batch(unit, changes)


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
