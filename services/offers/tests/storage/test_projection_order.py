"""Any interleaving of duplicated, reordered and delayed ProfileChanged events ends in the facts
of in-order delivery (Hypothesis, stateful), on SQLite and PostgreSQL.

The machine plays the profile: each party's changes carry profile versions 1, 2, 3… and say
what changed — balances per currency and side, holdings opened and closed, tier, value band,
segments entered and left, consents, risk levels and expiries — and a party may be merged into
another, after which its facts change no more, though a split at identity may re-route it to
another party or end its forwarding (each a later change). Every party starts with a contact
recorded for it, and notifications tells of messages sent to any of them, merged or not, at any
time (offers records each as a contact). Every event goes at once, in order, to one store; to
the other when the machine decides: late, out of order, several times (also under another event
id, as a republished copy), one at a time or several in one batch (as the consumer applies a
fetch). At the end the second store gets whatever is still pending, and every party's projected
facts, version, merge and contacts must be the same in both, each merged party leading where its
latest change said, with the contacts recorded for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from zhike.profile.v1 import events_pb2 as pb
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_offers.app import DEFINITION
from zhike_offers.domain.catalogue import Catalogue
from zhike_offers.domain.contact_policy import ContactEvent, ContactKind
from zhike_offers.domain.model import MessageSent
from zhike_offers.storage import schema
from zhike_runtime.db import Database
from zhike_runtime.events.schema import inbox_event, outbox_event
from zhike_runtime.testing.services import migrate_databases

from ..domain.builders import document, shared_environment
from ..offers_harness import Harness
from ..profile_events import (
    T0,
    balance,
    changed,
    consent,
    holding,
    risk,
    risk_expired,
    segment,
    tier,
    value_band,
)

PARTIES = tuple(str(uuid.UUID(int=n)) for n in (1, 2, 3))
SURVIVORS = tuple(str(uuid.UUID(int=n)) for n in (98, 99))
APP_OFFER = "app_offer"  # on the app only: no change decides it outbound
TABLES = (
    schema.party_fact,
    schema.party,
    schema.contact_event,
    schema.outbound_decision,
    schema.decision_log,
    schema.offer_version,
    schema.offer,
    schema.propensity,
    outbox_event,
    inbox_event,
)

facts = st.one_of(
    st.builds(
        balance,
        st.sampled_from(["USD", "CNY", "HKD"]),
        st.integers(min_value=0, max_value=10_000_000),
        liabilities=st.booleans(),
    ),
    st.builds(
        holding,
        st.sampled_from(["A-1", "A-2"]),
        st.sampled_from(["WM_USD_6M", "FUND_BAL_EQ"]),
        line=st.sampled_from([source_pb.PRODUCT_LINE_INVESTMENT, source_pb.PRODUCT_LINE_SAVINGS]),
        opened=st.booleans(),
        record=st.sampled_from(["R1", "R2"]),
    ),
    st.builds(tier, st.sampled_from(["standard", "gold", "platinum"])),
    st.builds(value_band, st.sampled_from(["low", "high"])),
    st.builds(segment, st.sampled_from(["usd_holder", "young_professional"]), st.booleans()),
    st.builds(
        consent,
        st.sampled_from([source_pb.CONTACT_CHANNEL_SMS, source_pb.CONTACT_CHANNEL_EMAIL]),
        st.booleans(),
    ),
    st.builds(
        risk,
        st.integers(min_value=0, max_value=5),
        st.sampled_from([dt.date(2027, 6, 30), dt.date(2026, 12, 5), None]),
    ),
    st.builds(
        risk_expired,
        st.integers(min_value=1, max_value=5),
        st.sampled_from([dt.date(2026, 11, 30), dt.date(2027, 1, 1)]),
    ),
)


async def state_of(harness: Harness) -> dict[str, Any]:
    """Every party's facts as a decision sees them, its version and its merge, and whose
    contact history each contact is in."""
    state: dict[str, Any] = {}
    async with harness.unit() as unit:
        for party_id in PARTIES:
            party = await unit.parties.get(party_id)
            state[party_id] = (
                None
                if party is None
                else (
                    party.profile_version,
                    party.merged_into,
                    party.forwarding_ended,
                    dict(party.facts),
                )
            )
        rows = await unit.session.execute(
            sa.select(schema.contact_event.c.contact_id, schema.contact_event.c.party_id)
        )
        state["contacts"] = {contact_id: party_id for contact_id, party_id in rows}
    for party_id in PARTIES:
        state[f"facts {party_id}"] = await harness.facts(party_id)
    return state


async def record_a_contact_for_each_party(harness: Harness) -> None:
    async with harness.unit() as unit:
        for n, party_id in enumerate(PARTIES):
            event = ContactEvent(T0, "usd_fx_wealth", "sms", ContactKind.DECLINE, True)
            await unit.contacts.add(f"contact:{party_id}", party_id, event, str(uuid.UUID(int=n)))
        await unit.commit()


async def clear(url: str) -> Database:
    database = Database(url)
    async with database.engine.begin() as connection:
        if database.is_postgres:
            names = ", ".join(table.name for table in TABLES)
            await connection.execute(sa.text(f"TRUNCATE {names}"))
        else:
            for table in TABLES:
                await connection.execute(table.delete())
    return database


class Profile(RuleBasedStateMachine):
    """Subclassed per test with the two stores' URLs."""

    urls: tuple[str, str] = ("", "")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        in_order, shuffled = (self.loop.run_until_complete(clear(url)) for url in self.urls)
        # No offers: this is about the projection, and every change then costs a few writes.
        empty = Catalogue([], shared_environment())
        self.in_order = Harness(in_order, empty)
        self.shuffled = Harness(shuffled, empty)
        for harness in (self.in_order, self.shuffled):
            self.run(record_a_contact_for_each_party(harness))
            self.run(harness.admin.create(document(APP_OFFER)))
        self.versions = dict.fromkeys(PARTIES, 0)
        self.merged: dict[str, tuple[str, bool]] = {}  # → where it leads, forwarding ended
        self.pending: list[tuple[str, pb.ProfileChanged]] = []
        self.messages: dict[str, str] = {}  # notification id → the party it was sent to
        self.pending_messages: list[MessageSent] = []
        self.delivered: list[tuple[str, pb.ProfileChanged]] = []
        self.counter = 0

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def emit(
        self,
        party_id: str,
        items: list[pb.ProfileFact],
        merged_into: str = "",
        forwarding_ended: bool = False,
    ) -> None:
        self.counter += 1
        self.versions[party_id] += 1
        at = T0 + dt.timedelta(hours=self.counter)
        message = changed(
            party_id,
            self.versions[party_id],
            *items,
            at=at,
            merged_into=merged_into,
            forwarding_ended=forwarding_ended,
        )
        event = (f"e{self.counter}", message)
        self.run(self.in_order.deliver(*event))
        self.pending.append(event)

    @precondition(lambda self: len(self.merged) < len(PARTIES))
    @rule(choice=st.integers(min_value=0, max_value=99), items=st.lists(facts, max_size=4))
    def change_a_party(self, choice: int, items: list[pb.ProfileFact]) -> None:
        live = [p for p in PARTIES if p not in self.merged]
        self.emit(live[choice % len(live)], items)

    @precondition(lambda self: len(self.merged) < len(PARTIES))
    @rule(choice=st.integers(min_value=0, max_value=99))
    def merge_a_party(self, choice: int) -> None:
        live = [p for p in PARTIES if p not in self.merged]
        party_id = live[choice % len(live)]
        survivor = SURVIVORS[choice % len(SURVIVORS)]
        self.emit(party_id, [], merged_into=survivor)
        self.merged[party_id] = (survivor, False)

    @precondition(lambda self: any(not ended for _, ended in self.merged.values()))
    @rule(choice=st.integers(min_value=0, max_value=99), ended=st.booleans())
    def reroute_a_merged_party(self, choice: int, ended: bool) -> None:
        # A split at identity: the retired id follows its records to another party, or (its
        # records parted) leads nowhere, its contacts staying with the party kept.
        merged = sorted(p for p, (_, was_ended) in self.merged.items() if not was_ended)
        party_id = merged[choice % len(merged)]
        into = self.merged[party_id][0] if ended else SURVIVORS[choice % len(SURVIVORS)]
        self.emit(party_id, [], merged_into=into, forwarding_ended=ended)
        self.merged[party_id] = (into, ended)

    @rule(choice=st.integers(min_value=0, max_value=99))
    def send_a_message(self, choice: int) -> None:
        self.counter += 1
        message = MessageSent(
            notification_id=f"n{self.counter}",
            party_id=PARTIES[choice % len(PARTIES)],
            channel="mobile_app",
            decision_id="",
            offer_id=APP_OFFER,
            at=T0 + dt.timedelta(hours=self.counter),
        )
        assert self.run(self.in_order.message_sent(message))
        self.messages[message.notification_id] = message.party_id
        self.pending_messages.append(message)

    @precondition(lambda self: self.pending_messages)
    @rule(data=st.data(), again=st.booleans())
    def deliver_a_message(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.pending_messages) - 1))
        message = self.pending_messages[index]
        if not again:
            del self.pending_messages[index]
        self.run(self.shuffled.message_sent(message))

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), again=st.booleans())
    def deliver_one_out_of_order(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.pending) - 1))
        event = self.pending[index] if again else self.pending.pop(index)
        self.run(self.shuffled.deliver(*event))  # kept pending when `again`: a duplicate later
        self.delivered.append(event)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), duplicates=st.integers(min_value=0, max_value=2))
    def deliver_several_in_one_batch(self, data: st.DataObject, duplicates: int) -> None:
        # As the consumer applies a fetch: one transaction, in any order, copies included.
        chosen = data.draw(st.lists(st.sampled_from(self.pending), min_size=1, max_size=6))
        batch = data.draw(st.permutations(chosen + chosen[:duplicates]))
        for event in chosen:
            if event in self.pending:
                self.pending.remove(event)
        self.run(self.shuffled.deliver_batch(batch))
        self.delivered.extend(chosen)

    @precondition(lambda self: self.delivered)
    @rule(data=st.data(), republished=st.booleans())
    def deliver_one_again(self, data: st.DataObject, republished: bool) -> None:
        event_id, message = data.draw(st.sampled_from(self.delivered))
        # The same id (the inbox absorbs it) or a copy under a new one (the versions do).
        self.counter += 1
        self.run(self.shuffled.deliver(f"copy{self.counter}" if republished else event_id, message))

    def teardown(self) -> None:
        try:
            # What is still pending arrives last, the oldest last of all.
            for event in reversed(self.pending):
                self.run(self.shuffled.deliver(*event))
            for message in self.pending_messages:
                self.run(self.shuffled.message_sent(message))
            expected = self.run(state_of(self.in_order))
            actual = self.run(state_of(self.shuffled))
            assert actual == expected
            for party_id, (into, ended) in self.merged.items():
                assert expected[party_id][1:3] == (into, ended)

            def leads_to(party_id: str) -> str:
                return self.merged.get(party_id, (party_id, False))[0]

            told = {f"contact:{p}": leads_to(p) for p in PARTIES} | {
                f"message:{n}": leads_to(p) for n, p in self.messages.items()
            }
            assert expected["contacts"] == told
        finally:
            self.run(self.in_order.close())
            self.run(self.shuffled.close())
            self.loop.close()


@pytest.fixture
def two_stores(two_database_urls: tuple[str, str]) -> tuple[str, str]:
    migrate_databases(two_database_urls, DEFINITION.migrations)
    return two_database_urls


def test_any_delivery_order_ends_in_the_facts_of_in_order_delivery(
    two_stores: tuple[str, str],
) -> None:
    machine = type("ProfileUnderTest", (Profile,), {"urls": two_stores})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
