"""Field-by-field comparison of two records into agreement levels (a Fellegi–Sunter pattern).

Each field gets one level from a small ordered set; "null" means "not comparable" (missing on a
side, a placeholder, or switched off by a guardrail) and contributes no weight either way.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler, Levenshtein

from zhike_identity.domain.matching.features import RecordFeatures
from zhike_identity.domain.normalise.variants import are_name_variants

NULL = "null"

# Levels per field, strongest agreement first. The model holds an m and u probability for each.
LEVELS: dict[str, tuple[str, ...]] = {
    "id": ("exact_valid", "exact", "close", "different"),
    "name": ("exact_hanzi", "exact_pinyin", "close", "variant", "partial", "different"),
    "birth_date": ("exact", "close", "different"),
    "gender": ("same", "different"),
    "phone": ("same", "different"),
    "email": ("same", "different"),
    "address": ("exact", "similar", "different"),
}
FIELDS: tuple[str, ...] = tuple(LEVELS)

# Name levels under which a shared phone, e-mail or address is no evidence: households share
# landlines and addresses, and carriers recycle mobile numbers to strangers.
_NAMES_DISAGREE = {"partial", "different"}
_SHARED_IDENTIFIER_FIELDS = ("phone", "email", "address")

Pattern = tuple[str, ...]


class Frequencies:
    """How many records hold a value, and how many *people*: a phone, e-mail or address held by
    more people than `shared_limit` stops counting as evidence (a branch's address typed in as a
    placeholder, a block of flats written without the flat), while one customer's own address on
    his ten records stays his.

    `people` counts distinct people per value where the caller knows them (the service: distinct
    parties; the batch resolver: distinct names and birth dates); where it does not, records
    stand in for people."""

    def __init__(
        self,
        counts: dict[tuple[str, str], int],
        total: int,
        shared_limit: int,
        people: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self._counts = counts
        self._people = people or {}
        self.total = max(total, 1)
        self.shared_limit = shared_limit

    def count(self, kind: str, value: str) -> int:
        return self._counts.get((kind, value), 0)

    def people(self, kind: str, value: str) -> int:
        return self._people.get((kind, value), self.count(kind, value))

    def too_common(self, kind: str, value: str) -> bool:
        return self.people(kind, value) > self.shared_limit


_SAME_NAMES = frozenset({"exact_hanzi", "exact_pinyin", "close", "variant"})


def same_person(a: RecordFeatures, b: RecordFeatures) -> bool:
    """Whether two records holding one value look like one person by name and birth date (for
    counting the people who share the value, not for linking): the names agree at least as
    variants and the birth dates do not disagree. A record with neither is nobody in particular
    and counts as someone else."""
    if (a.name is None and a.birth_date is None) or (b.name is None and b.birth_date is None):
        return False
    return _name_level(a, b) in _SAME_NAMES and _birth_level(a, b) != "different"


def veto(a: RecordFeatures, b: RecordFeatures) -> str | None:
    """Hard rule: two *valid* resident ID numbers that differ are never the same person."""
    if resident_ids_differ(a.resident_id, b.resident_id):
        return "different_valid_resident_ids"
    return None


def resident_ids_differ(a: str | None, b: str | None) -> bool:
    """The veto's rule on two records' valid resident ID numbers (RecordFeatures.resident_id)."""
    return a is not None and b is not None and a != b


def _id_level(a: RecordFeatures, b: RecordFeatures) -> str:
    da, db = a.document, b.document
    if da is None or db is None or da.kind != db.kind:
        return NULL
    if da.number == db.number:
        return "exact_valid" if da.valid and db.valid else "exact"
    if da.valid and db.valid and da.kind == "RESIDENT_ID":
        return "different"  # and a veto
    if DamerauLevenshtein.distance(da.number, db.number, score_cutoff=2) <= 1:
        return "close"  # one mistyped or swapped digit
    return "different"


def _similar(x: str, y: str) -> float:
    return JaroWinkler.similarity(x, y) if x and y else 0.0


def _name_level(a: RecordFeatures, b: RecordFeatures) -> str:
    na, nb = a.name, b.name
    if na is None or nb is None:
        return NULL
    if na.hanzi is not None and na.hanzi == nb.hanzi:
        return "exact_hanzi"
    if na.full == nb.full:
        return "exact_pinyin"  # a homophone, a romanisation, or another script
    sa, ga, sb, gb = na.surname, na.given, nb.surname, nb.given
    # The four part-to-part similarities, each worked out once: the levels below read them in
    # every combination, and a random pair (the model's u estimate) goes through all of them.
    ss, gg = _similar(sa, sb), _similar(ga, gb)
    sg, gs = _similar(sa, gb), _similar(ga, sb)
    # A name of one part on both sides ("kaitlin", "katilin") is compared by that part alone.
    givens = 1.0 if not ga and not gb else gg
    # Both parts nearly equal, in either order (given-name-first Latin spellings swap them).
    # The whole-name comparison is for names split differently ("liujian jun"); where the
    # surnames agree, the given names alone decide (王安 and 王娜, "wangan" and "wangna", are
    # twins' names, not a typo).
    if (
        max(min(ss, givens), min(sg, gs)) >= 0.88
        or (ss < 0.92 and JaroWinkler.similarity(na.full, nb.full) >= 0.93)
        or sorted(na.syllables) == sorted(nb.syllables)
    ):
        return "close"
    # A nickname or short form of the given name ("Artie" / "Arthur", "Bill" / "William") with
    # the surname nearly equal, in either order: a level of its own, stronger than "partial"
    # (which siblings and twins reach) and not subject to the household guardrail.
    if (
        sa
        and ga
        and sb
        and gb
        and (
            (ss >= 0.92 and are_name_variants(ga, gb))
            or (gg >= 0.92 and are_name_variants(sa, sb))
            or (sg >= 0.92 and are_name_variants(ga, sb))
            or (gs >= 0.92 and are_name_variants(sa, gb))
        )
    ):
        return "variant"
    # One part agrees and the other does not or is missing: siblings, twins, spouses — or one
    # person whose other name part was mistyped beyond recognition, replaced or left out. The
    # parts are compared across too: a Latin name's order is a guess ("Webb" vs "Amber Webb").
    # (An empty part is similar to nothing.)
    if max(ss, gg, sg, gs) >= 0.92:
        return "partial"
    return "different"


@functools.lru_cache(maxsize=65536)
def _date_digits(date: dt.date) -> str:
    return f"{date.year:04d}{date.month:02d}{date.day:02d}"


def _birth_level(a: RecordFeatures, b: RecordFeatures) -> str:
    da, db = a.birth_date, b.birth_date
    if da is None or db is None:
        return NULL
    if da == db:
        return "exact"
    sa, sb = _date_digits(da), _date_digits(db)
    if DamerauLevenshtein.distance(sa, sb, score_cutoff=2) <= 1 or (
        da.year == db.year and da.month == db.day and da.day == db.month
    ):
        return "close"
    return "different"


def _same_or_different(left: object, right: object) -> str:
    if left is None or right is None:
        return NULL
    return "same" if left == right else "different"


def _address_level(a: RecordFeatures, b: RecordFeatures) -> str:
    aa, ab = a.address, b.address
    if aa is None or ab is None:
        return NULL
    if aa.text == ab.text:
        return "exact"
    numbers_a, numbers_b = _numbers(aa.text), _numbers(ab.text)
    if (
        len(numbers_a) >= 2
        and len(numbers_b) >= 2
        and set(numbers_a).isdisjoint(numbers_b)
        and DamerauLevenshtein.distance(" ".join(numbers_a), " ".join(numbers_b), score_cutoff=2)
        > 1
    ):
        # A house and a flat number on each side, none in common nor one mistyped digit apart:
        # another home on the same street, however alike the rest ("Flat 29F, 357 Nathan Road"
        # and "Flat 24B, 89 Nathan Road"). A lone house number may be mistyped beyond that.
        return "different"
    ta, tb = set(aa.tokens), set(ab.tokens)
    if ta and tb:
        shared = len(ta & tb)
        only_a, only_b = ta - tb, tb - ta
        # Mistyped words can add at most min(|only_a|, |only_b|): look for them only when that
        # could reach the threshold (most pairs compared are strangers' addresses).
        most = shared + min(len(only_a), len(only_b))
        if most / (len(ta) + len(tb) - most) >= 0.6:
            shared += _mistyped_words(only_a, only_b)
            if shared / (len(ta) + len(tb) - shared) >= 0.6:
                return "similar"
    if Levenshtein.normalized_similarity(aa.text, ab.text) >= 0.85:
        return "similar"  # typing errors inside words
    return "different"


_NUMBERS = re.compile(r"[0-9]+")


@functools.lru_cache(maxsize=65536)
def _numbers(text: str) -> tuple[str, ...]:
    return tuple(_NUMBERS.findall(text))


def _is_long_word(token: str) -> bool:
    # Latin words only: Han addresses are compared by character pairs, where one character
    # more or less is already counted.
    return len(token) >= 5 and token.isascii() and token.isalpha()


def _mistyped_words(left: set[str], right: set[str]) -> int:
    """How many words of `left` appear in `right` with one letter mistyped, missing or swapped.
    Only words of five letters or more: a house number or a short word that differs by one
    character is another place, not a typo."""
    candidates = sorted(w for w in right if _is_long_word(w))
    found = 0
    for word in sorted(w for w in left if _is_long_word(w)):
        for other in candidates:
            if DamerauLevenshtein.distance(word, other, score_cutoff=1) <= 1:
                candidates.remove(other)
                found += 1
                break
    return found


def compare(
    a: RecordFeatures,
    b: RecordFeatures,
    frequencies: Frequencies | None = None,
    *,
    household_guardrail: bool = True,
) -> Pattern:
    """The agreement level of every field, in FIELDS order, with the guardrails applied.

    `household_guardrail=False` is for evaluating the model on data known to hold no households
    or twins (FEBRL); the service always applies it."""
    # The levels as locals, not through _levels' dict: compare runs for every candidate and
    # random pair of a batch (about a million for 100,000 records).
    id_level = _id_level(a, b)
    name = _name_level(a, b)
    phone_a = a.phone.e164 if a.phone else None
    phone = _same_or_different(phone_a, b.phone.e164 if b.phone else None)
    email = _same_or_different(a.email, b.email)
    address = _address_level(a, b)
    if phone in _AGREES or email in _AGREES or address in _AGREES:
        # The guardrails (_shared_by_household, Frequencies.too_common) on what agrees.
        household = (
            household_guardrail and name in _NAMES_DISAGREE and id_level not in _DOCUMENTS_AGREE
        )
        if phone in _AGREES and (household or _too_common(frequencies, "phone", phone_a)):
            phone = NULL
        if email in _AGREES and (household or _too_common(frequencies, "email", a.email)):
            email = NULL
        address_a = a.address.text if a.address else None
        if address in _AGREES and (household or _too_common(frequencies, "address", address_a)):
            address = NULL
    return (
        id_level,
        name,
        _birth_level(a, b),
        _same_or_different(a.gender, b.gender),
        phone,
        email,
        address,
    )


def _too_common(frequencies: Frequencies | None, kind: str, value: str | None) -> bool:
    return frequencies is not None and value is not None and frequencies.too_common(kind, value)


def shared_by_household(a: RecordFeatures, b: RecordFeatures) -> tuple[str, ...]:
    """The shared identifiers (phone, e-mail, address) the household guardrail sets aside for
    this pair: those two records agree on while their names disagree and no document agrees.
    The evaluation uses it to tell the misses this rule causes from the rest."""
    return _shared_by_household(_levels(a, b))


_AGREES = ("same", "exact", "similar")


# Households and new owners of recycled numbers never share an identity document number.
_DOCUMENTS_AGREE = ("exact_valid", "exact", "close")


def _shared_by_household(levels: dict[str, str]) -> tuple[str, ...]:
    if levels["name"] not in _NAMES_DISAGREE or levels["id"] in _DOCUMENTS_AGREE:
        return ()
    return tuple(f for f in _SHARED_IDENTIFIER_FIELDS if levels[f] in _AGREES)


def _levels(a: RecordFeatures, b: RecordFeatures) -> dict[str, str]:
    return {
        "id": _id_level(a, b),
        "name": _name_level(a, b),
        "birth_date": _birth_level(a, b),
        "gender": _same_or_different(a.gender, b.gender),
        "phone": _same_or_different(
            a.phone.e164 if a.phone else None, b.phone.e164 if b.phone else None
        ),
        "email": _same_or_different(a.email, b.email),
        "address": _address_level(a, b),
    }
