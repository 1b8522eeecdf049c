"""Events → offers use cases, applied inside the consumer's unit of work (with its inbox row).

One consumer today, one table of handlers:
- `offers-profile` on ZHIKE_PROFILE: the profile's ProfileChanged feeds offers' projection of
  the party's facts, and re-decides the party's outbound offers when a fact they read changed.
  A malformed one is dead-lettered with the field named.

Notifications' delivery events (issue 13) will come as a second consumer, `offers-notifications`
on ZHIKE_NOTIFICATIONS, with its own table here: a delivery becomes a DELIVERED contact event
(`ContactStore.add`, keyed by the delivery's id) for the contact policy.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from zhike.profile.v1 import events_pb2 as profile_events
from zhike_offers.domain.ports import OffersUnitOfWork
from zhike_offers.domain.service import ProfileReactions
from zhike_offers.storage.repository import SqlOffersUnitOfWork
from zhike_offers.transport.event_codec import profile_change
from zhike_runtime.events.consumer import ConsumerSpec, EventContext, EventHandler

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
    )
