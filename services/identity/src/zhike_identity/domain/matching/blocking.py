"""Blocking keys: a new record is compared only with records sharing at least one key.

Several keys per record, so that one noisy field (a mistyped ID digit, a changed phone, a
homophone) still leaves another key in common. Keys are plain strings, so the service can index
them in a table and the batch resolver in a dict.
"""

from __future__ import annotations

import hashlib

from zhike_identity.domain.matching.features import RecordFeatures

# Keys on exact identifiers: always used, however large their block (a real shared identifier
# is what the scoring must see).
STRONG_PREFIXES = ("id:",)
# The candidate index stores keys in a column of this width: a longer key is stored as a digest.
MAX_KEY_LENGTH = 200


def index_key(key: str) -> str:
    """The form a key takes in the candidate index (a digest when too long for its column)."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    prefix = key[:3]
    return prefix + "#" + hashlib.sha256(key.encode()).hexdigest()


def blocking_keys(record: RecordFeatures) -> list[str]:
    keys: list[str] = []
    doc = record.document
    if doc is not None:
        keys.append(f"id:{doc.kind}:{doc.number}")
        # One mistyped digit leaves one half intact (short numbers too: a 7-digit number's
        # halves of 3 and 4 digits still split a store into blocks of manageable size).
        half = len(doc.number) // 2
        if half >= 3:
            keys.append(f"ih:{doc.kind}:{doc.number[:half]}")
            keys.append(f"it:{doc.kind}:{doc.number[half:]}")
    name = record.name
    birth = record.birth_date.isoformat() if record.birth_date else None
    if record.phone is not None:
        keys.append(f"ph:{record.phone.e164}")
    if record.email is not None:
        keys.append(f"em:{record.email}")
    if name is not None:
        keys.append(f"nm:{name.full}")
        parts = sorted(p for p in (name.surname, name.given) if p)
        keys.append(f"ns:{':'.join(parts)}")  # either order of the name parts
        if birth:
            keys.append(f"sb:{name.surname}:{birth}")
            if name.given:
                keys.append(f"gb:{name.given}:{birth}")
        if record.address is not None and record.address.postcode:
            keys.append(f"sp:{name.surname}:{record.address.postcode}")
            if name.given:
                # Latin names' order is a guess: the other part with the postcode too.
                keys.append(f"gp:{name.given}:{record.address.postcode}")
    if name is not None and record.address is not None:
        # The address with the surname's initial: a record whose name, birth date and postcode
        # were all mistyped still meets its record at home, without comparing a whole building.
        keys.append(f"ai:{record.address.text}:{name.surname[:1]}")
    if birth:
        if name is not None:
            # The birth date with either name part's initial: a name typed quite differently
            # still meets its record, without comparing everyone born that day.
            keys.append(f"bi:{birth}:{name.surname[:1]}")
            if name.given:
                keys.append(f"bi:{birth}:{name.given[:1]}")
        else:
            keys.append(f"bd:{birth}")
    return [index_key(k) for k in keys]


def counting_keys(record: RecordFeatures) -> list[str]:
    """Keys stored only to count how many records share a value (never used as blocks): an
    address held by many records (a branch's address typed in as a placeholder) stops counting."""
    if record.address is not None:
        return [index_key(f"ad:{record.address.text}")]
    return []
