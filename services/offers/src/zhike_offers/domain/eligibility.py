"""Offer rules in CEL (Google's Common Expression Language, through cel-expr-python).

An offer's `eligibility` and `applicability` are lists of CEL clauses; every clause must hold.
Each is compiled and type-checked against one declared environment when the offer is saved, so
an unknown name or a type error is refused then, naming the offer field (`eligibility[1]`) and
the line and column in the clause — never discovered while deciding. A clause must be a bool, and
holds no control or invisible character (not even in a string literal), as no catalogue text may.

What a clause sees (one activation per decision):

    assets        map(string, double)  major units per currency; every configured currency is
                                       present (0.0 when none): assets["USD"] >= 5000.0
    liabilities   map(string, double)  the same for what the party owes
    product_lines list(string)         lines of open holdings: "credit_card", "mortgage"…
    products      list(string)         product codes of open holdings
    tier, value_band  string           "" when not known yet
    segments      list(string)
    risk_level    int                  0 = none or expired, 1..5 = C1..C5
    age           int                  whole years (AgeChanged, up to a day late on a
                                       birthday); -1 when unknown
    channel       string               the decision's channel: "sms", "mobile_app"…
    placement     string               the decision's placement ("" for outbound)

Numbers are typed as in CEL: `assets["USD"] >= 5000` is a type error (double against int), so
write `5000.0`. A clause that fails while evaluating (a currency outside the configured list,
say) does not hold, and the explanation says what CEL's error was, without the values it quotes.

Compiling is slow (an environment takes ~80 ms to build, a clause ~0.1 ms); evaluating a clause
from Python costs ~2-3 µs, nearly all of it the call itself. So a decision evaluates every offer's
rules in one call (`RuleBatch`: one CEL list naming each offer's first false clause, ~0.2 µs a
clause), and goes clause by clause only when a clause cannot be evaluated. Build one
`RuleEnvironment` per process, compile once per catalogue, build one activation per decision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cel_expr_python import cel

from zhike_offers.domain.facts import FactKind, OfferFacts

CHANNELS = ("sms", "email", "push", "mobile_app", "branch", "call_centre")
# Channels the bank reaches out on: decided proactively, limited by the marketing budget and
# needing the party's consent; the others are where the customer came to the bank.
OUTBOUND_CHANNELS = frozenset({"sms", "email", "push"})

# ISO 4217 code → minor-unit exponent of the currencies every `assets`/`liabilities` map holds.
DEFAULT_CURRENCIES: Mapping[str, int] = MappingProxyType(
    {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "GBP": 2, "JPY": 0}
)

MAX_CLAUSE_LENGTH = 2000  # characters; real clauses are a line or two
MAX_CLAUSES = 20  # per list
# CEL refuses an expression above 100,000 code points: a batch holds at most about half that.
MAX_BATCH_CODEPOINTS = 50_000
# What no clause may hold, as no other catalogue text may (zhike_runtime.validation's categories):
# control, format (bidi overrides, zero-width), surrogate, private-use and unassigned characters.
# CEL takes them inside a string literal, but a clause is shown back in explanations and the
# decision log, where U+202E makes it read otherwise than it is evaluated. Only a line feed and
# a tab lay a clause out (YAML reads CRLF as a line feed; a lone CR can overwrite a line).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


@dataclass(frozen=True)
class Variable:
    name: str
    type: cel.Type = dataclasses.field(compare=False)
    # The fact kind whose change can change the variable (None: the request's own context).
    fact: FactKind | None
    # Personal: derived from the party's situation. An offer marked `personalised: false` may
    # not read these (PIPL art. 24: the same offer for everyone who switched personalisation off).
    personal: bool


def _variables() -> tuple[Variable, ...]:
    money = cel.Type.Map(cel.Type.STRING, cel.Type.DOUBLE)
    strings = cel.Type.List(cel.Type.STRING)
    return (
        Variable("assets", money, FactKind.ASSETS, personal=True),
        Variable("liabilities", money, FactKind.LIABILITIES, personal=True),
        Variable("product_lines", strings, FactKind.HOLDINGS, personal=True),
        Variable("products", strings, FactKind.HOLDINGS, personal=True),
        Variable("tier", cel.Type.STRING, FactKind.TIER, personal=True),
        Variable("value_band", cel.Type.STRING, FactKind.VALUE_BAND, personal=True),
        Variable("segments", strings, FactKind.SEGMENTS, personal=True),
        Variable("risk_level", cel.Type.INT, FactKind.RISK, personal=True),
        Variable("age", cel.Type.INT, FactKind.AGE, personal=True),
        Variable("channel", cel.Type.STRING, None, personal=False),
        Variable("placement", cel.Type.STRING, None, personal=False),
    )


VARIABLES = _variables()
VARIABLE_NAMES = tuple(variable.name for variable in VARIABLES)


class RuleError(ValueError):
    """A clause that cannot be saved: which offer field, where in the clause (1-based line and
    column, in characters), and why."""

    def __init__(self, field: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{field} at {line}:{column}: {message}")
        self.field = field
        self.line = line
        self.column = column
        self.message = message


@dataclass(frozen=True)
class Clause:
    field: str  # "eligibility[1]"
    text: str
    variables: frozenset[str]  # the declared names it reads
    _program: cel.Expression = dataclasses.field(compare=False, repr=False)

    def holds(self, activation: cel.Activation) -> bool:
        return self.failure(activation) is None

    def failure(self, activation: cel.Activation) -> str | None:
        """Why the clause does not hold ("false", or "not evaluable (what CEL's error was)");
        None if it does."""
        try:
            # Most evaluation errors come back as a value holding CEL's message.
            value = self._program.eval(activation).value()
        except RuntimeError as error:
            # Some are raised: past CEL's iteration budget (a comprehension in a comprehension
            # that saved fine can pass it for a party with many products).
            return f"not evaluable ({error_kind(error)})"
        if value is True:
            return None
        return "false" if value is False else f"not evaluable ({error_kind(value)})"


def error_kind(error: object) -> str:
    """CEL's error without its details, which quote the values looked up ("NOT_FOUND: Key not
    found in map : 21" for an age): the status and what went wrong, "NOT_FOUND: Key not found
    in map". Explanations and withdrawals are kept and published; the clause's own text, beside
    it there, names what it looked up."""
    kind = ":".join(str(error).split(":")[:2]).strip()
    return _DIGITS.sub("…", kind) or "an evaluation error"


_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class FailedClause:
    index: int
    clause: Clause
    why: str  # "false", or "not evaluable (what CEL's error was)"


def first_false(clauses: Sequence[Clause], activation: cel.Activation) -> FailedClause | None:
    for index, clause in enumerate(clauses):
        why = clause.failure(activation)
        if why is not None:
            return FailedClause(index, clause, why)
    return None


# CEL reports "ERROR: <input>:LINE:COLUMN: message" (then the source line and a caret).
_CEL_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
# Strings and comments, so that names inside them are not taken for variables.
_NOT_CODE = re.compile(
    r'[rRbB]{0,2}(?:"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\')'
    r"|//[^\n]*"
)
_NAME = re.compile(r"(?<![.\w])[A-Za-z_]\w*")


def referenced_variables(text: str) -> frozenset[str]:
    """The declared variables a clause names (an over-approximation: a comprehension variable
    that shadows one counts too, which only makes an offer decide again more often)."""
    code = _NOT_CODE.sub(" ", text)
    return frozenset(name for name in _NAME.findall(code) if name in VARIABLE_NAMES)


class RuleEnvironment:
    """The one declared CEL environment of offer rules, and the activation of a decision."""

    def __init__(self, currencies: Mapping[str, int] = DEFAULT_CURRENCIES) -> None:
        self.currencies: Mapping[str, int] = MappingProxyType(dict(currencies))
        self._env = cel.NewEnv(variables={v.name: v.type for v in VARIABLES})

    def compile(self, field: str, text: str) -> Clause:
        if len(text) > MAX_CLAUSE_LENGTH:
            raise RuleError(field, 1, 1, f"longer than {MAX_CLAUSE_LENGTH} characters")
        hidden = _first_hidden_character(text)
        if hidden is not None:
            line, column, character = hidden
            raise RuleError(
                field,
                line,
                column,
                f"contains a control or invisible character: U+{ord(character):04X}",
            )
        if not text.strip():
            raise RuleError(field, 1, 1, "empty clause")
        try:
            program = self._env.compile(text)
        except RuntimeError as error:
            line, column, message = _first_error(str(error))
            raise RuleError(field, line, column, message) from None
        result = program.return_type()
        if result != cel.Type.BOOL:
            raise RuleError(field, 1, 1, f"must be true or false, not {result.name().lower()}")
        return Clause(field, text, referenced_variables(text), program)

    def program(self, text: str) -> cel.Expression:
        """Compile without the checks of an offer field (RuntimeError from CEL on failure)."""
        return self._env.compile(text)

    def activation_data(
        self, facts: OfferFacts, *, channel: str, placement: str, today: dt.date
    ) -> dict[str, Any]:
        """What the rules see of `facts` in this context (plain values)."""
        return {
            "assets": self._major_units(facts.assets),
            "liabilities": self._major_units(facts.liabilities),
            "product_lines": sorted({h.product_line for h in facts.holdings}),
            "products": sorted({h.product_code for h in facts.holdings}),
            "tier": facts.tier,
            "value_band": facts.value_band,
            "segments": sorted(facts.segments),
            "risk_level": facts.effective_risk(today),
            "age": -1 if facts.age is None else facts.age,
            "channel": channel,
            "placement": placement,
        }

    def activation(
        self, facts: OfferFacts, *, channel: str, placement: str, today: dt.date
    ) -> cel.Activation:
        data = self.activation_data(facts, channel=channel, placement=placement, today=today)
        return self._env.Activation(data=data)

    def _major_units(self, amounts: Mapping[str, int]) -> dict[str, float]:
        totals = dict.fromkeys(self.currencies, 0.0)
        for currency, minor in amounts.items():
            totals[currency] = minor / 10 ** self.currencies.get(currency, 2)
        return totals


class RuleBatch:
    """The clauses of many offers, evaluated together: `first_failing(activation)[i]` is the
    index of the first clause of group i that does not hold, or -1 when all do (an empty group
    always does); `holding(activation)[i]` is whether all do.

    Each chunk of groups is one CEL program, a list with one expression per group,
    `!(c0) ? 0 : (!(c1) ? 1 : … -1)`: it short-circuits as `&&` would and names the clause, so
    explaining a rejection needs no second evaluation. A clause that fails while evaluating (and
    is reached) makes the whole list an error: then that chunk's groups are evaluated clause by
    clause, where an error does not hold. Both ways give the same answer; the batch is only
    faster.
    """

    def __init__(self, environment: RuleEnvironment, groups: Sequence[Sequence[Clause]]) -> None:
        self._groups = [tuple(group) for group in groups]
        self._chunks: list[tuple[tuple[int, ...], cel.Expression]] = []
        self._alone: list[int] = []  # groups evaluated clause by clause
        chunk: list[int] = []
        size = 0
        for index, group in enumerate(self._groups):
            if not group:
                continue
            length = sum(len(clause.text) + _TERNARY_CODEPOINTS for clause in group)
            if chunk and size + length > MAX_BATCH_CODEPOINTS:
                self._add_chunk(environment, chunk)
                chunk, size = [], 0
            chunk.append(index)
            size += length
        if chunk:
            self._add_chunk(environment, chunk)

    def _add_chunk(self, environment: RuleEnvironment, chunk: list[int]) -> None:
        try:
            program = environment.program(
                "[" + ",\n".join(_first_failing(self._groups[index]) for index in chunk) + "]"
            )
        except RuntimeError:
            # Too large or too deep together (each clause compiled alone): split.
            if len(chunk) == 1:
                self._alone.append(chunk[0])
            else:
                middle = len(chunk) // 2
                self._add_chunk(environment, chunk[:middle])
                self._add_chunk(environment, chunk[middle:])
            return
        self._chunks.append((tuple(chunk), program))

    def verdicts(self, activation: cel.Activation) -> RuleVerdicts:
        verdicts = RuleVerdicts([-1] * len(self._groups), {})
        for indexes, program in self._chunks:
            try:
                values = program.eval(activation).plain_value()
            except RuntimeError:
                # Past CEL's iteration budget, which a chunk's clauses share: each group alone.
                values = None
            if isinstance(values, list):
                for index, value in zip(indexes, values, strict=True):
                    verdicts.first_failing[index] = int(value)  # type: ignore[arg-type]
            else:
                for index in indexes:
                    self._judge_alone(index, activation, verdicts)
        for index in self._alone:
            self._judge_alone(index, activation, verdicts)
        return verdicts

    def first_failing(self, activation: cel.Activation) -> list[int]:
        return self.verdicts(activation).first_failing

    def holding(self, activation: cel.Activation) -> list[bool]:
        return [failing < 0 for failing in self.first_failing(activation)]

    def _judge_alone(self, index: int, activation: cel.Activation, verdicts: RuleVerdicts) -> None:
        failed = first_false(self._groups[index], activation)
        if failed is not None:
            verdicts.first_failing[index] = failed.index
            if failed.why != "false":
                verdicts.not_evaluable[index] = failed.why


@dataclass
class RuleVerdicts:
    """One evaluation of a `RuleBatch`: per group, the index of its first clause that does not
    hold (-1: all do), and for a group whose first such clause could not be evaluated, why
    ("not evaluable (what CEL's error was)"; any other first failing clause was false)."""

    first_failing: list[int]
    not_evaluable: dict[int, str]


# What the expression of `_first_failing` adds around a clause, in code points.
_TERNARY_CODEPOINTS = 24


def _first_failing(group: Sequence[Clause]) -> str:
    """A CEL int: the index of the first clause of `group` that is false, -1 if none is. A
    newline ends each clause: a clause may end in a // comment."""
    expression = "-1"
    for index in reversed(range(len(group))):
        expression = f"(!(\n{group[index].text}\n) ? {index} : {expression})"
    return expression


def _first_hidden_character(text: str) -> tuple[int, int, str] | None:
    """The line and column (1-based, in characters, as CEL's) of the first character no clause
    may hold, and the character; None when there is none."""
    for line, content in enumerate(text.split("\n"), start=1):
        for column, character in enumerate(content, start=1):
            if character != "\t" and unicodedata.category(character) in _HIDDEN_CATEGORIES:
                return line, column, character
    return None


def _first_error(text: str) -> tuple[int, int, str]:
    found = _CEL_ERROR.search(text)
    if found is None:
        return 1, 1, text.splitlines()[0] if text else "does not compile"
    message = found.group(3)
    if message.startswith("undeclared reference to"):
        # CEL adds "(in container '')"; say what can be named instead.
        message = message.split(" (in container", 1)[0] + f"; known: {', '.join(VARIABLE_NAMES)}"
    return int(found.group(1)), int(found.group(2)), message
