"""Walking merge forwarding backwards: every id that leads to a party, through chains of merges,
each once, nearest first."""

from __future__ import annotations

from collections.abc import Sequence

from zhike_runtime.forwarding import leading_through

# D and E were merged into B, B and C into A; F into G (another tree).
MERGED_INTO = {"B": "A", "C": "A", "D": "B", "E": "B", "F": "G"}


async def forwarding_into(party_ids: Sequence[str]) -> list[str]:
    return sorted(p for p, into in MERGED_INTO.items() if into in party_ids)


async def test_every_id_leading_through_a_party_is_found_nearest_first() -> None:
    assert await leading_through("A", forwarding_into) == ["A", "B", "C", "D", "E"]


async def test_a_party_nothing_was_merged_into_leads_only_through_itself() -> None:
    assert await leading_through("D", forwarding_into) == ["D"]


async def test_an_id_met_twice_is_listed_once() -> None:
    async def with_a_repeat(party_ids: Sequence[str]) -> list[str]:
        return [*await forwarding_into(party_ids), *party_ids]  # a store that echoes its input

    assert await leading_through("B", with_a_repeat) == ["B", "D", "E"]
