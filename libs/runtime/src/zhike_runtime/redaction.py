"""Exception text without the values in it, for every place an error leaves the process.

Exception messages carry whatever the failing code had in hand: PostgreSQL puts the offending key
in its DETAIL (`Key (id_number)=(11010519491231002X) already exists.`), drivers quote the bound
value they could not convert, `KeyError` is its key. Log lines, span statuses and dead-letter
headers outlive the request and reach people who may not see personal data, so what they get is
built here, once:

- database errors keep only known-safe parts: the SQLAlchemy class, the driver's class, the
  SQLSTATE (or SQLite's error name and its constraint message), and the constraint and table
  names, which are our schema;
- any other exception keeps its class name and the first line of its message with the values
  masked: quoted literals, `=(…)` key values, e-mail-like tokens, digit runs of 6 or more (ID
  numbers, phones, account numbers, even with spaces, dashes, slashes or underscores inside) and
  CJK text (names, addresses). Latin-script names outside quotes cannot be told from words; code that raises must
  not put them there, which is why domain errors name fields, never values.

The result is one line (a NATS header value cannot hold a line break) of bounded length.
"""

from __future__ import annotations

import re
import traceback

from sqlalchemy.exc import DBAPIError, StatementError

from zhike_runtime.db import sqlstate

MASK = "***"
MAX_LENGTH = 300
_READ_LENGTH = 4 * MAX_LENGTH

# Order matters: quoted literals first, so a quote's content is masked as a whole.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|‘[^’]*’|“[^”]*”|「[^」]*」"),
    re.compile(r"=\([^)]*\)"),
    re.compile(r"[^\s@'\"()<>,;]+@[^\s@'\"()<>,;]+"),
)
_OPEN_QUOTE = re.compile(r"(?:['\"`‘“「]|=\().*")
# A run of digits, possibly broken by the separators people and systems put in numbers (spaces,
# no-break and ideographic spaces, dashes of any kind, dots, slashes, underscores, parentheses)
# and ending in the resident-ID check character X: masked when it holds 6 digits or more.
_DIGIT_RUN = re.compile(r"\+?\d(?:[\d \u00a0\u3000\-\u2010-\u2015\u2212\uff0d.()/_]*\d)?[Xx]?")
_MIN_DIGITS = 6
# SQLite's constraint messages name only the schema (`UNIQUE constraint failed: party.id_number`).
_SQLITE_CONSTRAINT = re.compile(
    r"(UNIQUE|NOT NULL|CHECK|FOREIGN KEY|PRIMARY KEY) constraint failed(: [\w.]+(, [\w.]+)*)?"
)
# CJK ideographs (with extension A and compatibility forms), kana, hangul, full-width forms.
_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+"
)


def redact_text(text: str) -> str:
    """The first line of `text` with every value-like token masked, on one bounded line."""
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    # Only the start can be shown: masking megabytes (an error listing 10^5 bad elements) would
    # hold the event loop for seconds.
    masked = first_line[:_READ_LENGTH]
    for pattern in _PATTERNS:
        masked = pattern.sub(MASK, masked)
    if len(first_line) > _READ_LENGTH:
        # A quote the cut left open would show what it quotes: masked to the end.
        masked = _OPEN_QUOTE.sub(MASK, masked)
    masked = _DIGIT_RUN.sub(_mask_long_digits, masked)
    masked = _CJK.sub(MASK, masked)
    if len(masked) > MAX_LENGTH:
        masked = masked[: MAX_LENGTH - 1] + "…"
    return masked


def _mask_long_digits(match: re.Match[str]) -> str:
    run = match.group(0)
    return MASK if sum(c.isdigit() for c in run) >= _MIN_DIGITS else run


def describe_error(error: BaseException) -> str:
    """`Class: value-free message` for logs, span statuses and dead-letter headers."""
    if isinstance(error, StatementError):
        return _describe_database_error(error)
    name = type(error).__name__
    message = redact_text(str(error))
    return f"{name}: {message}" if message else name


def _describe_database_error(error: StatementError) -> str:
    """Class, driver class, SQLSTATE / SQLite error name, constraint and table: never the text,
    which may quote a bound value (asyncpg's DataError does) or a key (PostgreSQL's DETAIL)."""
    original: BaseException | None = error.orig
    name = type(error).__name__
    parts = [f"{name}({type(original).__name__})" if original is not None else name]
    # asyncpg's own exception (the adapter's __cause__) knows the constraint and the table.
    driver = original.__cause__ if original is not None else None
    code = sqlstate(error)
    if code:
        parts.append(f"sqlstate={code}")
    sqlite_name = getattr(original, "sqlite_errorname", None)
    if sqlite_name:
        parts.append(str(sqlite_name))
        if _SQLITE_CONSTRAINT.fullmatch(str(original)):
            parts.append(str(original))
    for label, attribute in (("constraint", "constraint_name"), ("table", "table_name")):
        value = getattr(driver, attribute, None) or getattr(original, attribute, None)
        if isinstance(value, str) and value:
            parts.append(f"{label}={value}")
    if not isinstance(error, DBAPIError) or (not code and not sqlite_name):
        # No code to go by (a lost connection, a type the driver refused): the masked message.
        text = redact_text(str(original)) if original is not None else ""
        if text:
            parts.append(text)
    return " ".join(parts)


def format_exception(error: BaseException) -> str:
    """A traceback as `traceback.format_exception` prints it, but with each exception of the
    chain described by `describe_error` and its notes left out (they are free text too).
    Frames show source lines, which are code, not values."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    lines: list[str] = []
    for exception, link_to_next in reversed(chain):
        if exception.__traceback__ is not None:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_tb(exception.__traceback__))
        lines.append(describe_error(exception) + "\n")
        if link_to_next:
            lines.append(link_to_next)
    return "".join(lines).rstrip("\n")


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
