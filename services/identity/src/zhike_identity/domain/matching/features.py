"""A source record reduced to comparable, normalised features (unusable values noted, not used)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from zhike_identity.domain.model import Gender
from zhike_identity.domain.normalise import (
    Address,
    IdentityDocument,
    PersonName,
    Phone,
    Unusable,
    infer_id_kind,
    normalise_address,
    normalise_email,
    normalise_id,
    normalise_name,
    normalise_phone,
    parse_date,
    parse_gender,
)

T = TypeVar("T")

# Records repeat their values (one customer's records, a household's phone and address, a
# branch's address): each recent distinct value is normalised once. Bounded, so a service keeps
# the most recent; a batch of 100,000 records holds about 36,000 distinct names.
_DISTINCT_VALUES_KEPT = 32_768


def _once_per_value(normalise: Callable[..., T]) -> Callable[..., T]:
    """`normalise`, remembering each value's outcome: its result (immutable) or why it is
    unusable (kept as its reason and detail, not the exception and its traceback's frames, and
    raised again as a new exception). Its arguments are the key: the text, and for a document
    or a date the day it is judged on."""

    @functools.lru_cache(maxsize=_DISTINCT_VALUES_KEPT)
    def outcome(*args: object) -> tuple[T, None] | tuple[None, tuple[str, str]]:
        try:
            return normalise(*args), None
        except Unusable as error:
            return None, (error.reason, error.detail)

    def remembered(*args: object) -> T:
        value, unusable = outcome(*args)
        if unusable is not None:
            raise Unusable(*unusable)
        return value  # type: ignore[return-value]  # not unusable: the value

    return remembered


_name = _once_per_value(normalise_name)
_phone = _once_per_value(normalise_phone)
_email = _once_per_value(normalise_email)
_address = _once_per_value(normalise_address)
_document = _once_per_value(normalise_id)
_date = _once_per_value(parse_date)


@dataclass(frozen=True)
class RawRecord:
    """A source record as text, the way a bulk file or an API call carries it."""

    source: str
    source_id: str
    full_name: str = ""
    id_type: str = ""  # RESIDENT_ID, PASSPORT, … or empty
    id_number: str = ""
    phone: str = ""
    email: str = ""
    birth_date: str = ""
    gender: str = ""
    address: str = ""


@dataclass(frozen=True)
class Problem:
    field: str
    reason: str


@dataclass(frozen=True)
class RecordFeatures:
    source: str
    source_id: str
    name: PersonName | None
    document: IdentityDocument | None
    phone: Phone | None
    email: str | None
    birth_date: dt.date | None
    gender: Gender | None
    address: Address | None
    problems: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)

    @property
    def resident_id(self) -> str | None:
        """The valid resident ID number, the one identifier trusted as proof on its own."""
        doc = self.document
        if doc is not None and doc.kind == "RESIDENT_ID" and doc.valid:
            return doc.number
        return None


def extract_features(raw: RawRecord, today: dt.date | None = None) -> RecordFeatures:
    problems: list[Problem] = []
    today = today or dt.date.today()  # one day for the whole record, and a key for the memo

    def attempt(field_name: str, parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except Unusable as error:
            if error.reason != "empty":
                problems.append(Problem(field_name, error.reason))
            return None

    name = attempt("full_name", lambda: _name(raw.full_name)) if raw.full_name else None
    document = None
    if raw.id_number.strip():
        kind = raw.id_type.strip().upper() or infer_id_kind(raw.id_number) or "OTHER"
        document = attempt("id_number", lambda: _document(kind, raw.id_number, today))
    phone = attempt("phone", lambda: _phone(raw.phone)) if raw.phone.strip() else None
    email = attempt("email", lambda: _email(raw.email)) if raw.email.strip() else None
    birth_date = (
        attempt("birth_date", lambda: _date(raw.birth_date, today))
        if raw.birth_date.strip()
        else None
    )
    gender = attempt("gender", lambda: parse_gender(raw.gender)) if raw.gender.strip() else None
    address = attempt("address", lambda: _address(raw.address)) if raw.address.strip() else None
    # A valid resident ID number carries the birth date and sex: trust it over a typed field,
    # and note the disagreement.
    if document is not None and document.valid and document.birth_date is not None:
        if birth_date is not None and birth_date != document.birth_date:
            problems.append(Problem("birth_date", "differs_from_id"))
        birth_date = document.birth_date
        if document.male is not None:
            from_id = Gender.MALE if document.male else Gender.FEMALE
            if gender is not None and gender != from_id:
                problems.append(Problem("gender", "differs_from_id"))
            gender = from_id
    return RecordFeatures(
        source=raw.source,
        source_id=raw.source_id,
        name=name,
        document=document,
        phone=phone,
        email=email,
        birth_date=birth_date,
        gender=gender,
        address=address,
        problems=tuple(problems),
    )
