"""SimulateOffer over real storage (SQLite and PostgreSQL): a draft's reach among offers' own
projection, stage by stage, the contacts it would make and the live offers it competes with."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from zhike_offers.storage import schema
from zhike_runtime.errors import InvalidArgument

from ..domain.builders import document
from ..offers_harness import Harness
from ..profile_events import changed, risk, segment, sms_marketing, usd


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url)
    # 10 C3 USD holders, 5 C1 USD holders (unsuitable for R2), 5 without USD.
    for n in range(20):
        party_id = str(uuid.UUID(int=n + 1))
        level, dollars = (3, 6000) if n < 10 else (1, 6000) if n < 15 else (3, 0)
        facts = [sms_marketing(), risk(level), usd(dollars)]
        if n % 2 == 0:
            facts.append(segment("usd_holder"))
        await started.deliver(f"e{n}", changed(party_id, 1, *facts))
    yield started
    await started.close()


def draft() -> dict[str, object]:
    found = document(
        "usd_draft",
        product_risk=2,
        channels=["sms", "mobile_app"],
        outbound=True,
        templates={"sms": "usd_draft_sms"},
        eligibility=['assets["USD"] >= 5000.0'],
        contact_limits={"max_contacts": 2, "window_days": 30},
        valid_from="2030-01-01T00:00:00+08:00",  # not live yet: simulated as if it were
    )
    del found["version"]
    return found


async def test_a_draft_is_counted_stage_by_stage_against_the_live_offers(
    harness: Harness,
) -> None:
    before = await harness.count(schema.decision_log)

    result = await harness.admin.simulate(draft(), 0, "")

    assert (result.population_size, result.sample_size) == (20, 20)
    assert (result.eligible, result.applicable, result.suitable, result.contactable) == (
        15,
        15,
        10,
        10,
    )
    # The offer's own cap (2 in 30 days) is the tightest pace: 10 parties x 2/30 a day.
    assert result.expected_contacts_per_day == pytest.approx(10 * 2 / 30)
    # Live offers that are candidates beside it for the same parties: the USD offer (for the
    # ten it suits) and the promotion everyone sees in the app.
    assert {offer.offer_id: overlap for offer, overlap in result.competing} == {
        "usd_fx_wealth": 10,
        "time_deposit_promo": 10,
    }
    assert await harness.count(schema.decision_log) == before  # stores nothing


async def test_a_segment_narrows_the_population(harness: Harness) -> None:
    result = await harness.admin.simulate(draft(), 4, "usd_holder")

    assert (result.population_size, result.sample_size) == (10, 4)


async def test_a_sample_above_the_maximum_is_refused_naming_the_field(harness: Harness) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await harness.admin.simulate(draft(), harness.admin.max_sample_size + 1, "")
    assert [v.field for v in caught.value.violations] == ["sample_size"]
