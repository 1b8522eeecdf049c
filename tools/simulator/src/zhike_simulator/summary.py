"""What a run sent, as JSON (`zhike simulate --summary FILE`): each record and the party identity
put it in, the events by fact, and every holding's balance at the end, so a test or a person can
check the profiles against it. No personal data: record keys, the generator's person ids and
amounts only."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from zhike_simulator.send import Sent
from zhike_simulator.simulation import Simulation


def summary(simulation: Simulation, sent: Sent) -> dict[str, Any]:
    return {
        "seed": simulation.seed,
        "customers": simulation.customers,
        "days": simulation.days,
        "until": simulation.until.isoformat(),
        "records": [
            {
                "source_system": record.key[0],
                "source_record_id": record.key[1],
                "person_id": record.person_id,
                "party_id": sent.parties.get(record.key, ""),  # "": identity refused it
            }
            for record in simulation.records
        ],
        "refused_fields": [
            {"source_system": key[0], "source_record_id": key[1], "field": name}
            for key, name in sent.refused_fields
        ],
        "events": {
            "sent": sent.events,
            "duplicates": sent.duplicates,
            "by_fact": dict(sorted(simulation.facts().items())),
        },
        "holdings": [dataclasses.asdict(holding) for holding in simulation.holdings],
    }


def showcase(simulation: Simulation, sent: Sent, count: int) -> list[tuple[str, int, int]]:
    """A few parties worth looking at first: (party id, records, open holdings), those with the
    most open holdings first."""
    records = Counter(sent.parties.values())
    holdings: Counter[str] = Counter()
    for holding in simulation.holdings:
        party = sent.parties.get((holding.source_system, holding.source_record_id))
        if party and not holding.closed:
            holdings[party] += 1
    ranked = sorted(holdings, key=lambda party: (-holdings[party], -records[party], party))
    return [(party, records[party], holdings[party]) for party in ranked[:count]]
