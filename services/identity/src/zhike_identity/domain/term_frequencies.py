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


def frequency_counts(
    features: RecordFeatures, counts: KeyCounts, stored: RecordFeatures | None
) -> dict[tuple[str, str], int]:
    """How often the record's values are held, the record itself counted once: a name by
    records (as the batch resolver counts it), shared values by parties. `stored`: the features
    the store holds for this record already (None for a new one), whose values `counts` include:
    counted again, a record sent twice would be scored on other frequencies the second time, and
    could leave the party it matched."""
    result: dict[tuple[str, str], int] = {}

    def held(kind: str, value: str, count: int, stored_value: str | None) -> None:
        result[(kind, value)] = count if stored_value == value else count + 1

    if features.name is not None:
        count = counts.records.get(index_key(f"nm:{features.name.full}"), 0)
        held(
            "name", features.name.full, count, stored.name.full if stored and stored.name else None
        )
    if features.phone is not None:
        count = counts.parties.get(index_key(f"ph:{features.phone.e164}"), 0)
        stored_phone = stored.phone.e164 if stored and stored.phone else None
        held("phone", features.phone.e164, count, stored_phone)
    if features.email is not None:
        count = counts.parties.get(index_key(f"em:{features.email}"), 0)
        held("email", features.email, count, stored.email if stored else None)
    if features.address is not None:
        count = counts.parties.get(index_key(f"ad:{features.address.text}"), 0)
        stored_address = stored.address.text if stored and stored.address else None
        held("address", features.address.text, count, stored_address)
    return result


def store_total(size: int, stored: RecordFeatures | None) -> int:
    """The store's size with the record counted once (a stored record is in `size` already)."""
    return size if stored is not None else size + 1
