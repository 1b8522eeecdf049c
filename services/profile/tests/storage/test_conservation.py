"""Merge, split and move conserve holdings: the sum of balances per currency over the parties
involved is the same before and after, on SQLite and PostgreSQL. Facts live per source record,
so identity's decisions move no money: they only change which party a record's facts count for.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from zhike.source.v1 import source_event_pb2 as pb
from zhike_profile.domain.facts import SourceKey
from zhike_runtime.errors import NotFound

from ..profile_harness import Harness
from ..source_facts import account_opened, balance_changed, loan_drawn, source_event

# Each record's accounts: (account, currency, balance in minor units).
HOLDINGS = {
    SourceKey("core", "A-1"): [("A-CNY", "CNY", 12_345_600), ("A-USD", "USD", 600_000)],
    SourceKey("cards", "A-2"): [("A-EUR", "EUR", 150_000)],
    SourceKey("core", "B-1"): [("B-HKD", "HKD", 3_000_000), ("B-USD", "USD", 25_050)],
    SourceKey("wealth", "B-2"): [("B-INV", "CNY", 50_000_000)],
}
LOAN = (SourceKey("loans", "B-3"), "B-MTG", 180_000_000)


async def two_customers(harness: Harness) -> tuple[str, str]:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    for key, holdings in HOLDINGS.items():
        party_id = a if key.source_record_id.startswith("A") else b
        await harness.linked(f"link-{key}", key, party_id, 1)
        for index, (account, currency, balance) in enumerate(holdings):
            system, record = key.source_system, key.source_record_id
            line = pb.PRODUCT_LINE_INVESTMENT if system == "wealth" else pb.PRODUCT_LINE_SAVINGS
            await harness.source(
                source_event(
                    system,
                    record,
                    f"o-{record}-{index}",
                    1,
                    **account_opened(account, currency, line),
                )
            )
            await harness.source(
                source_event(
                    system,
                    record,
                    f"b-{record}-{index}",
                    2,
                    **balance_changed(account, currency, balance),
                )
            )
    loan_key, account, outstanding = LOAN
    await harness.linked("link-loan", loan_key, b, 1)
    await harness.source(source_event("loans", "B-3", "d1", 1, **loan_drawn(account, outstanding)))
    return a, b


async def totals(harness: Harness, *party_ids: str) -> Counter[str]:
    """Per currency, over the distinct parties the ids answer with now."""
    survivors = {(await harness.profile(p)).profile.party_id for p in party_ids}
    total: Counter[str] = Counter()
    for party_id in survivors:
        total.update(await harness.balances(party_id))
    return total


async def test_merge_split_and_move_conserve_holdings_per_currency(harness: Harness) -> None:
    a, b = await two_customers(harness)
    before = await totals(harness, a, b)
    assert before == {
        "CNY": 12_345_600 + 50_000_000 + 180_000_000,
        "USD": 625_050,
        "EUR": 150_000,
        "HKD": 3_000_000,
    }

    await harness.merged("merge", a, [b])
    assert await totals(harness, a, b) == before
    assert await harness.balances(a) == before  # the survivor holds it all
    assert (await harness.profile(b)).profile.party_id == a

    c = str(uuid.uuid4())
    await harness.split("split", c, [(SourceKey("core", "B-1"), 3), (LOAN[0], 3)])
    assert await totals(harness, a, c) == before
    assert await harness.balances(c) == {"HKD": 3_000_000, "USD": 25_050, "CNY": 180_000_000}

    await harness.linked("move", SourceKey("cards", "A-2"), c, 2)
    assert await totals(harness, a, c) == before
    assert (await harness.balances(c))["EUR"] == 150_000
    assert "EUR" not in await harness.balances(a)


async def test_the_events_of_a_merge_tell_the_money_moving_not_appearing(
    harness: Harness,
) -> None:
    a, b = await two_customers(harness)
    told_before = len(await harness.changes())

    await harness.merged("merge", a, [b])

    merge_changes = (await harness.changes())[told_before:]
    assert {c.party_id for c in merge_changes} == {a, b}
    (retired,) = [c for c in merge_changes if c.party_id == b]
    assert retired.merged_into_party_id == a
    moved_out: Counter[str] = Counter()
    moved_in: Counter[str] = Counter()
    for change in merge_changes:
        for fact in change.facts:
            if fact.HasField("balance_changed"):
                delta = (
                    fact.balance_changed.after_minor_units - fact.balance_changed.before_minor_units
                )
                side = fact.balance_changed.side
                key = f"{fact.balance_changed.currency_code}/{side}"
                (moved_in if change.party_id == a else moved_out)[key] += delta
    assert moved_in == Counter({k: -v for k, v in moved_out.items()})


async def test_a_retired_id_whose_records_all_left_in_a_split_is_told_leading_to_the_new_party(
    harness: Harness,
) -> None:
    a, b = await two_customers(harness)
    await harness.merged("merge", a, [b], versions=[1])
    c = str(uuid.uuid4())
    b_records = [(SourceKey("core", "B-1"), 3), (SourceKey("wealth", "B-2"), 3), (LOAN[0], 3)]
    await harness.split("split", c, b_records)
    told_before = len(await harness.changes())

    await harness.merged("re-route", c, [b], versions=[2])

    (retired,) = [ch for ch in (await harness.changes())[told_before:] if ch.party_id == b]
    assert (retired.merged_into_party_id, retired.forwarding_ended) == (c, False)
    assert (await harness.profile(b)).profile.party_id == c


async def test_a_retired_id_whose_forwarding_ended_is_told_so_and_its_records_stay_kept(
    harness: Harness,
) -> None:
    a, b = await two_customers(harness)
    await harness.merged("merge", a, [b], versions=[1])
    before = await totals(harness, a, b)
    c = str(uuid.uuid4())
    await harness.split("split", c, [(SourceKey("core", "B-1"), 3)])
    told_before = len(await harness.changes())

    await harness.forwarding_ended("end", b, a, 2)

    (retired,) = [ch for ch in (await harness.changes())[told_before:] if ch.party_id == b]
    assert (retired.merged_into_party_id, retired.forwarding_ended) == (a, True)
    with pytest.raises(NotFound):
        await harness.profile(b)
    # B-2 and the loan did not leave with the split: they stay with the party kept.
    assert await totals(harness, a, c) == before
    assert await harness.balances(c) == {"HKD": 3_000_000, "USD": 25_050}
