"""The read model: a party's profile as its last change assessed it, stored with that change, so
that GetProfile answers from one row instead of reading every fact and assessing them again.

It is served only when it is what a fresh computation would give now:
- every change to a party's facts or links assesses the party again and rewrites its read model
  in the same transaction (`ProfileUpdates._publish`), so nothing else changes the answer…
- …within a day: it is served only if assessed as of today (averages, recency and risk validity
  move with the date), and
- only on the same basis: the assessment configuration, the bank's time zone and the code
  (`Facts.basis`): a new FX rate file or a new release assesses afresh.
Otherwise GetProfile computes the profile afresh (reads never write: the next change stores it).

The facts kept are the party's PartyFacts without their interactions (up to a thousand a party:
ListInteractions pages through them; their effect is in the assessment), and GetProfile shows
the same whichever way it got them. Stored as JSON: each dataclass as the list of its fields in
order, decoded by their type hints; the party id is the row's, not stored. A read model that no
longer decodes (a field added by a release, whose basis differs anyway) is not served.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import operator
import types
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union, get_args, get_origin, get_type_hints

from zhike_profile.domain.assessment import Assessment
from zhike_profile.domain.facts import PartyFacts


@dataclass(frozen=True)
class ReadModel:
    as_of: dt.date
    basis: str  # Facts.basis of the service that assessed it
    facts: PartyFacts  # without interactions
    assessment: Assessment

    def serves(self, today: dt.date, basis: str) -> bool:
        return self.as_of == today and self.basis == basis


def shown(facts: PartyFacts) -> PartyFacts:
    """The facts a profile read shows (and the read model keeps): all but the interactions."""
    return dataclasses.replace(facts, interactions=()) if facts.interactions else facts


def to_json(model: ReadModel) -> dict[str, Any]:
    facts = _encoder(PartyFacts)(dataclasses.replace(model.facts, party_id="", interactions=()))
    assessment = _encoder(Assessment)(dataclasses.replace(model.assessment, party_id=""))
    return {
        "as_of": model.as_of.isoformat(),
        "basis": model.basis,
        "facts": facts,
        "assessment": assessment,
    }


def from_json(party_id: str, data: Any) -> ReadModel | None:
    """The stored read model of `party_id`; None if there is none or it does not decode."""
    if not isinstance(data, dict):
        return None
    try:
        facts: PartyFacts = _decoder(PartyFacts)(data["facts"])
        assessment: Assessment = _decoder(Assessment)(data["assessment"])
        return ReadModel(
            as_of=dt.date.fromisoformat(data["as_of"]),
            basis=str(data["basis"]),
            facts=dataclasses.replace(facts, party_id=party_id),
            assessment=dataclasses.replace(assessment, party_id=party_id),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None


@functools.cache
def _encoder(kind: Any) -> Callable[[Any], Any]:
    """A function from a value of `kind` to its JSON form, built once per type."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        members = [member for member in get_args(kind) if member is not type(None)]
        if len(members) != 1:
            raise TypeError(f"{kind}: only X | None unions are kept")
        return _optional(_encoder(members[0]))
    if origin is tuple:
        items = get_args(kind)
        if len(items) == 2 and items[1] is Ellipsis:
            item = _encoder(items[0])
            return lambda value: [item(v) for v in value]
        each = [_encoder(i) for i in items]
        return lambda value: [e(v) for e, v in zip(each, value, strict=True)]
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = get_type_hints(kind)
        names = [f.name for f in dataclasses.fields(kind)]
        fields = [_encoder(hints[name]) for name in names]
        values = operator.attrgetter(*names)
        if len(names) == 1:
            return lambda value: [fields[0](values(value))]
        return lambda value: [e(v) for e, v in zip(fields, values(value), strict=True)]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return operator.attrgetter("value")
    if kind in (dt.datetime, dt.date, dt.time):
        return lambda value: value.isoformat()
    if kind is Decimal:
        return str
    if kind in (str, int, bool):
        return _same
    raise TypeError(f"cannot keep a {kind} in a read model")


def _same(value: Any) -> Any:
    return value


def _optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else inner(value)


def _plain(kind: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        # bool is an int to isinstance; an int where a bool is expected is corrupt all the same.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"expected {kind.__name__}")
        return value

    return check


@functools.cache
def _decoder(kind: Any) -> Callable[[Any], Any]:
    """A function from the JSON form back to a value of `kind`, built once per type."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        members = [member for member in get_args(kind) if member is not type(None)]
        if len(members) != 1:
            raise TypeError(f"{kind}: only X | None unions are kept")
        return _optional(_decoder(members[0]))
    if origin is tuple:
        items = get_args(kind)
        if len(items) == 2 and items[1] is Ellipsis:
            item = _decoder(items[0])
            return lambda value: tuple(item(v) for v in value)
        each = [_decoder(i) for i in items]
        return lambda value: tuple(d(v) for d, v in zip(each, value, strict=True))
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = get_type_hints(kind)
        fields = [_decoder(hints[f.name]) for f in dataclasses.fields(kind)]
        cls: Any = kind
        return lambda value: cls(*(d(v) for d, v in zip(fields, value, strict=True)))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind
    decoders: dict[Any, Callable[[Any], Any]] = {
        dt.datetime: dt.datetime.fromisoformat,
        dt.date: dt.date.fromisoformat,
        dt.time: dt.time.fromisoformat,
        Decimal: Decimal,
        str: _plain(str),
        int: _plain(int),
        bool: _plain(bool),
    }
    if kind in decoders:
        return decoders[kind]
    raise TypeError(f"cannot keep a {kind} in a read model")
