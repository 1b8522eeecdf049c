"""Text an operator's terminal prints as it is: what a command shows may be partly other
people's text (a refused caller's party id in the audit log, a publisher's header on a dead
letter), so it prints with every control character escaped and cannot forge a line or move the
cursor."""

from __future__ import annotations

import unicodedata

# Escaped by name; every other character of these categories as \uXXXX (or \UXXXXXXXX): C0 and
# C1 controls and DEL (Cc), format characters such as the bidi overrides (Cf), and the line and
# paragraph separators (Zl, Zp), which terminals and log viewers may act on or break lines at.
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(value: str) -> str:
    """`value` with every control character escaped, and the backslash too, so that the
    printed text reads back to exactly one value: a newline prints as a backslash and an n, a
    backslash and an n as two backslashes and an n."""
    return "".join(_escaped(char) for char in value)


def _escaped(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if unicodedata.category(char) not in _UNPRINTABLE:
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
