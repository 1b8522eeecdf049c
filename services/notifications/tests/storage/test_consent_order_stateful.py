"""The consent projection ends in the newest decision whatever the order (Hypothesis, stateful),
on SQLite and PostgreSQL.

The machine plays the profile and the customer: the profile's ProfileChanged events carry
consent decisions (SMS or e-mail × marketing or service, given or withdrawn, with or without the
evidence's capture time) under increasing profile versions; the customer answers "TD" to an SMS
(withdrawing marketing SMS at the reply's time). Events reach notifications through the real use
cases (`Intake.profile_changed` from the decoded event, `Deliveries.record_reply`) when the
machine decides: late, out of order, several times, several in one consumer batch. After every
step the store holds, per channel × purpose, what a model holds: the decision with the greatest
(decided_at, profile_version) among those delivered so far.
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

from zhike.profile.v1 import events_pb2 as profile_events
from zhike.profile.v1 import profile_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.domain.gates import ConsentEvidence, ConsentRecord
from zhike_notifications.domain.model import Acceptance, Channel, Purpose, Status
from zhike_notifications.domain.ports import ConsentEntry
from zhike_notifications.domain.replies import ReplyAction
from zhike_notifications.domain.service import Deliveries, Intake, Templates, WebhookReplayed
from zhike_notifications.storage.repository import SqlNotificationsUnitOfWork
from zhike_notifications.testing import REQUEST_DIGEST
from zhike_notifications.transport.event_codec import outgoing_event, profile_news
from zhike_runtime.db import Database

from .conftest import KEYS, T0, run_machine, stored

HOUR = dt.timedelta(hours=1)
PROVIDER = "local_sms"
TEXT = "mkt-sms-2026-01"
SMS_ID = "pm-td"  # the provider's id of the SMS the customer replies to
CHANNELS = {
    Channel.SMS: source_pb.CONTACT_CHANNEL_SMS,
    Channel.EMAIL: source_pb.CONTACT_CHANNEL_EMAIL,
}
PURPOSES = {
    Purpose.MARKETING: source_pb.CONTACT_PURPOSE_MARKETING,
    Purpose.SERVICE: source_pb.CONTACT_PURPOSE_SERVICE,
}
Key = tuple[Channel, Purpose]

# A decision: which consent, given or not, and the hour its evidence was captured (None: no
# evidence, decided when the change was made). Few hours, so that times tie often.
decisions = st.lists(
    st.tuples(
        st.sampled_from(list(CHANNELS)),
        st.sampled_from(list(PURPOSES)),
        st.booleans(),
        st.one_of(st.none(), st.integers(min_value=0, max_value=6)),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda d: (d[0], d[1]),  # the profile names a consent once per change
)


def stamp(at: dt.datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(at)
    return result


class Event:
    """A profile change or a TD reply, and the entries it should leave in the model."""

    def __init__(self, name: str, entries: Sequence[ConsentEntry]) -> None:
        self.name = name
        self.entries = tuple(entries)

    def __repr__(self) -> str:
        return self.name


class ProfileChange(Event):
    def __init__(
        self,
        version: int,
        message: profile_events.ProfileChanged,
        entries: Sequence[ConsentEntry],
    ) -> None:
        super().__init__(f"v{version}", entries)
        self.message = message


class Reply(Event):
    def __init__(self, name: str, party_id: str, at: dt.datetime) -> None:
        evidence = ConsentEvidence("sms reply", at, "")
        record = ConsentRecord(Channel.SMS, Purpose.MARKETING, given=False, evidence=evidence)
        super().__init__(name, [ConsentEntry(party_id, record, at, 0)])
        self.at = at
        self.delivery_id = f"reply-{uuid.uuid4().hex}"


def newer(held: ConsentEntry | None, entry: ConsentEntry) -> bool:
    return held is None or (held.decided_at, held.profile_version) < (
        entry.decided_at,
        entry.profile_version,
    )


class Consents(RuleBasedStateMachine):
    """Subclassed per test with the migrated database's URL."""

    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.database = Database(self.url)
        self.party_id = str(uuid.uuid4())  # a party of this run's own: no clearing needed

        def units() -> SqlNotificationsUnitOfWork:
            # The service's own codec: a reply stages a ConsentWithdrawn event.
            return SqlNotificationsUnitOfWork(self.database, outgoing_event, None, KEYS)

        self.units = units
        self.intake = Intake(units, Templates({}), lambda: T0, request_digest=REQUEST_DIGEST)
        # Read after every reply the machine makes (at most T0 + 6 h): each reply's own time
        # is then one the service takes.
        self.deliveries = Deliveries(units, lambda: T0 + 7 * HOUR)
        self.version = 0
        self.pending: list[Event] = []
        self.delivered: list[Event] = []
        self.model: dict[Key, ConsentEntry] = {}
        self.run(self._the_sms_replied_to())

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    async def _the_sms_replied_to(self) -> None:
        sms = stored(
            f"sms-{self.party_id}",
            party_id=self.party_id,
            idempotency_key=f"sms-{self.party_id}",
            status=Status.SENT,
            accepted=Acceptance(1, PROVIDER, f"{SMS_ID}-{self.party_id}", T0),
        )
        async with self.units() as unit:
            assert await unit.notifications.add(sms)
            await unit.commit()

    # --- what happens --------------------------------------------------------------------------

    @rule(items=decisions, change_hour=st.integers(min_value=0, max_value=6))
    def the_profile_changes_consents(
        self, items: list[tuple[Channel, Purpose, bool, int | None]], change_hour: int
    ) -> None:
        self.version += 1
        changed_at = T0 + change_hour * HOUR
        facts, entries = [], []
        for channel, purpose, given, captured_hour in items:
            consent = profile_events.ConsentChanged(
                channel=CHANNELS[channel], purpose=PURPOSES[purpose], given=given
            )
            evidence = None
            if captured_hour is not None:
                evidence = ConsentEvidence("branch 0101", T0 + captured_hour * HOUR, TEXT)
                consent.evidence.CopyFrom(
                    profile_pb2.ConsentEvidence(
                        captured_where=evidence.captured_where,
                        capture_time=stamp(evidence.captured_at),
                        text_version=TEXT,
                    )
                )
            facts.append(profile_events.ProfileFact(consent_changed=consent))
            # Decided when the evidence was captured, else when the profile changed.
            entries.append(
                ConsentEntry(
                    self.party_id,
                    ConsentRecord(channel, purpose, given, evidence),
                    evidence.captured_at if evidence else changed_at,
                    self.version,
                )
            )
        message = profile_events.ProfileChanged(
            party_id=self.party_id,
            profile_version=self.version,
            change_time=stamp(changed_at),
            facts=facts,
        )
        self.pending.append(ProfileChange(self.version, message, entries))

    @rule(hour=st.integers(min_value=0, max_value=6))
    def the_customer_replies_td(self, hour: int) -> None:
        self.pending.append(Reply(f"td@{hour}", self.party_id, T0 + hour * HOUR))

    # --- how it arrives ------------------------------------------------------------------------

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), again=st.booleans())
    def one_arrives(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.pending) - 1))
        event = self.pending[index] if again else self.pending.pop(index)
        self.arrive([event])

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def profile_changes_arrive_in_one_batch(self, data: st.DataObject) -> None:
        # As the consumer applies a fetch: one transaction, any order, a copy included.
        changes = [e for e in self.pending if isinstance(e, ProfileChange)]
        if not changes:
            return
        chosen = data.draw(st.lists(st.sampled_from(changes), min_size=1, max_size=4))
        for event in chosen:
            if event in self.pending:
                self.pending.remove(event)
        self.arrive(data.draw(st.permutations(chosen)))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def one_arrives_again(self, data: st.DataObject) -> None:
        self.arrive([data.draw(st.sampled_from(self.delivered))])

    def arrive(self, events: Sequence[Event]) -> None:
        changes = [e for e in events if isinstance(e, ProfileChange)]
        if changes:
            self.run(self._profile_changes([e.message for e in changes]))
        for event in events:
            if isinstance(event, Reply):
                self.run(self._reply(event))
        for event in events:
            for entry in event.entries:
                key = (entry.record.channel, entry.record.purpose)
                if newer(self.model.get(key), entry):
                    self.model[key] = entry
            self.delivered.append(event)

    async def _profile_changes(self, messages: Sequence[profile_events.ProfileChanged]) -> None:
        async with self.units() as unit:
            for message in messages:
                await self.intake.profile_changed(unit, profile_news(message))
            await unit.commit()

    async def _reply(self, reply: Reply) -> None:
        try:
            action = await self.deliveries.record_reply(
                reply.delivery_id, PROVIDER, f"{SMS_ID}-{self.party_id}", "TD", reply.at
            )
        except WebhookReplayed:
            return  # the same webhook delivered again: nothing changes
        assert action is ReplyAction.UNSUBSCRIBE

    # --- what must hold ------------------------------------------------------------------------

    @invariant()
    def the_newest_decision_holds(self) -> None:
        async def held() -> list[ConsentEntry]:
            async with self.units() as unit:
                return list((await unit.consents.held(self.party_id)).entries)

        found = {(e.record.channel, e.record.purpose): e for e in self.run(held())}
        assert found == self.model

    def teardown(self) -> None:
        try:
            # Whatever was still on its way arrives last, the oldest last of all.
            if self.pending:
                self.arrive(list(reversed(self.pending)))
                self.pending.clear()
                self.the_newest_decision_holds()
        finally:
            self.run(self.database.dispose())
            self.loop.close()


def test_the_consent_projection_ends_in_the_newest_decision_whatever_the_order(
    migrated: str,
) -> None:
    run_machine(Consents, migrated, examples=40, steps=25)
