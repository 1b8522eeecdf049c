"""Notifications' messages as the party's contacts, over real storage (SQLite and PostgreSQL):
one message is one contact whichever of its NotificationSent and NotificationDelivered comes
first; the message of an outbound decision offers made is not counted again; a message of any
other offer is an impression the budget counts; none teaches the propensity model."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from zhike_offers.domain.contact_policy import ContactKind
from zhike_offers.domain.decision import Reason
from zhike_offers.domain.model import MessageSent
from zhike_offers.storage import schema

from ..domain.builders import document
from ..offers_harness import Harness, default_catalogue
from ..profile_events import T0, changed, risk, sms_marketing, usd

PARTY = str(uuid.UUID(int=11))
FX = "usd_fx_wealth"  # marketing, outbound on sms
TRAVEL_CARD = "fx_travel_debit_card"  # marketing, outbound on push
BUDGET = "budget: 2 marketing contacts in the last 7 days (limit 2)"


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url)
    yield started
    await started.close()


def sent(
    offer_id: str = TRAVEL_CARD,
    *,
    decision_id: str = "",
    channel: str = "push",
    at: dt.datetime = T0,
    notification_id: str | None = None,
) -> MessageSent:
    return MessageSent(
        notification_id=notification_id or str(uuid.uuid4()),
        party_id=PARTY,
        channel=channel,
        decision_id=decision_id,
        offer_id=offer_id,
        at=at,
    )


async def fx_decided_outbound(harness: Harness) -> str:
    """The FX story's first step: the party is decided the SMS offer (one budget contact)."""
    await harness.deliver("p1", changed(PARTY, 1, sms_marketing(), risk(3), usd(6000)))
    [decided] = await harness.decided()
    assert decided.offer_id == FX
    return decided.decision_id


async def sms_budget_explanation(harness: Harness) -> str | None:
    """Why DecideOffers on sms holds the FX offer back, if it is the budget."""
    decided = await harness.decide(PARTY, "sms", max_offers=5, explain=True)
    for item in decided.decision.not_chosen:
        if item.offer_id == FX and item.reason is Reason.SUPPRESSED:
            return item.explanation
    return None


async def contacts(harness: Harness) -> list[tuple[str, str]]:
    async with harness.unit() as unit:
        found = await unit.contacts.histories([PARTY], T0 - dt.timedelta(days=1))
    return sorted((event.offer_id, event.kind.value) for event in found.get(PARTY, []))


async def test_the_message_of_an_outbound_decision_is_not_counted_twice(
    harness: Harness,
) -> None:
    decision_id = await fx_decided_outbound(harness)
    message = sent(FX, decision_id=decision_id, channel="sms")

    assert await harness.message_sent(message)
    # Its receipt, and a repeat of the send, are the same message.
    assert not await harness.message_sent(dataclasses.replace(message, at=T0 + dt.timedelta(1)))
    assert not await harness.message_sent(message)

    assert await contacts(harness) == [(FX, "decided_outbound"), (FX, "delivered")]
    # One marketing contact so far (the decision's): one campaign message fills the budget of 2.
    assert await sms_budget_explanation(harness) is None
    assert await harness.message_sent(sent())
    assert await sms_budget_explanation(harness) == BUDGET


async def test_a_message_of_an_offer_not_decided_outbound_counts_once_toward_the_budget(
    harness: Harness,
) -> None:
    await harness.deliver("p1", changed(PARTY, 1, sms_marketing(), risk(3)))  # not eligible
    first, second = sent(), sent()
    for message in (first, first, second, dataclasses.replace(second, at=T0 + dt.timedelta(1))):
        await harness.message_sent(message)

    assert await contacts(harness) == [(TRAVEL_CARD, "impression")] * 2
    await harness.deliver("p2", changed(PARTY, 2, usd(6000)))
    # Eligible now, but two marketing messages went out this week: nothing is decided outbound.
    assert await harness.decided() == []
    assert await sms_budget_explanation(harness) == BUDGET


async def test_a_message_naming_no_offer_or_an_unknown_one_is_no_contact_of_offers(
    harness: Harness,
) -> None:
    assert not await harness.message_sent(sent(""))
    assert not await harness.message_sent(sent("no_such_offer"))
    assert await harness.count(schema.contact_event) == 0


async def test_a_message_naming_another_partys_decision_counts_as_an_impression(
    harness: Harness,
) -> None:
    await harness.deliver(
        "o1", changed(str(uuid.UUID(int=12)), 1, sms_marketing(), risk(3), usd(6000))
    )
    [decided] = await harness.decided()
    await harness.message_sent(sent(FX, decision_id=decided.decision_id, channel="sms"))
    assert await contacts(harness) == [(FX, "impression")]


async def test_a_delivered_message_teaches_the_propensity_model_nothing(
    harness: Harness,
) -> None:
    decision_id = await fx_decided_outbound(harness)
    await harness.message_sent(sent(FX, decision_id=decision_id, channel="sms"))
    await harness.message_sent(sent())
    async with harness.unit() as unit:
        assert await unit.propensity.counts() == {}
    assert ContactKind.DELIVERED.value in dict(await contacts(harness)).values()


async def test_the_budget_forgets_a_message_after_its_window(harness: Harness) -> None:
    await harness.deliver("p1", changed(PARTY, 1, sms_marketing(), risk(3), usd(1)))
    await harness.message_sent(sent(at=T0))
    await harness.message_sent(sent(at=T0))
    harness.now = T0 + dt.timedelta(days=7, seconds=1)
    await harness.deliver("p2", changed(PARTY, 2, usd(6000)))
    [decided] = await harness.decided()
    assert decided.offer_id == FX
    assert await sms_budget_explanation(harness) is None


async def test_a_message_of_an_offer_saved_on_another_replica_moments_ago_counts(
    harness: Harness,
) -> None:
    # This replica loaded the catalogue before another replica created the offer, and has not
    # refreshed since: the message notifications sent of it is still this party's contact.
    other_replica = Harness(harness.database, default_catalogue())
    try:
        await other_replica.catalogues.get()
        await harness.admin.create(
            document("app_launch", channels=["mobile_app", "push"], templates={"push": "l"})
        )

        assert await other_replica.message_sent(sent("app_launch"))

        assert await contacts(harness) == [("app_launch", "impression")]
    finally:
        await other_replica.store.close()


async def test_retention_keeps_the_contacts_an_offer_saved_on_another_replica_looks_back_at(
    harness: Harness,
) -> None:
    # An impression 250 days ago: past every window of the shipped catalogue (181 days at most),
    # inside the year of an offer another replica has just saved. This replica's cache
    # predates that save.
    other_replica = Harness(harness.database, default_catalogue(), retention_days=180)
    try:
        await other_replica.catalogues.get()
        assert await harness.message_sent(sent(at=T0 - dt.timedelta(days=250)))
        await harness.admin.create(
            document("long_memory", contact_limits={"max_contacts": 1, "window_days": 365})
        )

        await other_replica.retention.prune()

        assert await harness.count(schema.contact_event) == 1
    finally:
        await other_replica.store.close()


async def test_a_message_to_a_party_merged_away_since_is_its_survivors_contact(
    harness: Harness,
) -> None:
    survivor = str(uuid.UUID(int=12))
    await harness.deliver("s1", changed(survivor, 1, usd(10)))
    await harness.deliver("m1", changed(PARTY, 1, merged_into=survivor))

    assert await harness.message_sent(sent())  # sent before the merge, told after it

    async with harness.unit() as unit:
        found = await unit.contacts.histories([PARTY, survivor], T0 - dt.timedelta(days=1))
    assert {party: [e.offer_id for e in events] for party, events in found.items()} == {
        survivor: [TRAVEL_CARD]
    }
