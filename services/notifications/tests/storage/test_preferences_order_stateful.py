"""The contact-preferences projection ends in the customer's newest switches whatever the order
(Hypothesis, stateful), on SQLite and PostgreSQL.

The machine plays offers: each change of the customer's switches (do-not-contact, the opted-out
channels) is a ContactPreferencesChanged of the next preferences version. Events reach
notifications through the real use case (`Intake.preferences_changed` from the decoded event)
when the machine decides: late, out of order, several times, several in one consumer batch. After
every step the store holds what a model holds: the switches of the highest version delivered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from zhike.offers.v1 import events_pb2 as offers_events
from zhike.offers.v1 import offers_pb2
from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.ports import ContactPreferences
from zhike_notifications.domain.service import Intake, Templates
from zhike_notifications.storage.repository import SqlNotificationsUnitOfWork
from zhike_notifications.testing import REQUEST_DIGEST
from zhike_notifications.transport.event_codec import contact_preferences, outgoing_event
from zhike_runtime.db import Database

from .conftest import KEYS, T0, run_machine

CHANNELS = {
    Channel.SMS: offers_pb2.CHANNEL_SMS,
    Channel.EMAIL: offers_pb2.CHANNEL_EMAIL,
    Channel.PUSH: offers_pb2.CHANNEL_PUSH,
}


def stamp(at: dt.datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(at)
    return result


class Preferences(RuleBasedStateMachine):
    """Subclassed per test with the migrated database's URL."""

    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.database = Database(self.url)
        self.party_id = str(uuid.uuid4())  # a party of this run's own: no clearing needed

        def units() -> SqlNotificationsUnitOfWork:
            return SqlNotificationsUnitOfWork(self.database, outgoing_event, None, KEYS)

        self.units = units
        self.intake = Intake(units, Templates({}), lambda: T0, request_digest=REQUEST_DIGEST)
        self.version = 0
        self.pending: list[offers_events.ContactPreferencesChanged] = []
        self.delivered: list[offers_events.ContactPreferencesChanged] = []
        self.model: ContactPreferences | None = None

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    # --- what happens --------------------------------------------------------------------------

    @rule(
        do_not_contact=st.booleans(),
        opted_out=st.frozensets(st.sampled_from(list(CHANNELS))),
        minute=st.integers(min_value=0, max_value=5),
    )
    def the_customer_changes_his_switches(
        self, do_not_contact: bool, opted_out: frozenset[Channel], minute: int
    ) -> None:
        self.version += 1
        # Change times may tie or even run backwards (clocks): the version orders them.
        self.pending.append(
            offers_events.ContactPreferencesChanged(
                party_id=self.party_id,
                do_not_contact=do_not_contact,
                opted_out_channels=sorted(CHANNELS[c] for c in opted_out),
                preferences_version=self.version,
                change_time=stamp(T0 + dt.timedelta(minutes=minute)),
            )
        )

    # --- how it arrives ------------------------------------------------------------------------

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), again=st.booleans())
    def one_arrives(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.pending) - 1))
        event = self.pending[index] if again else self.pending.pop(index)
        self.arrive([event])

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def several_arrive_in_one_batch(self, data: st.DataObject) -> None:
        # As the consumer applies a fetch: one transaction, any order, a copy included.
        chosen = data.draw(st.lists(st.sampled_from(self.pending), min_size=1, max_size=4))
        for event in chosen:
            if event in self.pending:
                self.pending.remove(event)
        self.arrive(data.draw(st.permutations(chosen)))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def one_arrives_again(self, data: st.DataObject) -> None:
        self.arrive([data.draw(st.sampled_from(self.delivered))])

    def arrive(self, events: Sequence[offers_events.ContactPreferencesChanged]) -> None:
        decoded = [contact_preferences(event) for event in events]
        self.run(self._apply(decoded))
        for preferences, event in zip(decoded, events, strict=True):
            if self.model is None or self.model.version < preferences.version:
                self.model = preferences
            self.delivered.append(event)

    async def _apply(self, decoded: Sequence[ContactPreferences]) -> None:
        async with self.units() as unit:
            for preferences in decoded:
                await self.intake.preferences_changed(unit, preferences)
            await unit.commit()

    # --- what must hold ------------------------------------------------------------------------

    @invariant()
    def the_newest_switches_hold(self) -> None:
        async def held() -> ContactPreferences | None:
            async with self.units() as unit:
                return await unit.preferences.get(self.party_id)

        assert self.run(held()) == self.model

    def teardown(self) -> None:
        try:
            # Whatever was still on its way arrives last, the oldest last of all.
            if self.pending:
                self.arrive(list(reversed(self.pending)))
                self.pending.clear()
                self.the_newest_switches_hold()
        finally:
            self.run(self.database.dispose())
            self.loop.close()


def test_the_preferences_projection_ends_in_the_newest_switches_whatever_the_order(
    migrated: str,
) -> None:
    run_machine(Preferences, migrated, examples=30, steps=20)
