"""Personal data at rest: field encryption with a key ring, and blind indexes for look-ups.

**Field encryption.** A value that identifies a customer (resident-ID and other document numbers,
phones, e-mails) is stored as a ciphertext token

    v1.<key id>.<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>

- the key id says which data key sealed it, so keys rotate value by value: new values are sealed
  under the active key, older ones stay readable under theirs until `zhike rotate-keys` re-seals
  them (see `key_rotation`);
- the associated data binds the value to its place, the column and the row's key: a ciphertext
  copied into another row or column (by a bug, or by someone with write access to the tables)
  fails to decrypt instead of lending one customer's ID number to another;
- a 96-bit random nonce per value: one data key seals at most a few billion values before the
  nonce-collision bound matters, far more than a bank's customer store, and rotation resets it;
- an empty value stays empty: "no phone given" is not a secret, and it keeps NOT NULL '' columns
  and "is there a value" checks as they were.

A failure to decrypt raises `UndecryptableValue`, whose text names the column and the reason but
never the value, the token or a key.

**Blind indexes.** Encrypted values cannot be compared in SQL, so equality look-ups (find a party
by ID number, the identity candidate index) go through a keyed hash: HMAC-SHA256 under its own
key (never a data key), derived once per purpose so one purpose's digests say nothing about
another's, cut to 96 bits of hex (collisions among tens of millions of values stay below 1e-14).
Without the key a digest cannot be brute-forced from the small space of phone numbers.

**Erasure later (crypto-shredding, RELIABILITY S8).** Because every value records its key id, a
later release can seal a party's values under key material of that party alone (a per-party data
key, itself wrapped by a data key of this ring and stored beside the party): destroying that one
key makes every copy unreadable, in the tables, in backups and in replicas, without rewriting
them. The token format needs no change for it: the key id names the per-party key. Blind-index
digests of an erased party are deleted with its rows (they cannot be reversed without the key).

Keys come from configuration (`ZHIKE_DATA_KEYS`, `ZHIKE_DATA_KEY_ID`, `ZHIKE_BLIND_INDEX_KEY`, from
a Secret in production); there is no built-in key. Local runs get throwaway keys from `make run`,
tests fixed test keys from `zhike_runtime.testing.services`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "v1"
KEY_BYTES = 32  # AES-256; also the blind-index key's minimum length
NONCE_BYTES = 12
BLIND_INDEX_HEX = 24  # 96 bits
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class UndecryptableValue(Exception):
    """A stored value could not be decrypted: says where and why, never what."""

    def __init__(self, column: str, reason: str) -> None:
        self.column = column
        self.reason = reason
        super().__init__(f"a value of {column} cannot be decrypted: {reason}")


def _b64decode(text: str) -> bytes:
    # Standard and URL-safe alphabets, padded or not: operators paste keys from many tools.
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def parse_key(text: str, what: str) -> bytes:
    """A base64 key of KEY_BYTES bytes, or ValueError naming `what` (never echoing the key)."""
    try:
        key = _b64decode(text)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{what} must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


def parse_data_keys(text: str) -> dict[str, bytes]:
    """`{"<key id>": "<base64 of 32 bytes>", …}` → keys by id, or ValueError without key bytes."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError('must be a JSON object {"<key id>": "<base64 32-byte key>"}') from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError('must be a non-empty JSON object {"<key id>": "<base64 32-byte key>"}')
    keys: dict[str, bytes] = {}
    for key_id, encoded in raw.items():
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"key id {key_id!r} must be 1-32 of A-Z a-z 0-9 _ -")
        if not isinstance(encoded, str):
            raise ValueError(f"key {key_id!r} must be a base64 string")
        keys[key_id] = parse_key(encoded, f"key {key_id!r}")
    if len(set(keys.values())) != len(keys):
        raise ValueError("two key ids hold the same key")
    return keys


def generate_key() -> str:
    """A fresh random key, base64 (for `make run` and operators: `python -c …`)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _associated_data(column: str, row: Sequence[str]) -> bytes:
    """The value's place, NUL-separated: unambiguous because no part may hold a NUL (source
    keys refuse control characters anyway). On the hot path, so kept to a join."""
    for part in row:
        if "\x00" in part:
            raise ValueError("a row key part holds a NUL character")
    return "\x00".join((column, *row)).encode()


class KeyRing:
    """Data keys by key id, one active: seals new values, opens values under any known key.

    The AES-GCM objects are built once per key here, not per value (the identity service opens
    a few values per candidate, thousands per second)."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ValueError(f"the active key id {active_key_id!r} is not among the data keys")
        for key_id, key in keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"key id {key_id!r} must be 1-32 of A-Z a-z 0-9 _ -")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {KEY_BYTES} bytes")
        self._keys = dict(keys)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id
        self._active = self._ciphers[active_key_id]
        self.active_prefix = f"{FORMAT}.{active_key_id}."

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable for worker processes (the bulk load seals values where it prepares them).
        return (KeyRing, (self._keys, self.active_key_id))

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._ciphers)

    def encrypt(self, value: str, column: str, row: Sequence[str]) -> str:
        """Seals `value` for `column` of the row whose key is `row` (an empty value stays "")."""
        if not value:
            return ""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._active.encrypt(nonce, value.encode(), _associated_data(column, row))
        return self.active_prefix + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def decrypt(self, token: str, column: str, row: Sequence[str]) -> str:
        """Opens a value sealed by `encrypt` for this same column and row."""
        if not token:
            return ""
        key_id, body = self._split(token, column)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UndecryptableValue(column, f"sealed under key id {key_id!r}, not in the ring")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise UndecryptableValue(column, "not a ciphertext token (bad base64)") from None
        if len(raw) < NONCE_BYTES + 16:
            raise UndecryptableValue(column, "not a ciphertext token (too short)")
        try:
            plain = cipher.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(column, row)
            )
        except InvalidTag:
            raise UndecryptableValue(
                column, "authentication failed (altered, or sealed for another row or column)"
            ) from None
        return plain.decode()

    def key_id(self, token: str, column: str = "value") -> str:
        """The id of the key that sealed `token`."""
        return self._split(token, column)[0]

    def is_current(self, token: str) -> bool:
        """True when `token` is empty or sealed under the active key (nothing to rotate)."""
        return not token or token.startswith(self.active_prefix)

    @staticmethod
    def _split(token: str, column: str) -> tuple[str, str]:
        parts = token.split(".", 2)
        if len(parts) != 3 or parts[0] != FORMAT:
            raise UndecryptableValue(column, f"not a {FORMAT} ciphertext token")
        return parts[1], parts[2]


# A blind index for one purpose: plain value → hex digest.
Blinder = Callable[[str], str]


class BlindIndex:
    """Keyed hashes for equality look-ups over encrypted values, one derived key per purpose."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"the blind-index key must be at least {KEY_BYTES} bytes")
        self._key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlindIndex, (self._key,))

    def purpose(self, name: str) -> Blinder:
        """The digest function for one purpose (e.g. "identity.blocking_key"): HMAC-SHA256 under
        a key derived from the blind-index key and the purpose, as BLIND_INDEX_HEX hex digits."""
        derived = hmac.digest(self._key, b"zhike blind index\x00" + name.encode(), "sha256")
        return _blinder(derived)

    def signing_key(self, name: str) -> bytes:
        """A key of its own for one signing purpose (e.g. "notifications.unsubscribe_link"),
        derived from the blind-index key under another label than the digests' keys: every
        replica holds it, and it outlives a restart."""
        return hmac.digest(self._key, b"zhike signing key\x00" + name.encode(), "sha256")


def _blinder(key: bytes) -> Blinder:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer pads hashed once: each value then
    costs two hash copies instead of a full HMAC set-up (about 1 µs instead of 2.5 µs; the
    identity service hashes some twenty keys per record it links)."""
    padded = key.ljust(64, b"\x00")  # a 32-byte key is shorter than SHA-256's 64-byte block
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def blind(value: str) -> str:
        h = inner.copy()
        h.update(value.encode())
        o = outer.copy()
        o.update(h.digest())
        return o.hexdigest()[:BLIND_INDEX_HEX]

    return blind


@dataclass(frozen=True)
class FieldKeys:
    """What a service that stores personal data needs: its data key ring and its blind index."""

    ring: KeyRing
    blind_index: BlindIndex

    @classmethod
    def from_config(cls, data_keys: str, active_key_id: str, blind_index_key: str) -> FieldKeys:
        """From the three settings' texts (raises ValueError naming what is wrong)."""
        keys = parse_data_keys(data_keys)
        blind = parse_key(blind_index_key, "the blind-index key")
        if blind in keys.values():
            raise ValueError("the blind-index key must differ from every data key")
        return cls(KeyRing(keys, active_key_id), BlindIndex(blind))


class _KeySettings(Protocol):
    @property
    def data_keys(self) -> Any: ...
    @property
    def data_key_id(self) -> str | None: ...
    @property
    def blind_index_key(self) -> Any: ...


def field_keys(settings: _KeySettings) -> FieldKeys | None:
    """The configured field keys, or None where the three settings are unset (a service that
    stores no personal data). `ServiceSettings` has already validated them."""
    if settings.data_keys is None or settings.blind_index_key is None:
        return None
    assert settings.data_key_id is not None
    return FieldKeys.from_config(
        settings.data_keys.get_secret_value(),
        settings.data_key_id,
        settings.blind_index_key.get_secret_value(),
    )


@dataclass(frozen=True)
class EncryptedColumns:
    """A table's encrypted columns and the columns of its row key (the associated data), as a
    service declares them for `zhike rotate-keys` (entry-point group `zhike.encrypted_columns`).
    A value of `table.column` is sealed with `column=f"{table}.{column}"` and `row` = the row
    key's values in this order."""

    table: str
    row_key: tuple[str, ...]
    columns: tuple[str, ...]

    def place(self, column: str) -> str:
        return f"{self.table}.{column}"
