"""The customer's age, as the profile's AgeChanged tells it, over real storage (SQLite and
PostgreSQL): the shipped balanced fund is for customers known to be adults, turning 18 decides
it, an age that leaves the party or passes a rule's upper bound withdraws what it allowed, and a
late or repeated age never overwrites a newer one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from zhike.offers.v1 import offers_pb2
from zhike.profile.v1 import events_pb2 as pb
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_offers.domain.decision import Reason

from ..domain.builders import catalogue, offer
from ..offers_harness import Harness
from ..profile_events import age, balance, changed, consent, risk, sms_marketing

MINOR = str(uuid.UUID(int=1))
ADULT = str(uuid.UUID(int=2))
FUND = "balanced_equity_fund"  # shipped: R4, CNY 50,000 or more, `age >= 18`, outbound by e-mail


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url)
    yield started
    await started.close()


def fund_customer() -> list[pb.ProfileFact]:
    """Everything the balanced fund asks but an age: CNY 60,000, a valid C4 assessment, marketing
    by e-mail."""
    return [
        balance("CNY", 6_000_000),
        risk(4),
        consent(source_pb.CONTACT_CHANNEL_EMAIL, True),
    ]


async def fund_decided_by_email(harness: Harness, party_id: str) -> list[int]:
    """The profile versions of the fund's OfferDecided for the party, in order."""
    return [
        d.profile_version
        for d in await harness.decided()
        if (d.party_id, d.offer_id, d.channel) == (party_id, FUND, offers_pb2.CHANNEL_EMAIL)
    ]


async def test_a_minor_is_not_offered_the_balanced_fund_and_an_adult_with_the_same_facts_is(
    harness: Harness,
) -> None:
    await harness.deliver("e1", changed(MINOR, 1, *fund_customer(), age(16)))
    await harness.deliver("e2", changed(ADULT, 1, *fund_customer(), age(40)))

    for_minor = await harness.decide(MINOR, "mobile_app", placement="wealth_tab", max_offers=20)
    for_adult = await harness.decide(ADULT, "mobile_app", placement="wealth_tab", max_offers=20)

    assert FUND not in {item.chosen.offer_id for item in for_minor.offers}
    [why] = [n for n in for_minor.decision.not_chosen if n.offer_id == FUND]
    assert (why.reason, why.clause_index, why.clause_text) == (
        Reason.INELIGIBLE,
        1,
        "age >= 18",
    )
    assert FUND in {item.chosen.offer_id for item in for_adult.offers}
    # Outbound too: the adult's e-mail, none for the minor.
    assert await fund_decided_by_email(harness, ADULT) == [1]
    assert await fund_decided_by_email(harness, MINOR) == []


async def test_a_customer_of_unknown_age_is_not_offered_the_balanced_fund(
    harness: Harness,
) -> None:
    # No birth date on the golden record: the bank cannot tell the customer is of age.
    await harness.deliver("e1", changed(ADULT, 1, *fund_customer()))

    decided = await harness.decide(ADULT, "mobile_app", placement="wealth_tab", max_offers=20)

    [why] = [n for n in decided.decision.not_chosen if n.offer_id == FUND]
    assert (why.reason, why.clause_index) == (Reason.INELIGIBLE, 1)
    assert await fund_decided_by_email(harness, ADULT) == []


async def test_turning_18_decides_the_balanced_fund_by_email(harness: Harness) -> None:
    await harness.deliver("e1", changed(MINOR, 1, *fund_customer(), age(17)))
    assert await fund_decided_by_email(harness, MINOR) == []

    # The profile's daily refresh on the birthday tells the age alone.
    await harness.deliver("e2", changed(MINOR, 2, age(18, before=17)))

    assert await fund_decided_by_email(harness, MINOR) == [2]
    facts = await harness.facts(MINOR)
    assert facts is not None
    assert facts.age == 18


async def test_a_late_or_repeated_age_never_overwrites_a_newer_one(harness: Harness) -> None:
    older = changed(ADULT, 1, *fund_customer(), age(17))
    newer = changed(ADULT, 2, age(18, before=17))
    await harness.deliver("e2", newer)
    await harness.deliver("e1", older)  # late
    await harness.deliver("copy-e1", older)  # republished under another event id

    facts = await harness.facts(ADULT)
    assert facts is not None
    assert (facts.profile_version, facts.age) == (2, 18)
    assert await harness.withdrawn() == []


async def test_an_age_no_longer_known_withdraws_the_fund_as_ineligible(harness: Harness) -> None:
    await harness.deliver("e1", changed(ADULT, 1, *fund_customer(), age(40)))
    assert await fund_decided_by_email(harness, ADULT) == [1]

    # The birth date left the party (a record split off it, say).
    await harness.deliver("e2", changed(ADULT, 2, age(None, before=40)))
    await harness.deliver("e1-again", changed(ADULT, 1, *fund_customer(), age(40)))  # late

    [withdrawn] = await harness.withdrawn()
    assert (withdrawn.offer_id, withdrawn.reason) == (FUND, offers_pb2.WITHDRAW_REASON_INELIGIBLE)
    assert withdrawn.detail == "eligibility[1] is false: age >= 18"
    facts = await harness.facts(ADULT)
    assert facts is not None
    assert facts.age is None
    decided = await harness.decide(ADULT, "mobile_app", placement="wealth_tab", max_offers=20)
    assert FUND not in {item.chosen.offer_id for item in decided.offers}


async def test_passing_a_rules_upper_age_bound_withdraws_the_outbound_offer(
    database_url: str,
) -> None:
    # An offer whose rule reads age but whose depends_on does not list it: reading is enough.
    young = offer(
        "young_saver",
        channels=["sms"],
        templates={"sms": "offer_young_saver_sms_v1"},
        outbound=True,
        eligibility=["age >= 18 && age < 26"],
    )
    harness = await Harness.start(database_url, catalogue(young))
    try:
        await harness.deliver("e1", changed(ADULT, 1, sms_marketing(), age(25)))
        [decided] = await harness.decided()

        await harness.deliver("e2", changed(ADULT, 2, age(26, before=25)))

        [withdrawn] = await harness.withdrawn()
        assert withdrawn.decision_id == decided.decision_id
        assert withdrawn.reason == offers_pb2.WITHDRAW_REASON_INELIGIBLE
        assert withdrawn.profile_version == 2
    finally:
        await harness.close()
