"""Any interleaving of duplicated, reordered and delayed ProfileChanged events ends in the facts
of in-order delivery, and in outbound decisions settled on those facts (Hypothesis, stateful), on
SQLite and PostgreSQL.

The machine plays the profile: each party's changes carry profile versions 1, 2, 3… and say
what changed — balances per currency and side, holdings opened and closed, tier, value band,
segments entered and left, consents, risk levels and expiries, ages told and no longer known
(also alone, as the daily refresh tells a birthday); some parties start as USD customers — and a
party may be merged into another (one party never is, so that one is left to decide for), after
which its facts change no more, though a split at identity may re-route it to another party or
end its forwarding (each a later change). Every party starts with a contact
recorded for it, and notifications tells of messages sent to any of them, merged or not, at any
time (offers records each as a contact). Every event goes at once, in order, to one store; to
the other when the machine decides: late, out of order, several times (also under another event
id, as a republished copy), one at a time or several in one batch (as the consumer applies a
fetch). One clock, an hour on for each thing that happens, serves both stores: a late event is
applied later than in-order delivery applied it. At the end the second store gets whatever is
still pending, and every party's projected facts, version, merge and contacts must be the same
in both, each merged party leading where its latest change said, with the contacts recorded for
it (those of its outbound decisions too).

The catalogue holds two outbound offers whose rules read facts the machine changes: the shipped
usd_fx_wealth (USD 5,000 or more, a valid C2+ assessment, SMS marketing consent, not holding
WM_USD_6M: a marketing SMS, so held back by the contact budget and by its own cap of 2 in 30
days) and usd_account_notice (USD 1,000 or more, the usd_holder segment, of age, not platinum:
a service e-mail, outside the budget, with a cap no run can reach, held back only by a refused
service consent; its age rule is not in its depends_on, so an age alone decides it again only
because the rule reads it).

What in-order delivery fixes is the final facts, not the way there. The stores pass through
different states: in-order delivery through every one, a shuffled store skipping some and
passing, key by key, through mixes of old and new. Each state that held an offer decided it, and
each decision counts toward the budget and the offer's cap from then on, withdrawn or not. So
the outbound state that is the same as in-order is not "the same decisions" but where both
settle: in each store, for each party not merged away and each outbound offer and channel, the
offer is

- ACTIVE, and then the final facts do not rule it out (no withdrawal reason), or
- ruled out by the final facts, and not ACTIVE, or
- allowed by them, not ACTIVE, and held back by the contact policy on that store's own contact
  history (the offer's cap or the budget): deciding again would not choose it,

and a party merged away holds no ACTIVE decision. An offer the policy cannot hold back then ends
in the same state in both stores, ACTIVE in both or in neither; a capped one is ruled out in both
or in neither, and may be ACTIVE in one store only where the other's own history used its cap or
budget. Time changes none of this: no window of the contact policy and no date a rule reads ends
within a run (checked at the end), so the hour a store decided at decides nothing by itself (an
assessment expiring by the clock is the profile's to announce, RiskAssessmentExpired; an offer
closing is the expiry round's). Each store's published OfferDecided and OfferWithdrawn, read in
order, leave in force exactly its ACTIVE decisions — each decided once, withdrawn at most once
and only after — so a consumer of either outbox ends holding the same decisions of the offers
the policy cannot hold back, and of the others what that store settled on. The events themselves
are not the same: where in-order delivery passed through a state that held an offer, it
published an OfferDecided and then an OfferWithdrawn that a store skipping that state never did.
What each says is: every OfferDecided names the profile version its decision was made on (the
party's, as its arbitration's log entry has it: a late change that decides names the newer
version the facts are already as of, not its own, which notifications' consent catch-up relies
on), and every OfferWithdrawn one no older than its decision's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from zhike.offers.v1 import events_pb2 as offers_events
from zhike.profile.v1 import events_pb2 as pb
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_offers.app import DEFINITION
from zhike_offers.domain.catalogue import Catalogue, compile_offer
from zhike_offers.domain.contact_policy import ContactEvent, ContactKind, SuppressionRule
from zhike_offers.domain.decision import MAX_OFFERS, decide, decision_request, withdrawal_reason
from zhike_offers.domain.model import MessageSent, arbitration_of
from zhike_offers.domain.service import facts_of, history_since, outbound_channels
from zhike_offers.storage import schema
from zhike_runtime.db import Database
from zhike_runtime.events.schema import inbox_event, outbox_event
from zhike_runtime.testing.services import migrate_databases

from ..domain.builders import document, shared_environment
from ..offers_harness import SHANGHAI, Harness, default_catalogue
from ..profile_events import (
    T0,
    age,
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
FX_OFFER = "usd_fx_wealth"  # as shipped: the contact budget and its cap can hold it back
NOTICE = "usd_account_notice"  # a service e-mail: nothing in the contact policy holds it back
CAPPED = frozenset({FX_OFFER})
# Where the rules a run reads could first change by the clock alone: the budget's shortest
# window (7 days) and the earliest assessment expiry the machine tells (5 December, Shanghai).
QUIET_UNTIL = min(T0 + dt.timedelta(days=7), dt.datetime(2026, 12, 5, tzinfo=SHANGHAI))
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

# An outbound offer and channel of a party at the end, in one store (see the module's doc).
ACTIVE = "active"
RULED_OUT = "ruled out by the final facts"
HELD_BACK = {
    SuppressionRule.OFFER_CAP: "held back by its cap",
    SuppressionRule.BUDGET: "held back by the budget",
}

# Minor units: around both offers' thresholds (USD 1,000 and 5,000), or anything.
amounts = st.one_of(
    st.sampled_from([0, 99_999, 100_000, 499_999, 500_000, 600_000]),
    st.integers(min_value=0, max_value=10_000_000),
)
facts = st.one_of(
    st.builds(balance, st.sampled_from(["USD", "CNY", "HKD"]), amounts, liabilities=st.booleans()),
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
        st.sampled_from([source_pb.CONTACT_PURPOSE_MARKETING, source_pb.CONTACT_PURPOSE_SERVICE]),
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
    st.builds(
        age,
        st.one_of(st.none(), st.integers(min_value=0, max_value=150)),
        st.one_of(st.none(), st.integers(min_value=0, max_value=150)),
    ),
)
# What the outbound offers read, each way: so that a party comes to hold an offer, and stops,
# and comes to hold it again, often within a run.
offer_facts = st.sampled_from(
    [
        balance("USD", 600_000),
        balance("USD", 200_000),
        balance("USD", 0),
        consent(source_pb.CONTACT_CHANNEL_SMS, True),
        consent(source_pb.CONTACT_CHANNEL_SMS, False),
        consent(source_pb.CONTACT_CHANNEL_EMAIL, True, source_pb.CONTACT_PURPOSE_SERVICE),
        consent(source_pb.CONTACT_CHANNEL_EMAIL, False, source_pb.CONTACT_PURPOSE_SERVICE),
        risk(3),
        risk(1),
        risk_expired(3, dt.date(2027, 1, 1)),
        segment("usd_holder", True),
        segment("usd_holder", False),
        tier("gold"),
        tier("platinum"),
        holding("W-1", "WM_USD_6M", record="R1"),
        holding("W-1", "WM_USD_6M", record="R1", opened=False),
        age(17),
        age(18, before=17),
        age(None),
    ]
)
USD_CUSTOMER = [
    consent(source_pb.CONTACT_CHANNEL_SMS, True),
    risk(3),
    balance("USD", 600_000),
    segment("usd_holder", True),
    age(40),
]
# A change tells any facts, or some of those the outbound offers read, or all their conditions
# at once (as the FX story starts), or an age alone (the profile's daily refresh on a birthday).
changes = st.one_of(
    st.lists(facts, max_size=4),
    st.lists(offer_facts, min_size=1, max_size=4),
    st.just(USD_CUSTOMER),
    st.sampled_from([[age(17)], [age(18, before=17)], [age(None)]]),
)


def outbound_catalogue() -> Catalogue:
    shipped = default_catalogue().offer(FX_OFFER)
    assert shipped is not None
    notice = document(
        NOTICE,
        category="service",
        channels=["email"],
        outbound=True,
        templates={"email": "usd_account_notice_email_v1"},
        # Of age: a minor's account notices go to the guardian.
        eligibility=['assets["USD"] >= 1000.0', '"usd_holder" in segments', "age >= 18"],
        applicability=['tier != "platinum"'],  # a relationship manager tells those
        contact_limits={"max_contacts": 100, "window_days": 30},  # more than a run decides
    )
    return Catalogue([shipped, compile_offer(notice, shared_environment())], shared_environment())


async def state_of(harness: Harness) -> dict[str, Any]:
    """Every party's facts as a decision sees them, its version and its merge, and whose
    contact history each contact the machine told of is in."""
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
            sa.select(schema.contact_event.c.contact_id, schema.contact_event.c.party_id).where(
                sa.not_(schema.contact_event.c.contact_id.startswith("decided:"))
            )
        )
        state["contacts"] = {contact_id: party_id for contact_id, party_id in rows}
    for party_id in PARTIES:
        state[f"facts {party_id}"] = await harness.facts(party_id)
    return state


async def decisions_in_force(harness: Harness) -> dict[str, tuple[str, str, str]]:
    """The store's ACTIVE outbound decisions (id → party, offer, channel), checked to be exactly
    those its published OfferDecided and OfferWithdrawn leave in force, read in order: each
    decision decided once, withdrawn at most once and only after, and told as it is stored, with
    the profile version it was made on (as its arbitration's log entry has it), and withdrawn on
    one no older."""
    async with harness.unit() as unit:
        made_on = dict(
            (
                await unit.session.execute(
                    sa.select(
                        schema.decision_log.c.arbitration_id, schema.decision_log.c.profile_version
                    )
                )
            ).all()
        )
        rows = (
            await unit.session.execute(
                sa.select(
                    schema.outbound_decision.c.decision_id,
                    schema.outbound_decision.c.party_id,
                    schema.outbound_decision.c.offer_id,
                    schema.outbound_decision.c.channel,
                    schema.outbound_decision.c.active,
                )
            )
        ).all()
    stored = {row.decision_id: (row.party_id, row.offer_id, row.channel) for row in rows}
    decided: dict[str, tuple[str, str]] = {}
    versions: dict[str, int] = {}
    withdrawn: set[str] = set()
    for message in await harness.published():
        if isinstance(message, offers_events.OfferDecided):
            assert message.decision_id not in decided, f"decided twice: {message}"
            decided[message.decision_id] = (message.party_id, message.offer_id)
            arbitration = arbitration_of(message.decision_id)
            assert arbitration is not None
            assert message.profile_version == made_on[arbitration[0]], (
                f"not the profile version it was made on ({made_on[arbitration[0]]}): {message}"
            )
            versions[message.decision_id] = message.profile_version
        elif isinstance(message, offers_events.OfferWithdrawn):
            assert decided.get(message.decision_id) == (message.party_id, message.offer_id), (
                f"withdrawn before it was decided: {message}"
            )
            assert message.decision_id not in withdrawn, f"withdrawn twice: {message}"
            assert message.profile_version >= versions[message.decision_id], (
                f"withdrawn on an older profile than it was decided on: {message}"
            )
            withdrawn.add(message.decision_id)
    assert decided == {key: value[:2] for key, value in stored.items()}
    in_force = {key: value for key, value in stored.items() if key not in withdrawn}
    assert set(in_force) == {row.decision_id for row in rows if row.active}
    return in_force


async def outbound_state(harness: Harness, live: Sequence[str]) -> dict[tuple[str, ...], str]:
    """For each party of `live`, each outbound offer and each of its outbound channels: ACTIVE,
    RULED_OUT or HELD_BACK by a rule of the contact policy that reads the store's own contact
    history, as deciding again with the final facts, history and clock finds it; anything else
    (an ACTIVE decision the facts rule out, an offer they allow that is neither ACTIVE nor held
    back) is said as it is, and fails the comparison."""
    catalogue, model = await harness.catalogues.get(), await harness.models.get()
    config, now = harness.config, harness.now
    active = set((await decisions_in_force(harness)).values())
    assert {party_id for party_id, _, _ in active} <= set(live), "a decision for a party gone"
    async with harness.unit() as unit:
        parties = await unit.parties.get_many(live)
        histories = await unit.contacts.histories(live, history_since(catalogue, config, now))
    state: dict[tuple[str, ...], str] = {}
    for party in parties:
        facts = facts_of(party.party_id, party)
        held = {offer_id for party_id, offer_id, _ in active if party_id == party.party_id}
        for channel in sorted(outbound_channels(catalogue)):
            request = decision_request(
                channel=channel, max_offers=MAX_OFFERS, outbound=True, explain=True
            )
            again = decide(
                facts,
                catalogue,
                histories.get(party.party_id, []),
                model,
                request,
                now,
                config=config,
                exclude=held,
            )
            not_chosen = {item.offer_id: item for item in again.not_chosen}
            for offer in catalogue.offers:
                if not offer.outbound or channel not in offer.channels:
                    continue
                key = (party.party_id, offer.offer_id, channel)
                why = withdrawal_reason(
                    offer.offer_id,
                    channel=channel,
                    facts=facts,
                    catalogue=catalogue,
                    now=now,
                    config=config,
                )
                item = not_chosen.get(offer.offer_id)
                if key in active:
                    state[key] = ACTIVE if why is None else f"ACTIVE though {why.explanation}"
                elif why is not None:
                    state[key] = RULED_OUT
                elif item is not None and item.suppression in HELD_BACK:
                    state[key] = HELD_BACK[item.suppression]
                else:
                    said = "chosen" if item is None else item.explanation
                    state[key] = f"not ACTIVE though it holds; deciding again: {said}"
    return state


async def where_decisions_count(harness: Harness) -> set[tuple[str, str]]:
    """For each outbound decision: its party, and the party whose contact history holds the
    contact it was counted as."""
    async with harness.unit() as unit:
        decided = dict(
            (
                await unit.session.execute(
                    sa.select(
                        schema.outbound_decision.c.decision_id, schema.outbound_decision.c.party_id
                    )
                )
            ).all()
        )
        counted = dict(
            (
                await unit.session.execute(
                    sa.select(
                        schema.contact_event.c.decision_id, schema.contact_event.c.party_id
                    ).where(schema.contact_event.c.kind == ContactKind.DECIDED_OUTBOUND.value)
                )
            ).all()
        )
    assert set(counted) == set(decided)
    return {(party_id, counted[decision_id]) for decision_id, party_id in decided.items()}


async def record_a_contact_for_each_party(harness: Harness) -> None:
    async with harness.unit() as unit:
        for n, party_id in enumerate(PARTIES):
            event = ContactEvent(T0, APP_OFFER, "mobile_app", ContactKind.DECLINE, True)
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
        offers = outbound_catalogue()
        self.in_order = Harness(in_order, offers)
        self.shuffled = Harness(shuffled, offers)
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

    def tick(self) -> dt.datetime:
        """An hour on, on the one clock both stores read."""
        self.counter += 1
        now = T0 + dt.timedelta(hours=self.counter)
        self.in_order.now = self.shuffled.now = now
        return now

    def emit(
        self,
        party_id: str,
        items: list[pb.ProfileFact],
        merged_into: str = "",
        forwarding_ended: bool = False,
    ) -> None:
        at = self.tick()
        self.versions[party_id] += 1
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

    @initialize(starting=st.sets(st.sampled_from(PARTIES)))
    def some_parties_start_as_usd_customers(self, starting: set[str]) -> None:
        for party_id in sorted(starting):
            self.emit(party_id, USD_CUSTOMER)

    @rule(choice=st.integers(min_value=0, max_value=99), items=changes)
    def change_a_party(self, choice: int, items: list[pb.ProfileFact]) -> None:
        live = [p for p in PARTIES if p not in self.merged]
        self.emit(live[choice % len(live)], items)

    @precondition(lambda self: len(self.merged) < len(PARTIES) - 1)  # one left to decide for
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
        at = self.tick()
        message = MessageSent(
            notification_id=f"n{self.counter}",
            party_id=PARTIES[choice % len(PARTIES)],
            channel="mobile_app",
            decision_id="",
            offer_id=APP_OFFER,
            at=at,
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
        self.tick()
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
            for harness in (self.in_order, self.shuffled):
                decisions = self.run(where_decisions_count(harness))
                assert decisions == {(p, leads_to(p)) for p, _ in decisions}

            assert self.in_order.now < QUIET_UNTIL, "a run long enough for the clock to decide"
            live = [p for p in PARTIES if p not in self.merged]
            settled = self.run(outbound_state(self.in_order, live))
            reached = self.run(outbound_state(self.shuffled, live))
            assert set(reached) == set(settled)
            allowed = {ACTIVE, RULED_OUT, *HELD_BACK.values()}
            assert {k: v for k, v in settled.items() if v not in allowed} == {}
            assert {k: v for k, v in reached.items() if v not in allowed} == {}
            # The offers the policy cannot hold back: as in-order delivery left them.
            assert {k: v for k, v in reached.items() if k[1] not in CAPPED} == {
                k: v for k, v in settled.items() if k[1] not in CAPPED
            }
            # The others: ruled out in both stores or in neither.
            assert {k for k, v in reached.items() if v == RULED_OUT} == {
                k for k, v in settled.items() if v == RULED_OUT
            }
        finally:
            self.run(self.in_order.close())
            self.run(self.shuffled.close())
            self.loop.close()


@pytest.fixture
def two_stores(two_database_urls: tuple[str, str]) -> tuple[str, str]:
    migrate_databases(two_database_urls, DEFINITION.migrations)
    return two_database_urls


def test_any_delivery_order_ends_in_in_order_facts_and_outbound_decisions_settled_on_them(
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
