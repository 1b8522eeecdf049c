"""A small, safe expression language for segment conditions: a subset of CEL's syntax.

    age >= 25 && age <= 35 && salary_months(3) >= 2
    balance("USD") > 0 || tier in ["gold", "platinum"]

Literals: integers, decimals (`1000.50`, exact, never floats), strings in single or double
quotes, `true`, `false`, and lists of literals on the right of `in`. Operators, loosest first:
`||`, `&&`, comparisons (`== != < <= > >= in`, not chained), `+ -`, `*`, unary `! -`.
Names are the fields and functions of a `Schema`; a function's arguments are literals, so every
argument is checked when the rule is loaded (`holds("morgage")` is an error there, not a silent
false later).

Why not a CEL library: the ones on PyPI parse CEL but have no type checker, so an unknown field
or a type error surfaces only when a party is evaluated, with no position. Here `compile_condition`
parses *and* checks against the schema, and every error names its offset in the text.

Evaluation never runs Python code from the rule (no `eval`, no attribute access): it walks the
checked tree over the values the schema's owner supplies. A field can be unknown for a party (an
age without a birth date); as in CEL, unknown propagates through comparisons and arithmetic,
`false && unknown` is false and `true || unknown` is true, and a condition matches only when it
is true.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from zhike_profile.domain.assessment.money import CONTEXT

MAX_LENGTH = 4000  # characters of one condition
# Depth of the tree (parentheses, lists, calls, unary operators, and each further operand of a
# chain such as a && b && c): bounds the recursion of parsing (about a dozen frames a level),
# checking and evaluating, far below Python's limit; real rules are a few levels deep.
MAX_DEPTH = 40


class Unknown(enum.Enum):
    """The value of a field the facts do not give (e.g. `age` without a birth date)."""

    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN

Scalar = bool | int | Decimal | str
Value = Scalar | tuple[Scalar, ...] | Unknown


class Type(enum.Enum):
    BOOL = "true/false"
    INT = "an integer"
    DECIMAL = "a decimal"
    STRING = "a string"
    STRING_LIST = "a list of strings"
    NUMBER_LIST = "a list of numbers"


NUMERIC = frozenset({Type.INT, Type.DECIMAL})


class ExpressionError(ValueError):
    """A condition that cannot be loaded: what is wrong and where (offset into the text)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of an offset: how errors point into a multi-line condition."""
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column


# -- the schema: what a condition may name ---------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: Type
    description: str
    values: tuple[str, ...] = ()  # for strings: the values it can take, checked in comparisons


@dataclass(frozen=True)
class Param:
    name: str
    type: Type
    values: tuple[str, ...] = ()  # strings: allowed values (empty: any that match `pattern`)
    pattern: str = ""  # strings: a regular expression the whole value must match
    minimum: int | None = None  # integers


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    params: tuple[Param, ...]
    result: Type
    description: str


@dataclass(frozen=True)
class Schema:
    fields: tuple[FieldSpec, ...]
    functions: tuple[FunctionSpec, ...]

    def field(self, name: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.name == name), None)

    def function(self, name: str) -> FunctionSpec | None:
        return next((spec for spec in self.functions if spec.name == name), None)


# -- tokens ----------------------------------------------------------------------------------


class _Kind(enum.Enum):
    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    OPERATOR = "operator"
    END = "end of condition"


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str
    offset: int
    value: Scalar = ""


# Two-character operators first, so "<=" is not read as "<" then "=".
_OPERATORS = [
    "||",
    "&&",
    "==",
    "!=",
    "<=",
    ">=",
    "<",
    ">",
    "!",
    "+",
    "-",
    "*",
    "(",
    ")",
    "[",
    "]",
    ",",
]
_NUMBER = re.compile(r"\d+(\.\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while at < len(text):
        char = text[at]
        if char.isspace():
            at += 1
            continue
        if char.isdigit():
            match = _NUMBER.match(text, at)
            assert match is not None  # a digit always starts a number
            if match.end() < len(text) and (
                text[match.end()] == "." or _NAME.match(text, match.end())
            ):
                raise ExpressionError(f"malformed number {text[at : match.end() + 1]!r}", at)
            literal = match.group()
            value: Scalar = Decimal(literal) if "." in literal else int(literal)
            tokens.append(_Token(_Kind.NUMBER, literal, at, value))
            at = match.end()
        elif char in "'\"":
            end, value = _string(text, at)
            tokens.append(_Token(_Kind.STRING, text[at:end], at, value))
            at = end
        elif match := _NAME.match(text, at):
            tokens.append(_Token(_Kind.NAME, match.group(), at))
            at = match.end()
        else:
            operator = next((op for op in _OPERATORS if text.startswith(op, at)), None)
            if operator is None:
                raise ExpressionError(f"unexpected character {char!r}", at)
            tokens.append(_Token(_Kind.OPERATOR, operator, at))
            at += len(operator)
    tokens.append(_Token(_Kind.END, "", len(text)))
    return tokens


def _string(text: str, start: int) -> tuple[int, str]:
    quote = text[start]
    chars: list[str] = []
    at = start + 1
    while at < len(text):
        char = text[at]
        if char == quote:
            return at + 1, "".join(chars)
        if char == "\n":
            break
        if char == "\\":
            escaped = _ESCAPES.get(text[at + 1 : at + 2])
            if escaped is None:
                raise ExpressionError("unknown escape in string", at)
            chars.append(escaped)
            at += 2
            continue
        chars.append(char)
        at += 1
    raise ExpressionError("string not closed", start)


# -- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Scalar
    type: Type
    offset: int


@dataclass(frozen=True)
class FieldRef:
    name: str
    offset: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]
    offset: int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node
    offset: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node
    offset: int


@dataclass(frozen=True)
class ListLiteral:
    items: tuple[Node, ...]
    offset: int


Node = Literal | FieldRef | Call | Unary | Binary | ListLiteral

_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokens(text)
        self._at = 0
        self._depth = 0

    def parse(self) -> Node:
        node = self._or()
        token = self._peek()
        if token.kind is not _Kind.END:
            raise ExpressionError(f"unexpected {_describe(token)}", token.offset)
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _accept(self, *texts: str) -> _Token | None:
        token = self._peek()
        if token.kind in (_Kind.OPERATOR, _Kind.NAME) and token.text in texts:
            self._at += 1
            return token
        return None

    def _expect(self, text: str) -> _Token:
        token = self._accept(text)
        if token is None:
            found = self._peek()
            raise ExpressionError(f"expected {text!r}, found {_describe(found)}", found.offset)
        return token

    def _deeper(self, offset: int) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ExpressionError(
                f"nested more than {MAX_DEPTH} deep (parentheses, or operands of one chain)", offset
            )

    def _chain(self, operators: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        """Left-associative: a chain of n operands is a tree n - 1 deep."""
        depth = self._depth
        node = operand()
        while operator := self._accept(*operators):
            self._deeper(operator.offset)
            node = Binary(operator.text, node, operand(), operator.offset)
        self._depth = depth
        return node

    def _or(self) -> Node:
        return self._chain(("||",), self._and)

    def _and(self) -> Node:
        return self._chain(("&&",), self._relation)

    def _relation(self) -> Node:
        node = self._sum()
        if operator := self._accept(*_RELATIONS):
            node = Binary(operator.text, node, self._sum(), operator.offset)
            if follower := self._accept(*_RELATIONS):
                raise ExpressionError(
                    f"comparisons do not chain: use && before {follower.text!r}", follower.offset
                )
        return node

    def _sum(self) -> Node:
        return self._chain(("+", "-"), self._product)

    def _product(self) -> Node:
        return self._chain(("*",), self._unary)

    def _unary(self) -> Node:
        if operator := self._accept("!", "-"):
            self._deeper(operator.offset)
            node = Unary(operator.text, self._unary(), operator.offset)
            self._depth -= 1
            return node
        return self._primary()

    def _primary(self) -> Node:
        token = self._next()
        if token.kind is _Kind.NUMBER:
            kind = Type.DECIMAL if isinstance(token.value, Decimal) else Type.INT
            return Literal(token.value, kind, token.offset)
        if token.kind is _Kind.STRING:
            return Literal(token.value, Type.STRING, token.offset)
        if token.kind is _Kind.NAME:
            if token.text in ("true", "false"):
                return Literal(token.text == "true", Type.BOOL, token.offset)
            if token.text == "in":
                raise ExpressionError("unexpected 'in'", token.offset)
            if self._accept("("):
                return Call(token.text, self._items(")", token.offset), token.offset)
            return FieldRef(token.text, token.offset)
        if token.text == "(":
            self._deeper(token.offset)
            node = self._or()
            self._expect(")")
            self._depth -= 1
            return node
        if token.text == "[":
            return ListLiteral(self._items("]", token.offset), token.offset)
        raise ExpressionError(f"unexpected {_describe(token)}", token.offset)

    def _items(self, closing: str, offset: int) -> tuple[Node, ...]:
        self._deeper(offset)
        items: list[Node] = []
        if not self._accept(closing):
            while True:
                items.append(self._or())
                if self._accept(closing):
                    break
                self._expect(",")
        self._depth -= 1
        return tuple(items)


def _describe(token: _Token) -> str:
    return token.kind.value if token.kind is _Kind.END else repr(token.text)


# -- checking --------------------------------------------------------------------------------


class _Checker:
    def __init__(self, schema: Schema) -> None:
        self._schema = schema

    def check(self, node: Node) -> Type:
        match node:
            case Literal():
                return node.type
            case FieldRef():
                spec = self._schema.field(node.name)
                if spec is None:
                    names = [f.name for f in self._schema.fields]
                    if self._schema.function(node.name) is not None:
                        raise ExpressionError(f"{node.name!r} is a function: call it", node.offset)
                    raise ExpressionError(_unknown("field", node.name, names), node.offset)
                return spec.type
            case Call():
                return self._call(node)
            case Unary():
                operand = self.check(node.operand)
                if node.op == "!":
                    self._want(operand, {Type.BOOL}, "'!'", node.operand)
                    return Type.BOOL
                self._want(operand, NUMERIC, "unary '-'", node.operand)
                return operand
            case Binary():
                return self._binary(node)
            case ListLiteral():
                return self._list(node)

    def _call(self, node: Call) -> Type:
        spec = self._schema.function(node.name)
        if spec is None:
            if self._schema.field(node.name) is not None:
                raise ExpressionError(f"{node.name!r} is a field, not a function", node.offset)
            names = [f.name for f in self._schema.functions]
            raise ExpressionError(_unknown("function", node.name, names), node.offset)
        if len(node.args) != len(spec.params):
            wanted = ", ".join(param.name for param in spec.params)
            raise ExpressionError(
                f"{spec.name}({wanted}) takes {len(spec.params)} argument(s), "
                f"given {len(node.args)}",
                node.offset,
            )
        for param, arg in zip(spec.params, node.args, strict=True):
            if not isinstance(arg, Literal):
                raise ExpressionError(
                    f"{spec.name}: argument {param.name!r} must be a literal value", _offset(arg)
                )
            self._argument(spec, param, arg)
        return spec.result

    def _argument(self, spec: FunctionSpec, param: Param, arg: Literal) -> None:
        accepted = NUMERIC if param.type is Type.DECIMAL else {param.type}
        if arg.type not in accepted:
            raise ExpressionError(
                f"{spec.name}: argument {param.name!r} must be {param.type.value}, "
                f"not {arg.type.value}",
                arg.offset,
            )
        value = arg.value
        if isinstance(value, str):
            if param.values and value not in param.values:
                raise ExpressionError(
                    f"{spec.name}: {_unknown(param.name, value, param.values)}", arg.offset
                )
            if param.pattern and not re.fullmatch(param.pattern, value):
                raise ExpressionError(
                    f"{spec.name}: {param.name} {value!r} is not of the form {param.pattern}",
                    arg.offset,
                )
        if (
            param.minimum is not None
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value < param.minimum
        ):
            raise ExpressionError(
                f"{spec.name}: {param.name} must be at least {param.minimum}", arg.offset
            )

    def _binary(self, node: Binary) -> Type:
        left = self.check(node.left)
        right = self.check(node.right)
        op = node.op
        if op in ("&&", "||"):
            self._want(left, {Type.BOOL}, repr(op), node.left)
            self._want(right, {Type.BOOL}, repr(op), node.right)
            return Type.BOOL
        if op in ("+", "-", "*"):
            self._want(left, NUMERIC, repr(op), node.left)
            self._want(right, NUMERIC, repr(op), node.right)
            return Type.INT if left is right is Type.INT else Type.DECIMAL
        if op in ("<", "<=", ">", ">="):
            self._want(left, NUMERIC, repr(op), node.left)
            self._want(right, NUMERIC, repr(op), node.right)
            return Type.BOOL
        if op == "in":
            if left is Type.STRING:
                self._want(right, {Type.STRING_LIST}, "'in' after a string", node.right)
            elif left in NUMERIC:
                self._want(right, {Type.NUMBER_LIST}, "'in' after a number", node.right)
            else:
                raise ExpressionError(
                    f"'in' needs a string or a number on its left, not {left.value}", node.offset
                )
            if isinstance(node.right, ListLiteral):
                self._known_values(node.left, node.right.items)
            return Type.BOOL
        # == and !=
        comparable = (left in NUMERIC and right in NUMERIC) or (
            left is right and left in (Type.STRING, Type.BOOL)
        )
        if not comparable:
            raise ExpressionError(
                f"{op!r} cannot compare {left.value} with {right.value}", node.offset
            )
        self._known_values(node.left, (node.right,))
        self._known_values(node.right, (node.left,))
        return Type.BOOL

    def _known_values(self, subject: Node, candidates: Sequence[Node]) -> None:
        """`tier == "gld"` is an error: a string field with known values names them."""
        if not isinstance(subject, FieldRef):
            return
        spec = self._schema.field(subject.name)
        if spec is None or not spec.values:
            return
        for candidate in candidates:
            if (
                isinstance(candidate, Literal)
                and isinstance(candidate.value, str)
                and candidate.value not in spec.values
            ):
                raise ExpressionError(
                    _unknown(spec.name, candidate.value, spec.values), candidate.offset
                )

    def _list(self, node: ListLiteral) -> Type:
        if not node.items:
            raise ExpressionError("an empty list matches nothing", node.offset)
        kinds: set[Type] = set()
        for item in node.items:
            if not isinstance(item, Literal):
                raise ExpressionError("list items must be literal values", _offset(item))
            kinds.add(item.type)
        if kinds == {Type.STRING}:
            return Type.STRING_LIST
        if kinds <= NUMERIC:
            return Type.NUMBER_LIST
        raise ExpressionError("a list holds strings only or numbers only", node.offset)

    @staticmethod
    def _want(found: Type, wanted: set[Type] | frozenset[Type], where: str, node: Node) -> None:
        if found not in wanted:
            names = " or ".join(sorted(kind.value for kind in wanted))
            raise ExpressionError(f"{where} needs {names}, not {found.value}", _offset(node))


def _offset(node: Node) -> int:
    # An operator node reports its operator; point at where the operand text starts instead.
    while isinstance(node, Binary):
        node = node.left
    return node.offset


def _unknown(what: str, name: str, known: Sequence[str]) -> str:
    message = f"unknown {what} {name!r}"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    return f"{message}; known: {', '.join(known)}"


# -- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """The values a condition reads for one party: every field, and every function's code."""

    fields: Mapping[str, Value]
    functions: Mapping[str, Callable[..., Value]]


@dataclass(frozen=True)
class Condition:
    """A parsed and checked condition; `matches` is true only when it evaluates to true."""

    text: str
    tree: Node

    def matches(self, env: Environment) -> bool:
        return _evaluate(self.tree, env) is True

    def fields(self) -> frozenset[str]:
        """The fields and functions it names (what a change of facts can affect)."""
        return frozenset(_names(self.tree))


def compile_condition(text: str, schema: Schema) -> Condition:
    """Parse and check; `ExpressionError` (with an offset) for anything that would not run."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise ExpressionError("empty condition", 0)
    tree = _Parser(text).parse()
    result = _Checker(schema).check(tree)
    if result is not Type.BOOL:
        raise ExpressionError(f"a condition must be true/false, not {result.value}", 0)
    return Condition(text, tree)


def _names(node: Node) -> list[str]:
    match node:
        case FieldRef() | Call():
            return [node.name]
        case Unary():
            return _names(node.operand)
        case Binary():
            return _names(node.left) + _names(node.right)
        case _:
            return []


def _evaluate(node: Node, env: Environment) -> Value:
    match node:
        case Literal():
            return node.value
        case FieldRef():
            return env.fields[node.name]
        case Call():
            args = [arg.value for arg in node.args if isinstance(arg, Literal)]
            return env.functions[node.name](*args)
        case ListLiteral():
            return tuple(item.value for item in node.items if isinstance(item, Literal))
        case Unary():
            operand = _evaluate(node.operand, env)
            if operand is UNKNOWN:
                return UNKNOWN
            if node.op == "!":
                return not operand
            assert isinstance(operand, int | Decimal)
            return -operand
        case Binary():
            return _binary(node, env)


def _binary(node: Binary, env: Environment) -> Value:
    op = node.op
    left = _evaluate(node.left, env)
    if op in ("&&", "||"):
        # Kleene logic, as CEL's: a decisive side decides even when the other is unknown.
        decisive = op == "||"
        if left is decisive:
            return decisive
        right = _evaluate(node.right, env)
        if right is decisive:
            return decisive
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        return not decisive
    right = _evaluate(node.right, env)
    if left is UNKNOWN or right is UNKNOWN:
        return UNKNOWN
    if op == "in":
        assert isinstance(right, tuple)
        return left in right
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    assert isinstance(left, int | Decimal)
    assert isinstance(right, int | Decimal)
    match op:
        case "<":
            return left < right
        case "<=":
            return left <= right
        case ">":
            return left > right
        case ">=":
            return left >= right
        case "+":
            return (
                left + right
                if isinstance(left, int) and isinstance(right, int)
                else CONTEXT.add(left, right)
            )
        case "-":
            return (
                left - right
                if isinstance(left, int) and isinstance(right, int)
                else CONTEXT.subtract(left, right)
            )
        case _:
            return (
                left * right
                if isinstance(left, int) and isinstance(right, int)
                else CONTEXT.multiply(left, right)
            )
