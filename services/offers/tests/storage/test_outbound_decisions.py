"""ProfileChanged → outbound decisions and withdrawals, over real storage (SQLite and
PostgreSQL): the FX story, the budget under a storm of changes, retirement (also by another
replica, before or while one decides), an offer's window closing, merges, the customer's
switches, and redelivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import sqlalchemy as sa

from zhike.offers.v1 import offers_pb2
from zhike_offers.domain.catalogue import Catalogue, compile_offer
from zhike_offers.domain.contact_policy import ContactKind
from zhike_offers.domain.model import DecisionTrigger, MessageSent, ResponseRecord, StoredOffer
from zhike_offers.domain.service import OfferExpiry
from zhike_offers.storage import schema
from zhike_offers.storage.repository import SqlOffersUnitOfWork, SqlPartyStore
from zhike_runtime.errors import InvalidArgument, NotFound
from zhike_runtime.events.schema import outbox_event
from zhike_runtime.testing.processes import PostgresCluster

from ..domain.builders import document, shared_environment
from ..offers_harness import Harness, default_catalogue
from ..profile_events import (
    T0,
    changed,
    holding,
    risk,
    risk_expired,
    sms_marketing,
    tier,
    usd,
)

PARTY = str(uuid.UUID(int=1))
SURVIVOR = str(uuid.UUID(int=2))
FX_OFFER = "usd_fx_wealth"


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url)
    yield started
    await started.close()


async def fx_customer_gets_usd(harness: Harness, version: int = 1) -> None:
    """A C3 customer with a valid assessment who takes marketing by SMS receives USD 6,000."""
    await harness.deliver(
        f"e{version}", changed(PARTY, version, sms_marketing(), risk(3), usd(6000))
    )


async def offered_in_the_app(harness: Harness, party_id: str = PARTY) -> set[str]:
    decided = await harness.decide(party_id, "mobile_app", placement="wealth_tab", max_offers=20)
    return {item.chosen.offer_id for item in decided.offers}


async def test_usd_6000_decides_the_usd_fx_offer_once_on_sms_with_its_template(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    # More of the same changes nothing: the decision holds and stays the one decision.
    await harness.deliver("e2", changed(PARTY, 2, usd(7000)))
    await harness.deliver("e3", changed(PARTY, 3, tier("gold")))

    decided = await harness.decided()
    assert [(d.offer_id, d.channel, d.template_id) for d in decided] == [
        (FX_OFFER, offers_pb2.CHANNEL_SMS, "offer_usd_fx_wealth_sms_v1")
    ]
    assert decided[0].party_id == PARTY
    assert decided[0].profile_version == 1
    assert decided[0].offer_version == 1
    assert decided[0].category == offers_pb2.OFFER_CATEGORY_MARKETING
    assert await harness.withdrawn() == []


async def test_usd_gone_withdraws_the_decision_and_decide_offers_no_longer_returns_it(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    assert FX_OFFER in await offered_in_the_app(harness)
    [decided] = await harness.decided()

    await harness.deliver("e2", changed(PARTY, 2, usd(0)))

    [withdrawn] = await harness.withdrawn()
    assert withdrawn.decision_id == decided.decision_id
    assert withdrawn.offer_id == FX_OFFER
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_INELIGIBLE
    assert withdrawn.detail == 'eligibility[0] is false: assets["USD"] >= 5000.0'
    assert withdrawn.profile_version == 2
    assert FX_OFFER not in await offered_in_the_app(harness)


async def test_an_offer_no_longer_outbound_withdraws_its_outbound_decisions(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    [decided] = await harness.decided()
    fx = (await harness.admin.get(FX_OFFER)).offer.to_document()
    fx["outbound"] = False  # the bank stops pushing it; the app may still show it

    await harness.admin.update(fx, expected_version=1)

    [withdrawn] = await harness.withdrawn()
    assert (withdrawn.decision_id, withdrawn.reason) == (
        decided.decision_id,
        offers_pb2.WITHDRAW_REASON_RETIRED,
    )
    assert withdrawn.detail == "not an outbound offer"


async def test_an_impression_reported_for_an_outbound_decisions_message_is_not_counted_again(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    [decided] = await harness.decided()

    await harness.decisions.record_response(
        ResponseRecord(
            str(uuid.uuid4()),
            decided.decision_id,
            FX_OFFER,
            PARTY,
            ContactKind.IMPRESSION,
            "sms",
            harness.now,
        )
    )

    async with harness.unit() as unit:
        found = await unit.contacts.histories([PARTY], harness.now - dt.timedelta(days=1))
    # The SMS counted once, by its decision; the report of it counts toward nothing.
    assert sorted(event.kind for event in found[PARTY]) == [
        ContactKind.DECIDED_OUTBOUND,
        ContactKind.DELIVERED,
    ]


async def test_an_expired_risk_assessment_withdraws_the_investment_offer(harness: Harness) -> None:
    await fx_customer_gets_usd(harness)
    # The profile says it expired today, whatever offers' own clock would say.
    await harness.deliver("e2", changed(PARTY, 2, risk_expired(3, dt.date(2027, 6, 30))))

    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_UNSUITABLE
    assert FX_OFFER not in await offered_in_the_app(harness)


async def test_sms_consent_withdrawn_withdraws_the_sms_decision(harness: Harness) -> None:
    await fx_customer_gets_usd(harness)
    await harness.deliver("e2", changed(PARTY, 2, sms_marketing(False)))

    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_CONSENT_WITHDRAWN


async def test_buying_the_product_withdraws_the_offer_as_not_applicable(harness: Harness) -> None:
    await fx_customer_gets_usd(harness)
    await harness.deliver("e2", changed(PARTY, 2, holding("W-1", "WM_USD_6M")))

    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_NOT_APPLICABLE


def storm_catalogue() -> Catalogue:
    """Four marketing SMS offers for USD holders with caps far above the budget: only the
    budget can hold them back."""
    return Catalogue(
        [
            compile_offer(
                document(
                    f"usd_offer_{n}",
                    channels=["sms"],
                    outbound=True,
                    templates={"sms": f"usd_offer_{n}_sms"},
                    eligibility=['assets["USD"] >= 5000.0'],
                    contact_limits={"max_contacts": 100, "window_days": 30},
                    value=str(100 * (n + 1)),
                ),
                shared_environment(),
            )
            for n in range(4)
        ],
        shared_environment(),
    )


async def test_a_thousand_triggering_changes_in_a_day_decide_at_most_the_budget(
    database_url: str,
) -> None:
    harness = await Harness.start(database_url, storm_catalogue())
    try:
        await harness.deliver("e1", changed(PARTY, 1, sms_marketing(), usd(6000)))
        for version in range(2, 1001):
            harness.now = T0 + dt.timedelta(seconds=80 * version)  # within a day
            amount = 0 if version % 2 == 0 else 6000 + version
            await harness.deliver(f"e{version}", changed(PARTY, version, usd(amount)))

        decided = await harness.decided()
        # The default budget: 2 marketing contacts in 7 days. The two best, once.
        assert [d.offer_id for d in decided] == ["usd_offer_3", "usd_offer_2"]
        withdrawn = await harness.withdrawn()
        assert {w.decision_id for w in withdrawn} == {d.decision_id for d in decided}
    finally:
        await harness.close()


async def test_a_batch_decides_each_party_once_with_the_facts_the_batch_left(
    harness: Harness,
) -> None:
    others = [str(uuid.UUID(int=n)) for n in (11, 12, 13)]
    arrivals = [
        (f"a-{party}", changed(party, 1, sms_marketing(), risk(3), usd(6000))) for party in others
    ]
    # One party's USD comes and goes within the batch; a copy of an event counts once.
    passing = [
        ("p1", changed(PARTY, 1, sms_marketing(), risk(3), usd(6000))),
        ("p2", changed(PARTY, 2, usd(0))),
    ]

    applied = await harness.deliver_batch([*arrivals, *passing, arrivals[0]])

    assert applied == [True] * 5 + [False]
    decided = await harness.decided()
    assert sorted(d.party_id for d in decided) == others
    assert {(d.offer_id, d.profile_version) for d in decided} == {(FX_OFFER, 1)}
    assert await harness.withdrawn() == []
    assert FX_OFFER not in await offered_in_the_app(harness)


async def test_a_storm_of_changes_in_batches_decides_at_most_the_budget(
    database_url: str,
) -> None:
    harness = await Harness.start(database_url, storm_catalogue())
    try:
        await harness.deliver("e1", changed(PARTY, 1, sms_marketing(), usd(6000)))
        # Batches of 25: one ends with the USD gone (withdrawn), the next with it back.
        for first in range(2, 1001, 25):
            harness.now = T0 + dt.timedelta(seconds=80 * first)  # within a day
            await harness.deliver_batch(
                [
                    (f"e{v}", changed(PARTY, v, usd(0 if v % 2 == 0 else 6000 + v)))
                    for v in range(first, first + 25)
                ]
            )

        decided = await harness.decided()
        assert [d.offer_id for d in decided] == ["usd_offer_3", "usd_offer_2"]
        withdrawn = await harness.withdrawn()
        assert {w.decision_id for w in withdrawn} == {d.decision_id for d in decided}
    finally:
        await harness.close()


async def test_retiring_an_offer_withdraws_its_active_decisions(harness: Harness) -> None:
    await fx_customer_gets_usd(harness)
    [decided] = await harness.decided()

    harness.now = T0 + dt.timedelta(hours=1)
    retired = await harness.admin.retire(FX_OFFER, 1, "product closed")

    assert retired.offer.retired
    assert retired.offer.version == 2
    [withdrawn] = await harness.withdrawn()
    assert withdrawn.decision_id == decided.decision_id
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_RETIRED
    assert withdrawn.profile_version == 0
    # Audited: the arbitration the retirement started names the decision it withdrew.
    page = await harness.decisions.list_decisions(PARTY, 10, "")
    assert [e.trigger for e in page.entries] == [
        DecisionTrigger.CATALOGUE_OR_PREFERENCE,
        DecisionTrigger.PROFILE_CHANGE,
    ]
    assert [w.decision_id for w in page.entries[0].withdrawn] == [decided.decision_id]
    assert FX_OFFER not in await offered_in_the_app(harness)


async def test_a_replica_whose_cached_catalogue_predates_a_retirement_decides_without_the_offer(
    harness: Harness,
) -> None:
    # Replicas refresh their catalogue every few seconds: this one loaded it before another
    # replica retired the offer, and has not refreshed since.
    other_replica = Harness(harness.database, default_catalogue())
    try:
        await other_replica.catalogues.get()
        await harness.admin.retire(FX_OFFER, 1, "product closed")

        await fx_customer_gets_usd(other_replica)

        assert await harness.decided() == []
    finally:
        await other_replica.store.close()


async def test_a_retirement_waits_for_a_decision_in_flight_and_withdraws_it(
    postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On another replica, the FX offer is being decided (the party's facts applied, not yet
    # committed) when the admin retires it.
    harness = await Harness.start(postgres_cluster.create_database())
    deciding = Harness(harness.database, default_catalogue())
    apply = SqlPartyStore.apply
    retiring: list[asyncio.Task[StoredOffer]] = []

    async def retired_meanwhile(store: SqlPartyStore, *args: Any, **kwargs: Any) -> Any:
        taken = await apply(store, *args, **kwargs)
        if not retiring:
            retiring.append(
                asyncio.create_task(harness.admin.retire(FX_OFFER, 1, "product closed"))
            )
            await done_or_waiting_for_a_lock(retiring[0], harness)
        return taken

    monkeypatch.setattr(SqlPartyStore, "apply", retired_meanwhile)
    try:
        await deciding.catalogues.get()
        await harness.catalogues.get()
        await fx_customer_gets_usd(deciding)
        await retiring[0]

        [decided] = await harness.decided()
        [withdrawn] = await harness.withdrawn()
        assert withdrawn.decision_id == decided.decision_id
        assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_RETIRED
    finally:
        await deciding.store.close()
        await harness.close()


async def done_or_waiting_for_a_lock(task: asyncio.Task[Any], harness: Harness) -> None:
    """Until `task` has ended, or waits for a lock (held by the caller's transaction)."""
    for _ in range(400):
        if task.done():
            return
        async with harness.database.session() as session:
            if await session.scalar(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the retirement neither ended nor waited for a lock within 20 s")


def closing_catalogue(closes: dt.datetime) -> Catalogue:
    """One marketing SMS offer for USD holders, open until `closes`."""
    closing = document(
        "usd_closing",
        channels=["sms"],
        outbound=True,
        templates={"sms": "usd_closing_sms"},
        eligibility=['assets["USD"] >= 5000.0'],
        valid_until=closes.isoformat(),
    )
    return Catalogue([compile_offer(closing, shared_environment())], shared_environment())


async def test_an_outbound_decision_names_when_its_offer_closes(database_url: str) -> None:
    # Notifications sends nothing of it from then on, before the expiry round withdraws it.
    closes = T0 + dt.timedelta(days=2)
    harness = await Harness.start(database_url, closing_catalogue(closes))
    try:
        await harness.deliver("e1", changed(PARTY, 1, sms_marketing(), usd(6000)))
        [decided] = await harness.decided()

        assert decided.offer_valid_until.ToDatetime(tzinfo=dt.UTC) == closes
    finally:
        await harness.close()


async def test_an_outbound_decision_of_an_offer_that_never_closes_names_no_close(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    decided = await harness.decided()

    assert [d.offer_id for d in decided] == ["usd_fx_wealth"]
    assert not decided[0].HasField("offer_valid_until")


async def test_the_expiry_round_withdraws_the_decisions_of_an_offer_once_its_window_closes(
    database_url: str,
) -> None:
    # Decided on Friday; nothing about the party changes again before the offer closes.
    closes = T0 + dt.timedelta(days=2)
    harness = await Harness.start(database_url, closing_catalogue(closes))
    expiry = OfferExpiry(harness.unit, harness.catalogues, harness.outbound, harness.clock)
    try:
        await harness.deliver("e1", changed(PARTY, 1, sms_marketing(), usd(6000)))
        [decided] = await harness.decided()

        harness.now = closes - dt.timedelta(seconds=1)
        assert await expiry.withdraw_expired() == 0
        harness.now = closes
        assert await expiry.withdraw_expired() == 1
        assert await expiry.withdraw_expired() == 0  # nothing left to withdraw

        [withdrawn] = await harness.withdrawn()
        assert withdrawn.decision_id == decided.decision_id
        assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_EXPIRED
    finally:
        await harness.close()


async def test_a_redelivered_profile_changed_changes_nothing_and_publishes_nothing(
    harness: Harness,
) -> None:
    message = changed(PARTY, 1, sms_marketing(), risk(3), usd(6000))
    await harness.deliver("e1", message)
    facts = await harness.facts(PARTY)
    counts = [
        await harness.count(table)
        for table in (outbox_event, schema.decision_log, schema.contact_event, schema.party_fact)
    ]

    again = await harness.deliver("e1", message)  # the same event id: the inbox absorbs it
    copy = await harness.deliver("e1-republished", message)  # a copy under another id

    assert not again
    assert copy
    assert await harness.facts(PARTY) == facts
    assert [
        await harness.count(table)
        for table in (outbox_event, schema.decision_log, schema.contact_event, schema.party_fact)
    ] == counts
    assert len(await harness.decided()) == 1


async def test_decisions_a_late_change_makes_and_withdraws_name_the_profile_version_made_on(
    harness: Harness,
) -> None:
    # Version 3 (the SMS consent) arrives before version 2 (the USD): the decision is made on
    # version 3's facts. Notifications, its consents as of version 2 (no SMS consent yet), must
    # wait for version 3's rather than believe the refusal and suppress the message.
    await harness.deliver("e1", changed(PARTY, 1, risk(3), sms_marketing(False)))
    await harness.deliver("e3", changed(PARTY, 3, sms_marketing()))
    await harness.deliver("e2", changed(PARTY, 2, usd(6000)))
    # Version 4 (he buys the product) arrives after version 5.
    await harness.deliver("e5", changed(PARTY, 5, tier("gold")))
    await harness.deliver("e4", changed(PARTY, 4, holding("W-1", "WM_USD_6M")))

    [decided] = await harness.decided()
    [withdrawn] = await harness.withdrawn()
    assert (decided.offer_id, decided.profile_version) == (FX_OFFER, 3)
    assert (withdrawn.decision_id, withdrawn.profile_version) == (decided.decision_id, 5)
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_NOT_APPLICABLE


async def test_a_merged_party_has_its_decisions_withdrawn(harness: Harness) -> None:
    await fx_customer_gets_usd(harness)
    await harness.deliver("e2", changed(PARTY, 2, usd(0), merged_into=SURVIVOR))

    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_EXPIRED
    # Nothing is decided for it again, whatever arrives late.
    await harness.deliver("e3", changed(PARTY, 3, usd(9000)))
    assert len(await harness.decided()) == 1


async def test_a_batch_with_a_merge_takes_every_partys_lock_in_one_call_survivor_included(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Locks taken in one call are taken in one global order: a sweep chunk or the expiry round
    # holding some of them can then never wait in a circle with this batch.
    other = str(uuid.UUID(int=3))
    calls: list[list[str]] = []
    take = SqlOffersUnitOfWork.lock

    async def recording(unit: SqlOffersUnitOfWork, names: Iterable[str]) -> None:
        listed = list(names)
        calls.append(sorted(name for name in listed if name.startswith("offers-party:")))
        await take(unit, listed)

    monkeypatch.setattr(SqlOffersUnitOfWork, "lock", recording)
    await harness.deliver_batch(
        [
            ("b1", changed(other, 1, usd(100))),
            ("b2", changed(PARTY, 2, merged_into=SURVIVOR)),
        ]
    )

    first = next(names for names in calls if names)
    assert first == sorted(f"offers-party:{p}" for p in (other, PARTY, SURVIVOR))


async def merge_party_into_survivor(harness: Harness) -> None:
    await harness.deliver("m1", changed(PARTY, 2, merged_into=SURVIVOR))


async def test_a_merge_carries_do_not_contact_to_the_survivor_and_withdraws_its_marketing(
    harness: Harness,
) -> None:
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))
    [decided] = await harness.decided()
    await harness.decisions.set_contact_preferences(PARTY, True, None)  # on his other record

    await merge_party_into_survivor(harness)

    held = await harness.decisions.contact_preferences(SURVIVOR)
    assert held.do_not_contact
    [withdrawn] = await harness.withdrawn()
    assert (withdrawn.decision_id, withdrawn.reason) == (
        decided.decision_id,
        offers_pb2.WITHDRAW_REASON_DO_NOT_CONTACT,
    )
    told = [(c.party_id, c.do_not_contact) for c in await harness.preferences_changed()]
    assert told == [(PARTY, True), (SURVIVOR, True)]


async def test_a_merge_keeps_the_more_restrictive_of_both_parties_switches(
    harness: Harness,
) -> None:
    await harness.decisions.set_contact_preferences(SURVIVOR, True, None, {"sms"})
    await harness.decisions.set_contact_preferences(PARTY, False, False, {"email"})

    await merge_party_into_survivor(harness)

    held = await harness.decisions.contact_preferences(SURVIVOR)
    assert (held.do_not_contact, held.personalised_offers, held.opted_out_channels) == (
        True,
        False,
        frozenset({"sms", "email"}),
    )
    assert held.version == 2


async def test_a_merge_of_a_party_with_default_switches_changes_none_of_the_survivors(
    harness: Harness,
) -> None:
    await harness.decisions.set_contact_preferences(SURVIVOR, True, None)
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))

    await merge_party_into_survivor(harness)

    assert [c.party_id for c in await harness.preferences_changed()] == [SURVIVOR]
    assert (await harness.decisions.contact_preferences(SURVIVOR)).version == 1


async def test_switches_set_on_a_party_merged_away_are_set_on_its_survivor(
    harness: Harness,
) -> None:
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))
    await merge_party_into_survivor(harness)

    answered = await harness.decisions.set_contact_preferences(PARTY, True, None)

    assert (answered.party_id, answered.do_not_contact) == (SURVIVOR, True)
    assert (await harness.decisions.contact_preferences(PARTY)).party_id == SURVIVOR
    assert (await harness.decisions.contact_preferences(SURVIVOR)).do_not_contact
    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_DO_NOT_CONTACT


async def declined_in_the_app(harness: Harness, asked_as: str) -> None:
    """The customer's app, holding `asked_as`, is shown the FX offer and declines it."""
    decided = await harness.decide(asked_as, "mobile_app", placement="wealth_tab", max_offers=20)
    fx = next(item for item in decided.offers if item.chosen.offer_id == FX_OFFER)
    duplicate = await harness.decisions.record_response(
        ResponseRecord(
            str(uuid.uuid4()),
            fx.decision_id,
            FX_OFFER,
            asked_as,
            ContactKind.DECLINE,
            "mobile_app",
            harness.now,
        )
    )
    assert duplicate is False


async def test_a_decline_on_the_party_merged_away_keeps_its_survivor_in_the_cool_down(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    await declined_in_the_app(harness, PARTY)

    await merge_party_into_survivor(harness)
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))

    assert FX_OFFER not in await offered_in_the_app(harness, SURVIVOR)
    assert [d.party_id for d in await harness.decided()] == [PARTY]


async def test_a_merge_that_changes_the_survivors_switches_decides_it_with_the_contacts_moved(
    harness: Harness,
) -> None:
    # The survivor's budget is full this week: its FX offer waits.
    for _ in range(2):
        campaign = MessageSent(str(uuid.uuid4()), SURVIVOR, "push", "", "fx_travel_debit_card", T0)
        assert await harness.message_sent(campaign)
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))
    # His other record declines the FX offer and opts out of e-mail.
    await fx_customer_gets_usd(harness)
    await declined_in_the_app(harness, PARTY)
    await harness.decisions.set_contact_preferences(PARTY, None, None, {"email"})
    assert [d.party_id for d in await harness.decided()] == [PARTY]

    harness.now = T0 + dt.timedelta(days=8)  # the survivor's week is over; the decline's
    await merge_party_into_survivor(harness)  # 90-day cool-down is not

    assert (await harness.decisions.contact_preferences(SURVIVOR)).opted_out_channels == {"email"}
    assert [d.party_id for d in await harness.decided()] == [PARTY]


async def test_decide_offers_for_a_party_merged_away_decides_on_its_survivors_facts(
    harness: Harness,
) -> None:
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))
    await merge_party_into_survivor(harness)

    assert FX_OFFER in await offered_in_the_app(harness, PARTY)


async def test_decide_offers_for_a_party_merged_away_obeys_its_survivors_personalised_switch(
    harness: Harness,
) -> None:
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))
    await merge_party_into_survivor(harness)
    await harness.decisions.set_contact_preferences(SURVIVOR, None, False)

    decided = await harness.decide(PARTY, "mobile_app", placement="wealth_tab", max_offers=20)

    assert decided.decision.personalised is False


NEW_PARTY = str(uuid.UUID(int=3))  # the party a split at identity gives the retired id's records


async def declined_then_merged(harness: Harness) -> None:
    """PARTY declines the FX offer in the app and is merged into SURVIVOR; SURVIVOR and
    NEW_PARTY would both be offered it."""
    await fx_customer_gets_usd(harness)
    await declined_in_the_app(harness, PARTY)
    await merge_party_into_survivor(harness)
    for party_id in (SURVIVOR, NEW_PARTY):
        await harness.deliver(
            f"{party_id}-1", changed(party_id, 1, sms_marketing(), risk(3), usd(6000))
        )


async def test_a_retired_id_re_routed_after_a_split_takes_its_decline_to_the_new_party(
    harness: Harness,
) -> None:
    await declined_then_merged(harness)
    assert FX_OFFER not in await offered_in_the_app(harness, SURVIVOR)

    await harness.deliver("re-route", changed(PARTY, 3, merged_into=NEW_PARTY))

    assert FX_OFFER in await offered_in_the_app(harness, SURVIVOR)
    assert FX_OFFER not in await offered_in_the_app(harness, NEW_PARTY)
    decided = await harness.decide(PARTY, "mobile_app", placement="wealth_tab", max_offers=20)
    assert decided.decision.party_id == NEW_PARTY


async def test_an_offer_retired_on_another_replica_is_not_decided_here_a_moment_later(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    other_replica = Harness(harness.database, default_catalogue())
    try:
        assert FX_OFFER in await offered_in_the_app(other_replica)  # its catalogue is loaded

        await harness.admin.retire(FX_OFFER, 1, "product closed")

        # Well inside the other replica's refresh interval, and without a refresh.
        assert FX_OFFER not in await offered_in_the_app(other_replica)
    finally:
        await other_replica.store.close()


async def test_a_decision_waiting_while_another_call_loads_the_new_catalogue_uses_it(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)
    other_replica = Harness(harness.database, default_catalogue())
    try:
        assert FX_OFFER in await offered_in_the_app(other_replica)
        await harness.admin.retire(FX_OFFER, 1, "product closed")
        read = other_replica.store.read

        async def read_after_a_refresh(party_id: str, since: dt.datetime) -> Any:
            # Another call (or the background refresh) loads the new catalogue meanwhile.
            await other_replica.catalogues.refresh()
            return await read(party_id, since)

        other_replica.store.read = read_after_a_refresh  # type: ignore[method-assign]

        assert FX_OFFER not in await offered_in_the_app(other_replica)
    finally:
        await other_replica.store.close()


async def test_a_do_not_contact_lifted_on_the_survivor_stays_lifted_when_the_merge_is_told_again(
    harness: Harness,
) -> None:
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))
    await harness.decisions.set_contact_preferences(PARTY, True, None)
    await merge_party_into_survivor(harness)
    await harness.decisions.set_contact_preferences(SURVIVOR, False, None)

    # The same change republished under another event id: the versions absorb it.
    await harness.deliver("m1-copy", changed(PARTY, 2, merged_into=SURVIVOR))

    assert (await harness.decisions.contact_preferences(SURVIVOR)).do_not_contact is False


async def test_a_contact_recorded_before_offers_0006_follows_its_party_re_routed_after_a_split(
    harness: Harness,
) -> None:
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))
    async with harness.unit() as unit:  # as offers before offers_0006 stored it
        await unit.session.execute(
            sa.insert(schema.contact_event).values(
                contact_id="response:before-the-upgrade",
                party_id=PARTY,
                recorded_party_id=None,
                at=harness.now,
                offer_id=FX_OFFER,
                channel="mobile_app",
                kind="decline",
                marketing=True,
                decision_id=str(uuid.uuid4()),
            )
        )
        await unit.commit()
    await merge_party_into_survivor(harness)

    await harness.deliver("re-route", changed(PARTY, 3, merged_into=NEW_PARTY))

    async with harness.unit() as unit:
        contact = await unit.contacts.get("response:before-the-upgrade")
    assert contact is not None
    assert contact.party_id == NEW_PARTY


async def test_a_retired_id_whose_forwarding_ended_is_not_found_and_its_decline_stays_kept(
    harness: Harness,
) -> None:
    await declined_then_merged(harness)

    await harness.deliver("end", changed(PARTY, 3, merged_into=SURVIVOR, forwarding_ended=True))

    with pytest.raises(NotFound):
        await harness.decide(PARTY, "mobile_app", placement="wealth_tab", max_offers=20)
    with pytest.raises(NotFound):
        await harness.decisions.set_contact_preferences(PARTY, True, None)
    with pytest.raises(NotFound):
        await harness.decisions.contact_preferences(PARTY)
    assert FX_OFFER not in await offered_in_the_app(harness, SURVIVOR)
    assert (await harness.decisions.contact_preferences(SURVIVOR)).do_not_contact is False


async def test_a_decline_through_the_id_merged_away_keeps_the_survivor_in_the_cool_down(
    harness: Harness,
) -> None:
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))
    await merge_party_into_survivor(harness)

    await declined_in_the_app(harness, PARTY)  # the app still holds the retired id

    assert FX_OFFER not in await offered_in_the_app(harness, SURVIVOR)


async def test_do_not_contact_withdraws_marketing_decisions_and_lifting_it_decides_again(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)

    stopped = await harness.decisions.set_contact_preferences(PARTY, True, None)

    assert stopped.do_not_contact
    assert stopped.version == 1
    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_DO_NOT_CONTACT
    harness.now = T0 + dt.timedelta(days=8)  # past the 7-day budget window
    await harness.decisions.set_contact_preferences(PARTY, False, None)
    assert [d.offer_id for d in await harness.decided()] == [FX_OFFER, FX_OFFER]


async def test_changing_the_switches_publishes_contact_preferences_changed_with_its_version(
    harness: Harness,
) -> None:
    await harness.decisions.set_contact_preferences(PARTY, True, None)
    await harness.decisions.set_contact_preferences(PARTY, True, None)  # no change: no event
    await harness.decisions.set_contact_preferences(PARTY, None, None, {"sms", "email"})

    first, second = await harness.preferences_changed()
    assert (first.party_id, first.do_not_contact, first.preferences_version) == (PARTY, True, 1)
    assert list(first.opted_out_channels) == []
    assert second.preferences_version == 2
    assert second.do_not_contact
    assert second.personalised_offers
    assert list(second.opted_out_channels) == [offers_pb2.CHANNEL_SMS, offers_pb2.CHANNEL_EMAIL]
    assert second.change_time.ToDatetime(dt.UTC) == harness.now


async def test_opting_out_of_sms_withdraws_its_sms_decisions_as_channel_opted_out(
    harness: Harness,
) -> None:
    await fx_customer_gets_usd(harness)

    held = await harness.decisions.set_contact_preferences(PARTY, None, None, {"sms"})

    assert held.opted_out_channels == {"sms"}
    assert (await harness.decisions.contact_preferences(PARTY)).opted_out_channels == {"sms"}
    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_CHANNEL_OPTED_OUT
    # Opting back in (an empty set, not "unchanged") lets the offer be decided again.
    harness.now = T0 + dt.timedelta(days=8)  # past the 7-day budget window
    await harness.decisions.set_contact_preferences(PARTY, None, None, set())
    assert [d.offer_id for d in await harness.decided()] == [FX_OFFER, FX_OFFER]


async def test_an_opted_out_channel_that_is_not_outbound_is_refused_naming_the_field(
    harness: Harness,
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await harness.decisions.set_contact_preferences(PARTY, None, None, {"branch"})

    assert [v.field for v in caught.value.violations] == ["opted_out_channels"]
    assert await harness.preferences_changed() == []


async def test_personalised_offers_off_withdraws_personalised_decisions(harness: Harness) -> None:
    await fx_customer_gets_usd(harness)

    await harness.decisions.set_contact_preferences(PARTY, None, False)

    [withdrawn] = await harness.withdrawn()
    assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_NOT_PERSONALISED
    preferences = await harness.decisions.contact_preferences(PARTY)
    assert not preferences.personalised_offers
    assert not preferences.do_not_contact


async def test_the_default_catalogue_decides_nothing_without_sms_consent(harness: Harness) -> None:
    await harness.deliver("e1", changed(PARTY, 1, risk(3), usd(6000)))
    assert await harness.decided() == []


async def test_a_response_for_a_retired_id_without_following_merges_is_not_found_nor_recorded(
    harness: Harness,
) -> None:
    await harness.deliver("s1", changed(SURVIVOR, 1, sms_marketing(), risk(3), usd(6000)))
    await harness.deliver("p1", changed(PARTY, 1, usd(10)))
    await merge_party_into_survivor(harness)
    decided = await harness.decide(SURVIVOR, "mobile_app", placement="wealth_tab", max_offers=20)
    fx = next(item for item in decided.offers if item.chosen.offer_id == FX_OFFER)
    contacts_before = await harness.count(schema.contact_event)

    with pytest.raises(NotFound):
        await harness.decisions.record_response(
            ResponseRecord(
                str(uuid.uuid4()),
                fx.decision_id,
                FX_OFFER,
                PARTY,
                ContactKind.DECLINE,
                "mobile_app",
                harness.now,
            ),
            follow_merges=False,
        )

    assert await harness.count(schema.contact_event) == contacts_before
