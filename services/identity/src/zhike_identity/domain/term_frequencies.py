"""How common a record's values are in the store, for the model's term frequencies: shared by
linking (scoring candidates) and explanations (showing the same weights)."""

from __future__ import annotations

import time

from zhike_identity.domain.matching.blocking import index_key
from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity.domain.model import KeyCounts
from zhike_identity.domain.ports import IdentityUnitOfWork


class StoreSize:
    """The store's size for term frequencies. A large store is re-read at most once a minute:
    it moves slowly and only its order of magnitude matters. A small one is cheap to count
    and changes fast relative to its size, so it is read every time."""

    def __init__(self) -> None:
        self._total: tuple[float, int] | None = None  # (when read, how many records)

    async def read(self, uow: IdentityUnitOfWork) -> int:
        now = time.monotonic()
        if self._total is None or self._total[1] < 100_000 or now - self._total[0] > 60.0:
            self._total = (now, await uow.records.estimated_total())
        return self._total[1]


def shared_value_keys(features: RecordFeatures) -> list[str]:
    """The index keys of the values a household or one customer's many records share (phone,
    e-mail, address): counted by party, so that a customer's own phone does not look shared."""
    keys = []
    if features.phone is not None:
        keys.append(index_key(f"ph:{features.phone.e164}"))
    if features.email is not None:
        keys.append(index_key(f"em:{features.email}"))
    if features.address is not None:
        keys.append(index_key(f"ad:{features.address.text}"))
    return keys


def frequency_counts(features: RecordFeatures, counts: KeyCounts) -> dict[tuple[str, str], int]:
    """How often the record's values are held, the record itself included: a name by records
    (as the batch resolver counts it), shared values by parties."""
    result: dict[tuple[str, str], int] = {}
    if features.name is not None:
        held = counts.records.get(index_key(f"nm:{features.name.full}"), 0)
        result[("name", features.name.full)] = held + 1
    if features.phone is not None:
        held = counts.parties.get(index_key(f"ph:{features.phone.e164}"), 0)
        result[("phone", features.phone.e164)] = held + 1
    if features.email is not None:
        held = counts.parties.get(index_key(f"em:{features.email}"), 0)
        result[("email", features.email)] = held + 1
    if features.address is not None:
        held = counts.parties.get(index_key(f"ad:{features.address.text}"), 0)
        result[("address", features.address.text)] = held + 1
    return result
