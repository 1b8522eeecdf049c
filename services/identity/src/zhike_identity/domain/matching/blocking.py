"""Blocking keys: a new record is compared only with records sharing at least one key.

Several keys per record, so that one noisy field (a mistyped ID digit, a changed phone, a
homophone) still leaves another key in common. Keys are plain strings, so the service can index
them in a table and the batch resolver in a dict.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity.domain.normalise import Address, PersonName

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
        # Either order of the name parts (sorted: blocking_keys runs for every record of a
        # batch, and two strings are ordered without sorted()'s cost).
        surname, given = name.surname, name.given
        if surname and given:
            keys.append(f"ns:{surname}:{given}" if surname <= given else f"ns:{given}:{surname}")
        else:
            keys.append(f"ns:{surname or given}")
        if birth:
            keys.append(f"sb:{name.surname}:{birth}")
            if name.given:
                keys.append(f"gb:{name.given}:{birth}")
        if record.address is not None and record.address.postcode:
            keys.append(f"sp:{name.surname}:{record.address.postcode}")
            if name.given:
                # Latin names' order is a guess: the other part with the postcode too.
                keys.append(f"gp:{name.given}:{record.address.postcode}")
    # Either name part's initial: a Latin name's order is a guess, and a nickname ("Bill" for
    # "William") keeps the surname's initial.
    initials = _initials(name.surname[:1], name.given[:1]) if name else ()
    # The typo-tolerant keys below (postcode-like tokens, address numbers, a swapped or mistyped
    # birth date) only for a record without an ID number, phone or e-mail: such a record has
    # nothing else to meet its others by, while a record with one would bring dozens more
    # candidates to every online link (at a million records, 28 of its 53 came from the year
    # and month key alone) for pairs its identifier already finds.
    weak = doc is None and record.phone is None and record.email is None
    address = record.address
    if address is not None:
        for initial in initials:
            # The address with an initial: a record whose name, birth date and postcode were all
            # mistyped still meets its record at home, without comparing a whole building.
            keys.append(f"ai:{address.text}:{initial}")
        postcode = postcode_like(address) if weak else None
        numbers = _address_numbers(address) if weak else None
        for initial in initials:
            # Postcodes of any country's format ("sw1a1aa", "m5v3l9", "10115"), and the numbers
            # of the address (house, building, flat): a mistyped street or town still meets.
            if postcode and address.text.isascii():
                # (A Chinese postcode covers a whole district: `sp`/`gp` above and the
                # numbers cover it.)
                keys.append(f"pk:{postcode}:{initial}")
            if numbers:
                keys.append(f"an:{numbers}:{initial}")
    if record.birth_date is not None:
        if name is not None:
            born = record.birth_date
            swapped = _swapped(born)
            for initial in initials:
                # The birth date with either name part's initial: a name typed quite
                # differently still meets its record, without comparing everyone born that day;
                # also under the date with day and month swapped, and by year and month (a
                # mistyped day).
                keys.append(f"bi:{birth}:{initial}")
                if not weak:
                    continue
                if swapped is not None:
                    keys.append(f"bi:{swapped.isoformat()}:{initial}")
                keys.append(f"bm:{born:%Y-%m}:{initial}")
        else:
            keys.append(f"bd:{birth}")
    return [k if len(k) <= MAX_KEY_LENGTH else index_key(k) for k in keys]


def name_and_birth_date_keys(name: PersonName, born: dt.date) -> list[str]:
    """Keys that every record with this name (its `full` form, however it was written or split
    into surname and given name) and birth date is indexed under, narrowest first: the birth date
    with the name's first letter (`bi`: the initial of the surname, or of the given name when
    there is no surname), then the name. The records holding both are those of the name born
    that day (and, for a record without identifiers, on the day with day and month swapped): a
    look-up by both reads those, and never every 王伟 in the store."""
    return [index_key(f"bi:{born.isoformat()}:{name.full[:1]}"), index_key(f"nm:{name.full}")]


def _initials(first: str, second: str) -> tuple[str, ...]:
    """The distinct initials of a name's parts, in order (an empty part has none)."""
    if first and second and first != second:
        return (first, second) if first < second else (second, first)
    return (first or second,) if first or second else ()


_DIGITS = re.compile(r"[0-9]+")
_LETTERS_AND_DIGITS = re.compile(r"(?=[a-z]*[0-9])(?=[0-9]*[a-z])[a-z0-9]{2,4}")


def postcode_like(address: Address) -> str | None:
    """The postcode, in any country's format: the one the normaliser found (six digits in China,
    four or five abroad), else a trailing run of letters-and-digits groups ("sw1a 1aa",
    "m5v 3l9") or digits of four to six ("2000", "581929"); Hong Kong has none."""
    if address.postcode:
        return address.postcode
    if address.text.isascii():
        tokens = list(address.tokens)
        tail: list[str] = []
        while tokens and _LETTERS_AND_DIGITS.fullmatch(tokens[-1]) and len(tail) < 2:
            tail.insert(0, tokens.pop())
        if tail and len("".join(tail)) >= 5:
            return "".join(tail)
        if address.tokens and address.tokens[-1].isdigit() and 4 <= len(address.tokens[-1]) <= 6:
            return address.tokens[-1]
    return None


def _address_numbers(address: Address) -> str | None:
    """The numbers of an address in order ("61-16-4-3104": house, building, unit, flat; "10c-157"),
    without the postcode: what survives a mistyped street or town name. A Han address needs two
    numbers, or one number would put a whole street in one block."""
    if not address.text.isascii():
        numbers = _DIGITS.findall(address.text)
        return "-".join(numbers) if len(numbers) >= 2 else None
    postcode = postcode_like(address) or ""
    words = [t for t in address.tokens if any(c.isdigit() for c in t)]
    while words and postcode.endswith(words[-1]):
        postcode = postcode[: -len(words[-1])]
        words.pop()
    return "-".join(words) or None


def _swapped(date: dt.date) -> dt.date | None:
    if date.day > 12 or date.day == date.month:
        return None
    return date.replace(month=date.day, day=date.month)


def counting_keys(record: RecordFeatures) -> list[str]:
    """Keys stored only to count how many records share a value (never used as blocks): an
    address held by many records (a branch's address typed in as a placeholder) stops counting."""
    if record.address is not None:
        return [index_key(f"ad:{record.address.text}")]
    return []
