"""Deterministic clustering of scored pairs into parties, with cluster-level guardrails.

Pairs are taken strongest first (ties broken by the records' keys, never by arrival order), and
two groups join only if no guardrail forbids it: a group may hold one valid resident ID number at
most, and a steward's "never link" between any of their records always holds. The result depends
only on the records and their scores, so any arrival order gives the same grouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class ScoredPair(NamedTuple):
    # A tuple, not a frozen dataclass: a batch makes one per candidate pair, and a tuple is made
    # in a fraction of the time.
    left: int
    right: int
    weight: float


@dataclass(frozen=True)
class Refusal:
    pair: ScoredPair
    reason: str


class _Groups:
    def __init__(self, size: int, resident_ids: Sequence[str | None]) -> None:
        self.parent = list(range(size))
        self.ids: list[set[str]] = [{r} if r else set() for r in resident_ids]
        self.members: list[list[int]] = [[i] for i in range(size)]

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        self.parent[b] = a
        self.ids[a] |= self.ids[b]
        self.members[a].extend(self.members[b])
        self.ids[b] = set()
        self.members[b] = []


def cluster(
    size: int,
    pairs: Iterable[ScoredPair],
    *,
    link_weight: float,
    order_keys: Sequence[tuple[str, str]],
    resident_ids: Sequence[str | None],
    forced: Iterable[tuple[int, int]] = (),
    never: Iterable[tuple[int, int]] = (),
) -> tuple[list[int], list[Refusal]]:
    """Returns each record's group (the smallest member index) and the refused links.

    `forced` pairs (a steward's "always link") join first, without
    guardrails; `never` pairs must end in different groups.
    """
    groups = _Groups(size, resident_ids)
    never_pairs = {(min(a, b), max(a, b)) for a, b in never}
    never_of: dict[int, set[int]] = {}
    for a, b in never_pairs:
        never_of.setdefault(a, set()).add(b)
        never_of.setdefault(b, set()).add(a)
    for a, b in forced:
        ra, rb = groups.find(a), groups.find(b)
        if ra != rb:
            groups.union(ra, rb)
    refusals: list[Refusal] = []
    ordered = sorted(
        (p for p in pairs if p.weight >= link_weight),
        key=lambda p: (
            -p.weight,
            min(order_keys[p.left], order_keys[p.right]),
            max(order_keys[p.left], order_keys[p.right]),
        ),
    )
    for pair in ordered:
        ra, rb = groups.find(pair.left), groups.find(pair.right)
        if ra == rb:
            continue
        ids_a, ids_b = groups.ids[ra], groups.ids[rb]
        if ids_a and ids_b and ids_a != ids_b:
            refusals.append(Refusal(pair, "different_valid_resident_ids"))
            continue
        if never_of and _any_never(groups.members[ra], groups.members[rb], never_of):
            refusals.append(Refusal(pair, "steward_never_link"))
            continue
        groups.union(ra, rb)
    roots = [groups.find(i) for i in range(size)]
    smallest: dict[int, int] = {}
    for i, root in enumerate(roots):
        smallest.setdefault(root, i)
    return [smallest[root] for root in roots], refusals


def _any_never(left: list[int], right: list[int], never_of: dict[int, set[int]]) -> bool:
    right_set = set(right)
    return any(never_of.get(i, set()) & right_set for i in left)
