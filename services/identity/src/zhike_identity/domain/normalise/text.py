"""Text clean-up shared by every normaliser, and the generic placeholder test."""

from __future__ import annotations

import unicodedata

from zhike_identity.domain.normalise.errors import Unusable

# No real value of any kind we normalise is longer than this before clean-up; longer input is
# rejected before any work is done on it (the RPCs accept up to 100 KB strings from callers).
MAX_RAW_LENGTH = 1000

# Control, format (zero-width, bidi), surrogate, private-use and unassigned characters never belong
# in customer data; tabs and line breaks are whitespace and are collapsed instead.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})

# Words that people and systems type when there is no value. Compared after NFKC, lower-casing and
# whitespace collapsing. Strings of only punctuation ("-", "--", "/", "?") and of only zeros are
# placeholders too (see is_placeholder).
_PLACEHOLDERS = frozenset(
    {
        "无",
        "没有",
        "暂无",
        "不详",
        "未知",
        "未填",
        "未填写",
        "空",
        "略",
        "待定",
        "待补充",
        "测试",
        "null",
        "none",
        "nil",
        "nan",
        "n/a",
        "na",
        "n.a.",
        "undefined",
        "unknown",
        "test",
        "x",
        "xx",
        "xxx",
    }
)


def clean(raw: str) -> str:
    """NFKC (full-width → half-width, 〜 compatibility forms), whitespace collapsed, stripped.

    Raises Unusable("too_long") before doing anything with a huge input, and
    Unusable("bad_characters") for control and other invisible characters.
    """
    if len(raw) > MAX_RAW_LENGTH:
        raise Unusable("too_long", f"{len(raw)} characters")
    text = unicodedata.normalize("NFKC", raw)
    text = " ".join(text.split())
    if not text.isprintable() and any(
        unicodedata.category(char) in _BAD_CATEGORIES for char in text
    ):
        raise Unusable("bad_characters", "control or invisible characters")
    return text


def is_placeholder(raw: str) -> bool:
    """Generic junk: "", "无", "不详", "未知", "null", "none", "n/a", "-", "--", "0", "test", "测试"…"""
    if len(raw) > MAX_RAW_LENGTH:
        return False
    text = " ".join(unicodedata.normalize("NFKC", raw).split()).lower()
    if not text or text in _PLACEHOLDERS:
        return True
    if all(char == "0" for char in text):
        return True
    return all(unicodedata.category(char)[0] in "PSZ" for char in text)
