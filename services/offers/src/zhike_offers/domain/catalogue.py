"""The offer catalogue: declarative, versioned offers, validated and compiled before use.

An offer is a plain document (what YAML or JSON parse to, or what an admin RPC sends); the shipped
defaults are in `zhike_offers/catalogue/` (one file per offer, format there). `compile_offer`
checks every field and compiles its rules; `compile_catalogue` does it for a set of offers.
Every problem names the source (file), the offer and the field — for a rule also the line and
column inside the clause — and all problems are reported at once. `CatalogueError` is an
`InvalidArgument`, so an admin RPC answers INVALID_ARGUMENT naming the fields and stores nothing.

Amounts are decimal strings or integers, never YAML floats (a float is already rounded by the
time it reaches us). Times carry a time zone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, TypeVar

from zhike_offers.domain.eligibility import (
    CHANNELS,
    MAX_CLAUSES,
    OUTBOUND_CHANNELS,
    VARIABLES,
    Clause,
    RuleBatch,
    RuleEnvironment,
    RuleError,
)
from zhike_offers.domain.facts import FactKind
from zhike_runtime.errors import FieldViolation, InvalidArgument
from zhike_runtime.validation import Violations

T = TypeVar("T")

LANGUAGES = ("zh-CN", "en")
OFFER_ID_PATTERN = re.compile(r"[a-z0-9_-]{3,64}")
PLACEMENT_PATTERN = re.compile(r"[a-z0-9_]{1,64}")
CONTEXT_KEY_PATTERN = re.compile(r"[a-z0-9_]{1,32}=[A-Za-z0-9_.-]{1,64}")
MAX_VALUE_CNY = Decimal(1_000_000_000)
MAX_WEIGHT = Decimal(100)  # levers and context boosts
# Decimal places kept: a value in CNY to the fen; a weight to a millionth. More is refused,
# not rounded: "1e-2000000" passed as above 0 and was stored as "0".
VALUE_PLACES = 2
WEIGHT_PLACES = 6
MAX_DAYS = 366
# Entries of an offer's lists and tables (channels, placements, depends_on, context_boosts): far
# above any real offer, and what keeps a document, and every decision's work on it, bounded.
MAX_ENTRIES = 50


class Category(enum.StrEnum):
    MARKETING = "marketing"  # counts against the marketing budget; needs marketing consent
    SERVICE = "service"  # servicing the customer: outside the budget


@dataclass(frozen=True)
class ContactLimits:
    """Per-offer caps: at most `max_contacts` contacts (outbound decisions and impressions) in
    the last `window_days`; after a decline, nothing for `cool_down_days` (None: the contact
    policy's default)."""

    max_contacts: int = 3
    window_days: int = 30
    cool_down_days: int | None = None


@dataclass(frozen=True)
class Offer:
    offer_id: str
    version: int
    names: Mapping[str, str]  # {"zh-CN": …, "en": …}
    product_code: str
    category: Category
    product_risk: int  # 0 = not an investment product, 1..5 = R1..R5
    channels: tuple[str, ...]  # sorted
    placements: tuple[str, ...]  # sorted; empty = any placement
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    eligibility: tuple[Clause, ...]
    applicability: tuple[Clause, ...]
    value: Decimal  # CNY, expected value of an acceptance
    levers: Decimal  # business weight, > 0
    contact_limits: ContactLimits
    outbound: bool  # decided proactively on profile changes, for its outbound channels
    templates: Mapping[str, str]  # channel → template id
    depends_on: frozenset[FactKind]  # as declared; see facts_affecting for the full set
    context_boosts: Mapping[str, Decimal]  # "journey=fx_transfer" → factor of C
    retired: bool
    personalised: bool

    @property
    def marketing(self) -> bool:
        return self.category is Category.MARKETING

    def valid_at(self, now: dt.datetime) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until

    def to_document(self) -> dict[str, Any]:
        """The offer as a plain document in canonical form: `compile_offer` of it gives an equal
        offer, and the catalogue version is a digest of these."""
        return {
            "offer_id": self.offer_id,
            "version": self.version,
            "names": dict(sorted(self.names.items())),
            "product_code": self.product_code,
            "category": self.category.value,
            "product_risk": self.product_risk,
            "channels": list(self.channels),
            "placements": list(self.placements),
            "valid_from": _time_text(self.valid_from),
            "valid_until": _time_text(self.valid_until),
            "eligibility": [clause.text for clause in self.eligibility],
            "applicability": [clause.text for clause in self.applicability],
            "value": _decimal_text(self.value),
            "levers": _decimal_text(self.levers),
            "contact_limits": dataclasses.asdict(self.contact_limits),
            "outbound": self.outbound,
            "templates": dict(sorted(self.templates.items())),
            "depends_on": sorted(kind.value for kind in self.depends_on),
            "context_boosts": {k: _decimal_text(v) for k, v in sorted(self.context_boosts.items())},
            "retired": self.retired,
            "personalised": self.personalised,
        }


_FACT_OF_VARIABLE = {variable.name: variable.fact for variable in VARIABLES}


def facts_affecting(offer: Offer) -> frozenset[FactKind]:
    """The fact kinds whose change can change this offer's decision for a party: what it
    declares, what its rules read, its risk when it is an investment product, and consent when
    it goes out. A profile change touching none of them needs no new decision."""
    kinds = set(offer.depends_on)
    for clause in (*offer.eligibility, *offer.applicability):
        kinds.update(k for name in clause.variables if (k := _FACT_OF_VARIABLE[name]) is not None)
    if offer.product_risk > 0:
        kinds.add(FactKind.RISK)
    if offer.outbound:
        kinds.add(FactKind.CONSENT)
    return frozenset(kinds)


# -- problems --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferProblem:
    source: str  # the file, or "offers[2]"
    offer_id: str  # "" when the document has no usable id
    field: str  # "eligibility[1]", "contact_limits.window_days", "(document)"
    message: str
    line: int | None = None  # rules: 1-based position in the clause
    column: int | None = None

    def __str__(self) -> str:
        offer = f" offer {self.offer_id!r}" if self.offer_id else ""
        where = f" at {self.line}:{self.column}" if self.line is not None else ""
        return f"{self.source}:{offer} {self.field}{where}: {self.message}"

    def violation(self) -> FieldViolation:
        where = f"at {self.line}:{self.column}: " if self.line is not None else ""
        offer = f"offer {self.offer_id!r}: " if self.offer_id else ""
        return FieldViolation(self.field, f"{offer}{where}{self.message}")


class CatalogueError(InvalidArgument):
    """Offers that cannot be saved or loaded; every problem named."""

    def __init__(self, problems: Sequence[OfferProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__([problem.violation() for problem in self.problems])
        self.args = ("; ".join(str(problem) for problem in self.problems),)


class _Invalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- the catalogue ---------------------------------------------------------------------------


class Catalogue:
    """A set of offers (sorted by id, ids unique) with a version computed from their content:
    the same offers give the same version, whatever order they came in.

    `rules` (every offer's clauses as one batch) is compiled on first use, ~0.5 ms an offer:
    touch it once after loading so the first decision does not pay for it.
    """

    def __init__(self, offers: Iterable[Offer], environment: RuleEnvironment) -> None:
        ordered = sorted(offers, key=lambda offer: offer.offer_id)
        seen: set[str] = set()
        for offer in ordered:
            if offer.offer_id in seen:
                raise CatalogueError(
                    [OfferProblem("catalogue", offer.offer_id, "offer_id", "listed twice")]
                )
            seen.add(offer.offer_id)
        self.offers: tuple[Offer, ...] = tuple(ordered)
        self.environment = environment
        self._by_id = {offer.offer_id: offer for offer in self.offers}
        content = {
            "currencies": dict(sorted(environment.currencies.items())),
            "offers": [offer.to_document() for offer in self.offers],
        }
        canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        self.version = hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def offer(self, offer_id: str) -> Offer | None:
        return self._by_id.get(offer_id)

    @functools.cached_property
    def rules(self) -> RuleBatch:
        """Group i: the eligibility then applicability clauses of `offers[i]`; none for a
        retired offer, which is never decided (its clauses would cost every decision)."""
        groups = [
            () if offer.retired else (*offer.eligibility, *offer.applicability)
            for offer in self.offers
        ]
        return RuleBatch(self.environment, groups)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalogue) and other.version == self.version

    def __hash__(self) -> int:
        return hash(self.version)

    def __repr__(self) -> str:
        return f"Catalogue(version={self.version!r}, offers={len(self.offers)})"


def compile_catalogue(
    documents: Mapping[str, object] | Sequence[object], environment: RuleEnvironment
) -> Catalogue:
    """Validate and compile every offer document. A mapping names each document's source (its
    file); a sequence is named `offers[i]`. Raises `CatalogueError` listing every problem."""
    if isinstance(documents, Mapping):
        named = list(documents.items())
    else:
        named = [(f"offers[{index}]", document) for index, document in enumerate(documents)]
    offers: list[Offer] = []
    problems: list[OfferProblem] = []
    first_source: dict[str, str] = {}
    for source, document in named:
        try:
            offer = compile_offer(document, environment, source=source)
        except CatalogueError as error:
            problems.extend(error.problems)
            continue
        if offer.offer_id in first_source:
            message = f"also defined in {first_source[offer.offer_id]}"
            problems.append(OfferProblem(source, offer.offer_id, "offer_id", message))
            continue
        first_source[offer.offer_id] = source
        offers.append(offer)
    if problems:
        raise CatalogueError(problems)
    return Catalogue(offers, environment)


_FIELDS = (
    "offer_id",
    "version",
    "names",
    "product_code",
    "category",
    "product_risk",
    "channels",
    "placements",
    "valid_from",
    "valid_until",
    "eligibility",
    "applicability",
    "value",
    "levers",
    "contact_limits",
    "outbound",
    "templates",
    "depends_on",
    "context_boosts",
    "retired",
    "personalised",
)
_REQUIRED = ("offer_id", "version", "names", "product_code", "category", "channels", "value")


def compile_offer(
    document: object, environment: RuleEnvironment, *, source: str = "offer"
) -> Offer:
    """One offer from its document; `CatalogueError` names every problem in it."""
    if not isinstance(document, Mapping):
        raise CatalogueError([OfferProblem(source, "", "(document)", "must be a mapping")])
    raw = document.get("offer_id")
    offer_id = raw if isinstance(raw, str) and OFFER_ID_PATTERN.fullmatch(raw) else ""
    problems: list[OfferProblem] = []

    def problem(field: str, message: str, line: int | None = None, col: int | None = None) -> None:
        problems.append(OfferProblem(source, offer_id, field, message, line, col))

    for key in document:
        if key not in _FIELDS:
            problem(str(key), f"unknown field; known: {', '.join(_FIELDS)}")
    for key in _REQUIRED:
        if key not in document:
            problem(key, "missing")

    def attempt(key: str, parse: Callable[[Any, str], T], default: T) -> T:
        if key not in document:
            return default
        try:
            return parse(document[key], key)
        except _Invalid as invalid:
            problem(invalid.field, invalid.message)
            return default

    def rules(key: str) -> tuple[Clause, ...]:
        texts: tuple[str, ...] = attempt(key, _clause_texts, ())
        clauses: list[Clause] = []
        for index, text in enumerate(texts):
            try:
                clauses.append(environment.compile(f"{key}[{index}]", text))
            except RuleError as error:
                problem(error.field, error.message, error.line, error.column)
        return tuple(clauses)

    attempt("offer_id", _offer_id, "")
    version = attempt("version", lambda v, f: _int(v, f, 1, 2**31 - 1), 1)
    names: Mapping[str, str] = attempt("names", _names, MappingProxyType({}))
    product_code = attempt("product_code", _token, "")
    category = attempt("category", _category, Category.MARKETING)
    product_risk = attempt("product_risk", lambda v, f: _int(v, f, 0, 5), 0)
    channels: tuple[str, ...] = attempt("channels", _channels, ())
    placements: tuple[str, ...] = attempt("placements", _placements, ())
    valid_from = attempt("valid_from", _optional_time, None)
    valid_until = attempt("valid_until", _optional_time, None)
    eligibility = rules("eligibility")
    applicability = rules("applicability")
    value = attempt(
        "value", lambda v, f: _decimal(v, f, Decimal(0), MAX_VALUE_CNY, VALUE_PLACES), Decimal(0)
    )
    levers = attempt("levers", _weight, Decimal(1))
    limits = attempt("contact_limits", _contact_limits, ContactLimits())
    outbound = attempt("outbound", _bool, False)
    templates: Mapping[str, str] = attempt("templates", _templates, MappingProxyType({}))
    depends_on: frozenset[FactKind] = attempt("depends_on", _depends_on, frozenset())
    boosts: Mapping[str, Decimal] = attempt("context_boosts", _context_boosts, MappingProxyType({}))
    retired = attempt("retired", _bool, False)
    personalised = attempt("personalised", _bool, True)

    # Across fields.
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        problem("valid_until", "must be after valid_from")
    for channel in templates:
        if channel not in channels:
            problem(f"templates.{channel}", "is not one of the offer's channels")
    for channel in channels:
        if channel in OUTBOUND_CHANNELS and channel not in templates:
            problem("templates", f"needs a template for {channel}, an outbound channel")
    if outbound and not OUTBOUND_CHANNELS.intersection(channels) and "channels" in document:
        problem("outbound", f"needs an outbound channel ({', '.join(sorted(OUTBOUND_CHANNELS))})")
    if not personalised:
        personal = {variable.name for variable in VARIABLES if variable.personal}
        for clause in (*eligibility, *applicability):
            used = sorted(clause.variables & personal)
            if used:
                problem(
                    clause.field,
                    f"a personalised: false offer may not read the party's facts "
                    f"({', '.join(used)}); only channel and placement",
                )
    if problems:
        raise CatalogueError(problems)
    return Offer(
        offer_id=offer_id,
        version=version,
        names=names,
        product_code=product_code,
        category=category,
        product_risk=product_risk,
        channels=channels,
        placements=placements,
        valid_from=valid_from,
        valid_until=valid_until,
        eligibility=eligibility,
        applicability=applicability,
        value=value,
        levers=levers,
        contact_limits=limits,
        outbound=outbound,
        templates=templates,
        depends_on=depends_on,
        context_boosts=boosts,
        retired=retired,
        personalised=personalised,
    )


# -- fields ----------------------------------------------------------------------------------


def _offer_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not OFFER_ID_PATTERN.fullmatch(value):
        raise _Invalid(field, "3 to 64 of a-z, 0-9, '_' and '-'")
    return value


def _int(value: object, field: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _Invalid(field, f"must be an integer from {minimum} to {maximum}")
    return value


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(field, "must be true or false")
    return value


def _list(value: object, field: str, maximum: int = MAX_ENTRIES) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise _Invalid(field, "must be a list")
    if len(value) > maximum:
        raise _Invalid(field, f"at most {maximum} entries")
    return value


def _mapping(value: object, field: str, maximum: int | None = None) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(field, "must be a mapping")
    if maximum is not None and len(value) > maximum:
        raise _Invalid(field, f"at most {maximum} entries")
    return value


def _text(value: object, field: str, max_length: int = 200) -> str:
    """Free text under the platform's rules (no control or invisible characters, NFC)."""
    if not isinstance(value, str):
        raise _Invalid(field, "must be a string")
    violations = Violations()
    cleaned = violations.text(field, value, required=True, max_length=max_length)
    try:
        violations.raise_if_any()
    except InvalidArgument as error:
        raise _Invalid(field, error.violations[0].description) from None
    return cleaned


def _token(value: object, field: str) -> str:
    """A code (product, template): letters, digits, '-' and '_', as the platform's tokens."""
    if not isinstance(value, str):
        raise _Invalid(field, "must be a string")
    violations = Violations()
    token = violations.token(field, value)
    try:
        violations.raise_if_any()
    except InvalidArgument as error:
        raise _Invalid(field, error.violations[0].description) from None
    return token


def _names(value: object, field: str) -> Mapping[str, str]:
    names = _mapping(value, field)
    for language in names:
        if language not in LANGUAGES:
            raise _Invalid(f"{field}.{language}", f"languages are {', '.join(LANGUAGES)}")
    for language in LANGUAGES:
        if language not in names:
            raise _Invalid(f"{field}.{language}", "missing")
    return MappingProxyType(
        {language: _text(names[language], f"{field}.{language}") for language in LANGUAGES}
    )


def _category(value: object, field: str) -> Category:
    if value not in {category.value for category in Category}:
        raise _Invalid(field, f"{value!r}: categories are {', '.join(c.value for c in Category)}")
    return Category(value)


def _channels(value: object, field: str) -> tuple[str, ...]:
    listed = _list(value, field)
    if not listed:
        raise _Invalid(field, "needs at least one channel")
    for index, channel in enumerate(listed):
        if channel not in CHANNELS:
            raise _Invalid(f"{field}[{index}]", f"{channel!r}: channels are {', '.join(CHANNELS)}")
    if len(set(listed)) != len(listed):
        raise _Invalid(field, "lists a channel twice")
    return tuple(sorted(listed))


def _placements(value: object, field: str) -> tuple[str, ...]:
    listed = _list(value, field)
    for index, placement in enumerate(listed):
        if not isinstance(placement, str) or not PLACEMENT_PATTERN.fullmatch(placement):
            raise _Invalid(f"{field}[{index}]", "1 to 64 of a-z, 0-9 and '_'")
    return tuple(sorted(set(listed)))


def _optional_time(value: object, field: str) -> dt.datetime | None:
    """An aware date and time, in UTC; null is none (an open end)."""
    if value is None:
        return None
    parsed: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise _Invalid(field, "must be a date and time, ISO 8601: 2026-07-01T00:00:00+08:00")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Invalid(field, "needs a time zone: 2026-07-01T00:00:00+08:00")
    return parsed.astimezone(dt.UTC)


def _clause_texts(value: object, field: str) -> tuple[str, ...]:
    listed = _list(value, field, maximum=MAX_CLAUSES)
    for index, text in enumerate(listed):
        if not isinstance(text, str):
            raise _Invalid(f"{field}[{index}]", "must be a string holding a CEL expression")
    return tuple(listed)


def _decimal(value: object, field: str, minimum: Decimal, maximum: Decimal, places: int) -> Decimal:
    if isinstance(value, float):
        raise _Invalid(field, f'write {value!r} as a string ("{value}"): YAML floats are inexact')
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(field, 'must be a decimal string such as "1.5"')
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(field, f"{value!r} is not a decimal number") from None
    if not number.is_finite() or not minimum <= number <= maximum:
        raise _Invalid(field, f"must be from {minimum} to {maximum}")
    if _decimal_places(number) > places:
        raise _Invalid(field, f"must have at most {places} decimal places")
    return number


def _decimal_places(number: Decimal) -> int:
    """Places after the point, trailing zeros aside ("1.50" has 1), read from the digits as
    written: normalize() would round an exponent past the context's limit to 0 first."""
    if number.is_zero():
        return 0
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exponent - trailing)


def _weight(value: object, field: str) -> Decimal:
    number = _decimal(value, field, Decimal(0), MAX_WEIGHT, WEIGHT_PLACES)
    if number == 0:
        raise _Invalid(field, "must be above 0")
    return number


def _contact_limits(value: object, field: str) -> ContactLimits:
    limits = _mapping(value, field)
    known = ("max_contacts", "window_days", "cool_down_days")
    for key in limits:
        if key not in known:
            raise _Invalid(f"{field}.{key}", f"unknown field; known: {', '.join(known)}")
    default = ContactLimits()
    cool_down = limits.get("cool_down_days")
    return ContactLimits(
        max_contacts=_int(
            limits.get("max_contacts", default.max_contacts), f"{field}.max_contacts", 1, 100
        ),
        window_days=_int(
            limits.get("window_days", default.window_days), f"{field}.window_days", 1, MAX_DAYS
        ),
        cool_down_days=(
            None if cool_down is None else _int(cool_down, f"{field}.cool_down_days", 0, MAX_DAYS)
        ),
    )


def _templates(value: object, field: str) -> Mapping[str, str]:
    templates = _mapping(value, field)
    checked: dict[str, str] = {}
    for channel, template in templates.items():
        if channel not in CHANNELS:
            raise _Invalid(f"{field}.{channel}", f"channels are {', '.join(CHANNELS)}")
        checked[channel] = _token(template, f"{field}.{channel}")
    return MappingProxyType(dict(sorted(checked.items())))


def _depends_on(value: object, field: str) -> frozenset[FactKind]:
    listed = _list(value, field)
    kinds = [kind.value for kind in FactKind]
    for index, name in enumerate(listed):
        if name not in kinds:
            raise _Invalid(f"{field}[{index}]", f"{name!r}: facts are {', '.join(kinds)}")
    return frozenset(FactKind(name) for name in listed)


def _context_boosts(value: object, field: str) -> Mapping[str, Decimal]:
    # Capped as the offer's lists are, not at the request's context entries: one context key
    # may boost several of its values ("journey=fx_transfer", "journey=travel", …).
    boosts = _mapping(value, field, maximum=MAX_ENTRIES)
    checked: dict[str, Decimal] = {}
    for key, factor in boosts.items():
        if not isinstance(key, str) or not CONTEXT_KEY_PATTERN.fullmatch(key):
            raise _Invalid(f"{field}.{key}", 'a context key and value: "journey=fx_transfer"')
        checked[key] = _weight(factor, f"{field}.{key}")
    return MappingProxyType(dict(sorted(checked.items())))


def _time_text(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _decimal_text(value: Decimal) -> str:
    return format(value.normalize(), "f")
