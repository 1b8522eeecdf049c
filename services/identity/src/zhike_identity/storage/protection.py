"""Source records' personal data at rest: sealed values and the blind candidate index.

The domain works on plain values and plain blocking keys; storage alone seals and hashes them:
- `id_number`, `phone` and `email` are stored as ciphertext tokens bound to their column and
  record (`zhike_runtime.crypto`), and opened when a record is read;
- every key of the candidate index (`blocking_key`) is stored as its two-letter prefix in clear
  (`id:`, `ph:`, `nm:`…, so prefix rules and per-kind counting still read it) followed by a keyed
  hash of the whole plain key. A look-up hashes the plain key the same way, so finding a party by
  ID number or phone, blocking and value counting work as before, and a stolen table holds no
  identifier it could be searched by without the blind-index key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zhike_identity.domain.model import SourceRecordKey
from zhike_identity.storage.schema import SOURCE_RECORD_SEALED
from zhike_runtime.crypto import FieldKeys

INDEX_PURPOSE = "identity.blocking_key"
# Every blocking key starts with two letters and a colon (domain/matching/blocking.py).
PREFIX_LENGTH = 3

_ID_NUMBER = SOURCE_RECORD_SEALED.place("id_number")
_PHONE = SOURCE_RECORD_SEALED.place("phone")
_EMAIL = SOURCE_RECORD_SEALED.place("email")


class RecordProtection:
    """Seals and opens a source record's personal data and blinds its index keys."""

    def __init__(self, keys: FieldKeys) -> None:
        self.keys = keys
        self._ring = keys.ring
        self._blind = keys.blind_index.purpose(INDEX_PURPOSE)

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable for the bulk load's worker processes (the blinder is a closure).
        return (RecordProtection, (self.keys,))

    def seal(self, key: SourceRecordKey, id_number: str, phone: str, email: str) -> dict[str, str]:
        """The stored form of the three sealed columns of the record `key`."""
        row = (key.source_system, key.source_record_id)
        return {
            "id_number": self._ring.encrypt(id_number, _ID_NUMBER, row),
            "phone": self._ring.encrypt(phone, _PHONE, row),
            "email": self._ring.encrypt(email, _EMAIL, row),
        }

    def open(self, row: Any) -> tuple[str, str, str]:
        """The plain ID number, phone and e-mail of a `source_record` row."""
        return self.open_values(
            row.source_system, row.source_record_id, row.id_number, row.phone, row.email
        )

    def open_values(
        self, source_system: str, source_record_id: str, id_number: str, phone: str, email: str
    ) -> tuple[str, str, str]:
        """The plain ID number, phone and e-mail sealed in the record `(system, record id)`."""
        place = (source_system, source_record_id)
        return (
            self._ring.decrypt(id_number, _ID_NUMBER, place),
            self._ring.decrypt(phone, _PHONE, place),
            self._ring.decrypt(email, _EMAIL, place),
        )

    def open_id_number(self, source_system: str, source_record_id: str, token: str) -> str:
        return self._ring.decrypt(token, _ID_NUMBER, (source_system, source_record_id))

    def index_key(self, key: str) -> str:
        """A plain blocking key's row in the candidate index."""
        return key[:PREFIX_LENGTH] + self._blind(key)

    def index_keys(self, keys: Iterable[str]) -> list[str]:
        return [self.index_key(k) for k in keys]
