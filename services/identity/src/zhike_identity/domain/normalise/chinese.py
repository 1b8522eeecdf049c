"""Hanzi helpers: traditional → simplified folding, pinyin, syllable splitting.

Narrow, typed wrappers around OpenCC and pypinyin. Both are imported and built on first use (not
at import time) and every lookup is cached: a batch of 100,000 records repeats the same few thousand characters and given
names, so after warm-up most calls are a dictionary hit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from zhike_identity.domain.normalise.tables import (
    COMMON_SURNAMES,
    COMPOUND_SURNAMES,
    PINYIN_SYLLABLES,
    ROMANISED_SURNAMES,
    SPECIAL_READINGS,
)

# CJK Unified Ideographs with extensions A to H, compatibility ideographs, and 〇 (used in names
# and addresses as a zero). Enough for every character in the national standard GB 18030.
HAN_CHARS = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
HAN = re.compile(f"[{HAN_CHARS}]")
_PINYIN = re.compile(r"[a-z]+")
_LONGEST_SYLLABLE = max(len(syllable) for syllable in PINYIN_SYLLABLES)
_BARE_VOWELS = frozenset({"a", "o", "e"})
_MAX_FOLDS = 4  # OpenCC's longest chain of single-character mappings is two steps


@functools.cache
def _t2s() -> Callable[[str], str]:
    import opencc  # type: ignore[import-untyped]

    convert: Callable[[str], str] = opencc.OpenCC("t2s").convert
    return convert


@functools.cache
def _pinyin() -> Callable[[str], list[str]]:
    # Imported on first use: importing pypinyin loads its phrase dictionary, about 0.2 s.
    from pypinyin import Style, lazy_pinyin

    def read(text: str) -> list[str]:
        return lazy_pinyin(text, style=Style.NORMAL)

    return read


def warm_up() -> None:
    """Load OpenCC and pypinyin now rather than on the first name a request brings.

    For a service's start-up: the first call otherwise pays the ~0.3 s of loading them.
    """
    simplified_char("劉")
    char_pinyin("刘")
    known_surnames()


@functools.lru_cache(maxsize=16384)
def simplified_char(char: str) -> str:
    """One character folded to simplified Hanzi (劉 → 刘); anything else unchanged.

    Character by character rather than OpenCC's phrase mode: names and addresses are not phrases,
    per-character folding is what makes both spellings of a value meet, and it caches well.
    """
    if not HAN.fullmatch(char):
        return char
    folded = char
    # Some of OpenCC's mappings chain (薴 → 苧 → 苎): fold until the character stays, so that
    # folding a folded value changes nothing. OpenCC maps a character to one character; stop at
    # the last that did if that ever does not hold.
    for _ in range(_MAX_FOLDS):
        step = _t2s()(folded)
        if len(step) != 1 or step == folded:
            break
        folded = step
    return folded


def simplified(text: str) -> str:
    return "".join(simplified_char(char) for char in text)


def _clean_syllables(readings: list[str], source: str) -> tuple[str, ...]:
    """pypinyin hands back characters it has no reading for unchanged; give them an ASCII stand-in
    (u + code point) so that two names differing only in a rare character still differ."""
    if all(_PINYIN.fullmatch(reading) for reading in readings):
        return tuple(readings)
    out: list[str] = []
    for reading in readings:
        reading = reading.replace("ê", "e")
        if _PINYIN.fullmatch(reading):
            out.append(reading)
        else:
            out.extend(f"u{ord(char):x}" for char in reading)
    return tuple(out) if out else tuple(f"u{ord(char):x}" for char in source)


@functools.lru_cache(maxsize=16384)
def char_pinyin(char: str) -> str:
    """The default (most common) reading of one Hanzi, without tone."""
    return "".join(_clean_syllables(_pinyin()(char), char))


@functools.lru_cache(maxsize=65536)
def phrase_pinyin(text: str) -> tuple[str, ...]:
    """Readings of a run of Hanzi, one syllable per character.

    pypinyin reads the run as a phrase, which settles most heteronyms the way a given name is
    read (朝阳 → zhao yang, not chao yang). The surname is never passed in here: 单 starting a
    phrase would be read "dan".
    """
    return _clean_syllables(_pinyin()(text), text)


def surname_syllables(surname: str) -> tuple[str, ...]:
    """Readings of a surname (one or two simplified Hanzi) as a surname: 单 → shan, 尉迟 → yu chi."""
    compound = COMPOUND_SURNAMES.get(surname)
    if compound is not None:
        return compound
    return tuple(SPECIAL_READINGS.get(char) or char_pinyin(char) for char in surname)


@functools.cache
def known_surnames() -> frozenset[str]:
    """Surnames as they appear in Latin-script names: pinyin of the common and compound surnames,
    plus the common Cantonese and Wade-Giles spellings."""
    pinyin = {"".join(surname_syllables(char)) for char in COMMON_SURNAMES}
    compounds = {"".join(syllables) for syllables in COMPOUND_SURNAMES.values()}
    return frozenset(pinyin | compounds | ROMANISED_SURNAMES)


@functools.cache
def compound_surnames_pinyin() -> frozenset[str]:
    return frozenset("".join(syllables) for syllables in COMPOUND_SURNAMES.values())


@functools.lru_cache(maxsize=65536)
def split_syllables(token: str) -> tuple[str, ...] | None:
    """Split a run of Latin letters into pinyin syllables ("jianjun" → jian, jun), or None.

    Ambiguous runs are settled the way names are most often meant: fewest syllables first; then
    no bare "a", "o" or "e" inside the run ("lina" is li + na, 丽娜, not lin + a); then the
    longest first syllable ("pingan" is ping + an, 平安, not pin + gan). An apostrophe, when the
    record has one, settles it outright ("Xi'an").
    """
    n = len(token)
    if n == 0 or n > 60:
        return None
    # best[i]: (syllable count, bare vowels after the first position, syllables) for token[i:].
    best: list[tuple[int, int, tuple[str, ...]] | None] = [None] * (n + 1)
    best[n] = (0, 0, ())
    for start in range(n - 1, -1, -1):
        for length in range(min(_LONGEST_SYLLABLE, n - start), 0, -1):
            rest = best[start + length]
            piece = token[start : start + length]
            if rest is None or piece not in PINYIN_SYLLABLES:
                continue
            bare = rest[1] + (start > 0 and piece in _BARE_VOWELS)
            candidate = (rest[0] + 1, bare, (piece, *rest[2]))
            current = best[start]
            if current is None or candidate[:2] < current[:2]:
                best[start] = candidate
    found = best[0]
    return None if found is None else found[2]
