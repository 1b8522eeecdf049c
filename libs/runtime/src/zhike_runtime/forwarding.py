"""Merge forwarding, walked backwards. A party merged away forwards to the party that absorbed
it, so a chain of merges makes a tree of retired ids leading to one party. When a split at
identity re-routes a retired id, whatever was placed by it (profile records, offers' contacts)
must move with it, along with what was placed by the ids leading through it. Each service
stores its forwarding its own way; this walks it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence


async def leading_through(
    party_id: str, forwarding_into: Callable[[Sequence[str]], Awaitable[Sequence[str]]]
) -> list[str]:
    """`party_id` and every id that leads to it (merged into it, or into one that is), nearest
    first; `forwarding_into(ids)` gives the ids merged straight into one of `ids`."""
    through, seen = [party_id], {party_id}
    frontier = [party_id]
    while frontier:
        frontier = [p for p in await forwarding_into(frontier) if p not in seen]
        seen.update(frontier)
        through += frontier
    return through
