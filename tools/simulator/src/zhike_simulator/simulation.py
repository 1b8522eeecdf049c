"""The simulated bank: a seeded population, its products and a stream of its activity, as the
source systems would emit it. Pure: no clock, no I/O, nothing global; the same arguments give
the same records and the same events, byte for byte.

People and their records come from identity's evaluation generator (`generator.build`): each
person has 1-5 records, each in a different source system, with that system's messy fields.
What a person holds follows those records (customer.py has the details):

| source system  | products and facts                                                           |
|----------------|------------------------------------------------------------------------------|
| core_deposits  | CNY current account (salary, ATM, transfers), savings, time deposit, USD/EUR/ |
|                | HKD accounts; branch visits, ATM use                                         |
| cards          | a credit card (its tier follows wealth) and a debit card on the CNY account  |
| loans          | a mortgage or a personal loan, repaid monthly, now and then overdue          |
| wealth_branch  | investment positions R1-R5 in CNY/USD/HKD, valued monthly; risk assessments  |
| fx_passport    | the FX desk's USD/EUR/HKD accounts (and a CNY settlement account for a       |
|                | customer without one in deposits)                                            |
| call_centre    | calls, marketing-call consent decided by phone                               |
| mobile_banking | app logins, consent and preference changes                                   |

The window is the `days` days before `until` (Asia/Shanghai dates). On its first day each
source system sends what it already holds (an adapter's initial load: accounts opened years ago
with their balances now, risk assessments, consents); then the activity follows day by day.

The contract's ordering rules hold by construction: each account's facts carry its own sequence
(1, 2, …); consents are versioned per record, channel and purpose; preferences, risk
assessments and interactions per record. Event ids are `<source record id>-<n>`, unique within
the source system. No deposit or investment goes below zero and no card above its limit, so
the end balances (`Simulation.holdings`) are what a profile must show.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass

from zhike.identity.v1 import party_pb2
from zhike.source.v1 import source_event_pb2 as pb
from zhike_identity_evaluation import generator
from zhike_simulator.customer import Customer, Holding
from zhike_simulator.records import source_record

DEFAULT_DAYS = 90


@dataclass(frozen=True)
class SimulatedRecord:
    """A customer's record in one source system, as it is linked at identity."""

    person_id: str
    record: party_pb2.SourceRecord

    @property
    def key(self) -> tuple[str, str]:
        return (self.record.key.source_system, self.record.key.source_record_id)


@dataclass(frozen=True)
class Simulation:
    seed: int
    customers: int
    days: int
    until: dt.date
    records: tuple[SimulatedRecord, ...]
    events: tuple[pb.SourceEvent, ...]  # by event time
    holdings: tuple[Holding, ...]  # every account at the end, one per account and currency

    def facts(self) -> Counter[str]:
        """How many events of each fact (account_opened, balance_changed, …)."""
        return Counter(str(event.WhichOneof("fact")) for event in self.events)


def simulate(customers: int, seed: int, *, until: dt.date, days: int = DEFAULT_DAYS) -> Simulation:
    """`customers` people over the `days` days before `until`; everything follows from `seed`."""
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    population = generator.build(customers, seed)
    records_of: dict[str, dict[str, str]] = {}
    for generated in population.records:
        records_of.setdefault(generated.person_id, {})[generated.row.source] = (
            generated.row.source_id
        )
    start = until - dt.timedelta(days=days)
    ordered: list[tuple[dt.datetime, int, int, pb.SourceEvent]] = []
    holdings: list[Holding] = []
    for index, person in enumerate(population.persons):
        # One random generator per person: a life does not depend on who else is simulated.
        rng = random.Random(f"zhike-simulator:{seed}:{person.person_id}")
        customer = Customer(person, records_of.get(person.person_id, {}), rng, until)
        customer.run(start, days)
        ordered += [(at, index, n, event) for n, (at, event) in enumerate(customer.events)]
        holdings += customer.holdings()
    # By time; a customer's events at the same moment keep the order they happened in.
    ordered.sort(key=lambda item: item[:3])
    return Simulation(
        seed=seed,
        customers=customers,
        days=days,
        until=until,
        records=tuple(
            SimulatedRecord(generated.person_id, source_record(generated.row))
            for generated in population.records
        ),
        events=tuple(event for *_, event in ordered),
        holdings=tuple(holdings),
    )
