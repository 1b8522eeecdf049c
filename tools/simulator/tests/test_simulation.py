"""The simulated bank, without I/O: deterministic, and every event one the profile accepts (its
own validation, zhike_profile's decode_source_event: the simulator does not depend on the
profile, its tests do, in the workspace) and orders as the contract says."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from zhike.source.v1 import source_event_pb2 as pb
from zhike_profile.transport.source_codec import decode_source_event
from zhike_runtime.validation import Violations
from zhike_simulator.customer import ZONE
from zhike_simulator.simulation import Simulation, simulate

UNTIL = dt.date(2026, 11, 20)
DAYS = 90
ACCOUNT_FACTS = {
    "account_opened",
    "account_closed",
    "balance_changed",
    "transaction_posted",
    "card_issued",
    "card_tier_changed",
    "loan_drawn",
    "loan_repaid",
    "loan_overdue",
    "investment_bought",
    "investment_redeemed",
}
# The facts that carry the balance after them, and the field that holds it.
BALANCE_FIELDS = {
    "balance_changed": "balance_minor_units",
    "loan_drawn": "outstanding_minor_units",
    "loan_repaid": "outstanding_minor_units",
    "investment_bought": "holding_minor_units",
    "investment_redeemed": "holding_minor_units",
}


@cache
def bank(seed: int = 7, customers: int = 200) -> Simulation:
    return simulate(customers, seed, until=UNTIL, days=DAYS)


def fact_of(event: pb.SourceEvent) -> tuple[str, Any]:
    name = event.WhichOneof("fact")
    assert name is not None
    return name, getattr(event, name)


def account_of(event: pb.SourceEvent) -> tuple[str, str, str]:
    _, fact = fact_of(event)
    return (
        event.source_record.source_system,
        event.source_record.source_record_id,
        fact.account_id,
    )


def test_the_same_seed_gives_the_same_bank_byte_for_byte() -> None:
    first, second = simulate(30, 5, until=UNTIL, days=30), simulate(30, 5, until=UNTIL, days=30)
    assert [e.SerializeToString() for e in first.events] == [
        e.SerializeToString() for e in second.events
    ]
    assert [r.record.SerializeToString() for r in first.records] == [
        r.record.SerializeToString() for r in second.records
    ]
    assert first.holdings == second.holdings
    other = simulate(30, 6, until=UNTIL, days=30)
    assert [e.SerializeToString() for e in other.events] != [
        e.SerializeToString() for e in first.events
    ]


def digest(simulation: Simulation) -> str:
    hashed = hashlib.sha256()
    for message in (*(r.record for r in simulation.records), *simulation.events):
        hashed.update(message.SerializeToString(deterministic=True))
    hashed.update(repr(simulation.holdings).encode())
    return hashed.hexdigest()


def test_the_bank_is_the_same_in_another_process_with_another_hash_seed() -> None:
    """Nothing depends on str hashing or on the process (set order, id())."""
    script = (
        "import datetime as dt, sys\n"
        "from zhike_simulator.simulation import simulate\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_simulation import digest\n"
        f"print(digest(simulate(30, 5, until=dt.date.fromisoformat('{UNTIL}'), days=30)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        timeout=120,
    )
    assert result.stdout.strip() == digest(simulate(30, 5, until=UNTIL, days=30))


def test_every_event_passes_the_profile_s_validation() -> None:
    now = dt.datetime.combine(UNTIL, dt.time(), ZONE)
    for seed in (7, 8):
        for index, event in enumerate(bank(seed).events):
            v = Violations()
            decoded = decode_source_event(v, f"events[{index}]", event, now)
            if decoded is None:
                v.raise_if_any()  # names the field the profile refuses
            assert decoded is not None


def test_the_bank_emits_every_fact_of_the_contract() -> None:
    facts = pb.SourceEvent.DESCRIPTOR.oneofs_by_name["fact"].fields
    assert set(bank().facts()) == {f.name for f in facts}


def test_events_come_in_time_order_within_the_window() -> None:
    times = [event.event_time.ToDatetime(tzinfo=dt.UTC) for event in bank().events]
    assert times == sorted(times)
    start = dt.datetime.combine(UNTIL - dt.timedelta(days=DAYS), dt.time(), ZONE)
    assert start <= times[0]
    assert times[-1] < dt.datetime.combine(UNTIL, dt.time(), ZONE)


def test_event_ids_are_unique_within_each_source_system() -> None:
    keys = [(e.source_record.source_system, e.event_id) for e in bank().events]
    assert len(keys) == len(set(keys))


def test_each_account_numbers_its_facts_one_two_three_in_time_order() -> None:
    sequences: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for event in bank().events:
        if fact_of(event)[0] in ACCOUNT_FACTS:
            sequences[account_of(event)].append(event.sequence)
    assert sequences
    for account, numbers in sequences.items():
        assert numbers == list(range(1, len(numbers) + 1)), account


def test_record_facts_are_versioned_per_record_and_per_consent() -> None:
    versions: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for event in bank().events:
        name, fact = fact_of(event)
        if name in ACCOUNT_FACTS:
            continue
        record = (event.source_record.source_system, event.source_record.source_record_id)
        if name in ("consent_given", "consent_withdrawn"):
            what: tuple[object, ...] = ("consent", fact.channel, fact.purpose)
        else:
            what = (name,)
        versions[(*record, *what)].append(event.sequence)
    for fact_kind, numbers in versions.items():
        assert numbers == list(range(1, len(numbers) + 1)), fact_kind


def test_the_holdings_are_what_the_balance_facts_add_up_to() -> None:
    """The last balance each account reported is the expected holding, every change adds up to
    it, and no deposit or investment ever goes below zero."""
    simulation = bank()
    last: dict[tuple[str, str, str], int] = {}
    for event in simulation.events:
        name, fact = fact_of(event)
        if name not in BALANCE_FIELDS:
            continue
        account = account_of(event)
        after: int = getattr(fact, BALANCE_FIELDS[name])
        if name == "balance_changed":
            assert last.get(account, 0) + fact.change_minor_units == after, account
        last[account] = after
    closed = set()
    for event in simulation.events:
        if fact_of(event)[0] == "account_closed":
            closed.add(account_of(event))
    for holding in simulation.holdings:
        account = (holding.source_system, holding.source_record_id, holding.account_id)
        assert last.get(account, 0) == holding.balance_minor_units, account
        assert holding.closed == (account in closed)
        if not holding.liability:
            assert holding.balance_minor_units >= 0, account


def test_every_event_is_about_a_record_the_simulator_links() -> None:
    simulation = bank()
    linked = {record.key for record in simulation.records}
    about = {
        (e.source_record.source_system, e.source_record.source_record_id) for e in simulation.events
    }
    assert about <= linked
    assert len(linked) == len(simulation.records)


def test_the_population_holds_every_currency_and_product_line() -> None:
    holdings = bank().holdings
    assert {h.currency for h in holdings} == {"CNY", "USD", "EUR", "HKD"}
    lines = set(pb.ProductLine.DESCRIPTOR.values_by_name) - {"PRODUCT_LINE_UNSPECIFIED"}
    assert {h.product_line for h in holdings} == lines


@pytest.mark.parametrize(("customers", "days"), [(0, 10), (5, 0)])
def test_an_empty_bank_is_refused(customers: int, days: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        simulate(customers, 1, until=UNTIL, days=days)


def test_a_customer_born_on_29_february_is_simulated_without_error() -> None:
    # Seed 7 with 1,500 customers includes a person born on 29 February whose 18th year
    # has no 29 February: his accounts open from 1 March of that year.
    simulation = simulate(1500, 7, until=dt.date(2026, 12, 1), days=2)
    assert len(simulation.records) > 1500
