"""Nicknames and short forms of Latin-script given names ("Art", "Artie" for "Arthur"; "Bill" for
"William"), read from a table that is data: `data/given_name_variants.csv`, one group a line.

Two given names are variants of each other when one line holds both. A short form may be on
several lines ("chris": Christopher, Christine) without making those names variants of each other.
Names are compared in the key form `PersonName` gives them: lower-case ASCII, no hyphens.
"""

from __future__ import annotations

import functools
from importlib import resources

_TABLE = "given_name_variants.csv"


@functools.cache
def _groups_by_name() -> dict[str, frozenset[int]]:
    text = resources.files("zhike_identity.domain.normalise").joinpath("data", _TABLE).read_text()
    groups: dict[str, set[int]] = {}
    for number, line in enumerate(text.splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for name in line.split(","):
            key = name.strip().lower().replace("-", "").replace("'", "")
            if key:
                groups.setdefault(key, set()).add(number)
    return {name: frozenset(lines) for name, lines in groups.items()}


def are_name_variants(left: str, right: str) -> bool:
    """Whether two given names (key form) are one name's variants: "arthur" / "artie" yes,
    "arthur" / "arthur" no (that is the same name), "christopher" / "christine" no."""
    if left == right:
        return False
    table = _groups_by_name()
    groups = table.get(left)
    return groups is not None and not groups.isdisjoint(table.get(right, frozenset()))


def variant_table_size() -> int:
    """How many names the table knows (for tests and start-up checks)."""
    return len(_groups_by_name())
