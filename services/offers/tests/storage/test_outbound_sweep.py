"""The outbound sweep over SQLite and PostgreSQL: an outbound offer that goes live reaches the
parties it suits without a profile change, once, in chunks that carry on where the last one
committed; parties merged away are left out."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from zhike.offers.v1 import offers_pb2
from zhike_offers.domain.catalogue import Catalogue, compile_offer
from zhike_offers.domain.sweep import SweepState

from ..domain.builders import document, shared_environment
from ..offers_harness import Harness
from ..profile_events import T0, changed, sms_marketing, usd

DAY = dt.timedelta(days=1)
PARTIES = [str(uuid.UUID(int=i)) for i in range(1, 6)]
# Parties 1, 3 and 5 hold USD 6,000; 2 and 4 hold none.
USD_HOLDERS = PARTIES[0::2]


def usd_offer(offer_id: str = "usd_new", **fields: Any) -> dict[str, Any]:
    """A marketing SMS offer for USD holders, with `fields` replaced."""
    base: dict[str, Any] = {
        "channels": ["sms"],
        "outbound": True,
        "templates": {"sms": f"{offer_id}_sms"},
        "eligibility": ['assets["USD"] >= 5000.0'],
    }
    return document(offer_id, **(base | fields))


def catalogue_of(*documents: dict[str, Any]) -> Catalogue:
    environment = shared_environment()
    return Catalogue([compile_offer(d, environment) for d in documents], environment)


# What the bank offered before: an app offer, so no profile change decides anything outbound.
BEFORE = catalogue_of(document("app_banner"))


async def customers(harness: Harness) -> None:
    for number, party_id in enumerate(PARTIES, start=1):
        holds = usd(6000) if party_id in USD_HOLDERS else usd(0)
        await harness.deliver(f"e{number}", changed(party_id, 1, sms_marketing(), holds))


async def decided_for(harness: Harness) -> list[tuple[str, str]]:
    return sorted((d.party_id, d.offer_id) for d in await harness.decided())


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url, BEFORE, sweep_chunk=2)
    await customers(started)
    assert await started.sweep.sweep() == 0  # the first look: what is live is its start
    yield started
    await started.close()


async def test_a_new_outbound_offer_is_decided_for_the_parties_it_suits_without_a_profile_change(
    harness: Harness,
) -> None:
    await harness.admin.create(usd_offer())
    assert await decided_for(harness) == []

    assert await harness.sweep.sweep() == len(PARTIES)

    assert await decided_for(harness) == [(p, "usd_new") for p in USD_HOLDERS]
    [decided, *_] = await harness.decided()
    assert (decided.channel, decided.template_id) == (offers_pb2.CHANNEL_SMS, "usd_new_sms")
    assert decided.profile_version == 1  # the facts it was decided on


async def test_a_finished_sweep_decides_nothing_more_until_another_offer_goes_live(
    harness: Harness,
) -> None:
    await harness.admin.create(usd_offer())
    await harness.sweep.sweep()

    assert await harness.sweep.sweep() == 0
    assert len(await harness.decided()) == len(USD_HOLDERS)


async def test_an_offer_is_swept_for_when_its_window_opens(database_url: str) -> None:
    opens = T0 + 2 * DAY
    harness = await Harness.start(
        database_url, catalogue_of(usd_offer(valid_from=opens.isoformat())), sweep_chunk=2
    )
    try:
        await customers(harness)
        assert await harness.sweep.sweep() == 0
        harness.now = opens - dt.timedelta(seconds=1)
        assert await harness.sweep.sweep() == 0
        assert await decided_for(harness) == []

        harness.now = opens
        assert await harness.sweep.sweep() == len(PARTIES)

        assert await decided_for(harness) == [(p, "usd_new") for p in USD_HOLDERS]
    finally:
        await harness.close()


async def test_a_sweep_carries_on_after_the_last_party_its_stored_state_names(
    harness: Harness,
) -> None:
    created = await harness.admin.create(usd_offer())
    # As a replica that stopped after committing the chunk that ended with party 3 left it.
    async with harness.unit() as unit:
        await unit.sweeps.put(
            SweepState(
                frozenset({f"usd_new:{created.offer.version}"}),
                frozenset({"usd_new"}),
                PARTIES[2],
                finished=False,
            ),
            T0,
        )
        await unit.commit()

    assert await harness.sweep.sweep() == 2

    assert await decided_for(harness) == [(PARTIES[4], "usd_new")]


async def test_a_party_merged_away_is_not_swept(harness: Harness) -> None:
    merged, survivor = USD_HOLDERS[0], PARTIES[1]
    await harness.deliver("merge", changed(merged, 2, merged_into=survivor))
    await harness.admin.create(usd_offer())

    assert await harness.sweep.sweep() == len(PARTIES) - 1

    assert merged not in {party_id for party_id, _ in await decided_for(harness)}


async def test_a_sweep_keeps_to_the_contact_policy_of_a_party_already_at_its_budget(
    harness: Harness,
) -> None:
    # Two marketing offers decided for party 1 today: the default budget's two in 7 days.
    for name in ("first", "second"):
        await harness.admin.create(usd_offer(f"usd_{name}"))
        await harness.sweep.sweep()
    assert sum(d.party_id == USD_HOLDERS[0] for d in await harness.decided()) == 2

    await harness.admin.create(usd_offer())
    await harness.sweep.sweep()

    assert (USD_HOLDERS[0], "usd_new") not in await decided_for(harness)


async def test_two_replicas_sweeping_at_once_decide_each_party_once(harness: Harness) -> None:
    other = Harness(harness.database, BEFORE, now=harness.now, sweep_chunk=2)
    await harness.admin.create(usd_offer())

    swept = await asyncio.gather(harness.sweep.sweep(), other.sweep.sweep())
    await other.store.close()

    # Each chunk was taken by one of them: between them, each party once.
    assert sum(swept) == len(PARTIES)
    assert await decided_for(harness) == [(p, "usd_new") for p in USD_HOLDERS]


async def test_a_sweep_decides_only_the_offers_gone_live_not_those_decided_before(
    database_url: str,
) -> None:
    # Three USD offers live from the start; the budget (2 in 7 days) lets two of them through
    # at the profile change. A week later the budget has room again, and a fourth goes live.
    before = catalogue_of(
        usd_offer("usd_a", value="300"), usd_offer("usd_b", value="200"), usd_offer("usd_c")
    )
    harness = await Harness.start(database_url, before, sweep_chunk=2)
    try:
        party_id = USD_HOLDERS[0]
        await harness.deliver("e1", changed(party_id, 1, sms_marketing(), usd(6000)))
        assert await harness.sweep.sweep() == 0
        assert await decided_for(harness) == [(party_id, "usd_a"), (party_id, "usd_b")]

        harness.now = T0 + 8 * DAY
        await harness.admin.create(usd_offer())
        assert await harness.sweep.sweep() == 1

        # Not usd_c: it was decided on (and left out) at the profile change, as before.
        assert [d.offer_id for d in await harness.decided()] == ["usd_a", "usd_b", "usd_new"]
    finally:
        await harness.close()
