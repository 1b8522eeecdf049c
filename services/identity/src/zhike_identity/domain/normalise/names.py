"""Person names: one comparison form for 刘建军, 劉建軍, LIU JIANJUN, Jianjun Liu and "LIU,JIANJUN".

A name in Han script is folded to simplified Hanzi and read in pinyin: the surname (one character,
or a compound such as 欧阳) with its reading *as a surname* (单 → shan), the given name as pypinyin
reads it as a phrase. A name in Latin letters is folded to lower-case ASCII, put surname first
(from a comma, an all-capitals surname, or a table of common surnames), and split into pinyin
syllables where it can be. `PersonName.full` is then the same key for every spelling; homophones
(刘建军 / 刘健君) share it too, and `hanzi` tells them apart.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from zhike_identity.domain.normalise.chinese import (
    HAN,
    HAN_CHARS,
    compound_surnames_pinyin,
    known_surnames,
    phrase_pinyin,
    simplified,
    split_syllables,
    surname_syllables,
)
from zhike_identity.domain.normalise.errors import Unusable
from zhike_identity.domain.normalise.tables import COMPOUND_SURNAMES
from zhike_identity.domain.normalise.text import clean, is_placeholder

MAX_NAME_LENGTH = 100

# Middle dots separate the parts of minority and transliterated names (阿依古丽·买买提); a period
# is how many keyboards type one.
_DOTS = "·•・‧∙⋅."
_APOSTROPHES = "'’‘`ʼ′"
_HYPHENS = "-‐‑‒–—―﹣"
_PUNCTUATION = frozenset(_DOTS + _APOSTROPHES + _HYPHENS + ", ")
_TO_ASCII_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys(_APOSTROPHES, "'"),
        **dict.fromkeys(_HYPHENS, "-"),
        **dict.fromkeys(_DOTS, "·"),
    }
)
_HAN_ONLY = re.compile(f"[{HAN_CHARS} ·]+")
_HAN_RUN = re.compile(f"[{HAN_CHARS}]+")
_HONORIFIC = re.compile(f"([{HAN_CHARS}]+)(?:先生|女士|小姐|太太|夫人)")
# ü and its tone-marked forms are written "v" in pypinyin's Style.NORMAL, so Latin input is too.
_UMLAUT = str.maketrans(dict.fromkeys("üǖǘǚǜ", "v"))
# Letters that NFD does not decompose into an ASCII letter plus accents.
_LATIN_SPECIAL = str.maketrans(
    {"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)
_ASCII_TOKEN = re.compile(r"[a-z'\-]+")
# Since 2012 passports spell 吕 "LYU" (earlier "LV"); no pinyin syllable ends in "l", so "lyu" is
# always lü. "nyu" is only safe at the start of a part: "jianyu" is jian + yu.
_NYU = re.compile(r"(^|[-'])nyu")
_SPLIT_PARTS = re.compile(r"[-']")
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "madam", "sir"})
_NAME_PLACEHOLDERS = frozenset(
    {
        "某某",
        "某",
        "无名",
        "无名氏",
        "匿名",
        "佚名",
        "客户",
        "顾客",
        "测试用户",
        "本人",
        "姓名",
        "先生",
        "女士",
        "小姐",
        "name",
        "customer",
        "client",
        "anonymous",
        "noname",
        "dummy",
        "tester",
        "testing",
        "testuser",
        "abc",
        "mr",
        "mrs",
        "ms",
        "miss",
    }
)


@dataclass(frozen=True)
class PersonName:
    display: str  # cleaned original: NFKC (full-width → half-width), spaces collapsed, stripped
    hanzi: str | None  # simplified Hanzi without spaces when written in Han script, else None
    surname: str  # pinyin of the surname, lower-case ASCII, no tones: "liu", "ouyang"; "" if none
    given: str  # pinyin of the given name joined: "jianjun"; "" if unknown
    syllables: tuple[str, ...]  # surname first when known: ("liu", "jian", "jun")

    @property
    def full(self) -> str:
        """Surname + given name: the key on which every spelling of one name agrees."""
        return self.surname + self.given


def normalise_name(raw: str) -> PersonName:
    display = clean(raw)
    if not display:
        raise Unusable("empty")
    if len(display) > MAX_NAME_LENGTH:
        raise Unusable("too_long", f"{len(display)} characters")
    if not any(char.isalpha() for char in display):
        if any(char.isdigit() for char in display):
            raise Unusable("bad_characters", "digits in a name")
        raise Unusable("not_a_name", "no letters")
    lowered = display.lower()
    if (
        is_placeholder(display)
        or lowered in _NAME_PLACEHOLDERS
        or lowered.replace(" ", "") in _NAME_PLACEHOLDERS
    ):
        raise Unusable("placeholder")
    for char in display:
        if not (char.isalpha() or char in _PUNCTUATION or unicodedata.combining(char)):
            raise Unusable("bad_characters", f"{char!r} in a name")
    text = display.translate(_TO_ASCII_PUNCTUATION)
    honorific = _HONORIFIC.fullmatch(text)
    if honorific:
        # Call-centre notes hold "刘先生" (Mr Liu): the surname is evidence, the title is not.
        text = honorific.group(1)
    if HAN.search(text):
        # "刘,建军": in Han script a comma can only mark where the surname ends, as a space does.
        han = " ".join(text.replace(",", " ").split())
        if _HAN_ONLY.fullmatch(han):
            return _han_name(display, han)
    return _latin_name(display, text)


def name_pinyin_initials(name: PersonName) -> str:
    """First letter of each syllable, surname first: 刘建军 → "ljj" (a blocking key)."""
    return "".join(syllable[0] for syllable in name.syllables if syllable)


def _han_name(display: str, text: str) -> PersonName:
    if "·" in text:
        # Minority and transliterated names (阿依古丽·买买提, 约翰·史密斯) have no surname in the
        # Chinese sense; keep their parts in written order.
        parts = [simplified(part.replace(" ", "")) for part in text.split("·")]
        parts = [part for part in parts if part]
        syllables = tuple(syllable for part in parts for syllable in phrase_pinyin(part))
        return PersonName(display, "·".join(parts), "", "".join(syllables), syllables)
    words = text.split()
    hanzi = simplified("".join(words))
    first = hanzi[: len(words[0])] if len(words) > 1 else ""
    if len(first) == 1 or first in COMPOUND_SURNAMES:
        # "刘 建军", "欧阳 修", "欧 阳修": whoever typed the space marked where the surname ends.
        surname = first
    elif len(hanzi) > 2 and hanzi[:2] in COMPOUND_SURNAMES:
        surname = hanzi[:2]
    else:
        surname = hanzi[:1]
    given_hanzi = hanzi[len(surname) :]
    surname_pinyin = surname_syllables(surname)
    given_pinyin = phrase_pinyin(given_hanzi) if given_hanzi else ()
    return PersonName(
        display,
        hanzi,
        "".join(surname_pinyin),
        "".join(given_pinyin),
        surname_pinyin + given_pinyin,
    )


def _latin_name(display: str, text: str) -> PersonName:
    # A name mixing scripts ("刘 Jianjun") is read as Latin, with each Han run in pinyin.
    text = _HAN_RUN.sub(lambda run: " " + "".join(phrase_pinyin(simplified(run[0]))) + " ", text)
    text = text.replace("·", " ")
    head, comma, tail = text.partition(",")
    if comma and head.strip() and tail.strip(" ,"):
        # "LIU,JIANJUN" / "Liu, Jian Jun": the surname comes before the comma.
        surname_words = _words(head)
        given_words = _words(tail.replace(",", " "))
        if not surname_words:
            surname_words, given_words = given_words[:1], given_words[1:]
    else:
        words = _words(text.replace(",", " "))
        surname_words, given_words = _order(words)
    if not surname_words:
        raise Unusable("not_a_name", "no letters left once titles and punctuation are removed")
    surname = "".join(_key(word) for word in surname_words)
    given = "".join(_key(word) for word in given_words)
    if not given and len(surname_words) == 1:
        # One run of letters ("LIUJIANJUN"): split off the surname if the syllables show it.
        surname, given = _split_single(surname)
    syllables = tuple(
        syllable
        for word in (*surname_words, *given_words)
        for part in _SPLIT_PARTS.split(_ascii(word))
        if part
        for syllable in (split_syllables(part) or (part,))
    )
    return PersonName(display, None, surname, given, syllables)


def _words(text: str) -> list[str]:
    """Words as written (case kept for the capitals rule), titles and bare punctuation dropped."""
    words = []
    for word in text.split():
        key = _key(word)
        if key and key not in _TITLES:
            words.append(word)
    return words


@functools.lru_cache(maxsize=65536)
def _ascii(word: str) -> str:
    """Lower-case ASCII letters, apostrophes and hyphens, or Unusable("bad_characters")."""
    folded = word.lower().translate(_UMLAUT)
    if not folded.isascii():
        folded = unicodedata.normalize("NFD", folded)
        folded = "".join(char for char in folded if not unicodedata.combining(char))
        folded = folded.translate(_LATIN_SPECIAL)
    if not _ASCII_TOKEN.fullmatch(folded):
        raise Unusable("bad_characters", f"{word!r} is neither Hanzi nor Latin letters")
    return _NYU.sub(r"\1nv", folded.replace("lyu", "lv"))


def _key(word: str) -> str:
    return _ascii(word).replace("-", "").replace("'", "")


def _order(words: list[str]) -> tuple[list[str], list[str]]:
    """Split words into (surname words, given-name words)."""
    if len(words) < 2:
        return words, []
    # Many forms write the surname in capitals and the rest not: "Jianjun LIU", "LIU Jianjun".
    capitals = [i for i, word in enumerate(words) if word.isupper() and len(word) > 1]
    if len(capitals) == 1 and any(not word.isupper() for word in words):
        if capitals[0] == 0:
            return words[:1], words[1:]
        if capitals[0] == len(words) - 1:
            return words[-1:], words[:-1]
    keys = [_key(word) for word in words]
    compounds = compound_surnames_pinyin()
    if len(words) > 2 and keys[0] + keys[1] in compounds:
        return words[:2], words[2:]  # "Ou Yang Xiu"
    if keys[-1] in compounds and keys[0] not in compounds:
        return words[-1:], words[:-1]  # "Liang Zhuge": no given name is spelled like 诸葛
    known = known_surnames()
    if keys[-1] in known and keys[0] not in known:
        return words[-1:], words[:-1]  # "Jianjun Liu"
    # Both or neither is a known surname: Chinese records write the surname first.
    return words[:1], words[1:]


def _split_single(run: str) -> tuple[str, str]:
    syllables = split_syllables(run)
    if syllables is None or len(syllables) < 2:
        return run, ""
    if len(syllables) > 2 and syllables[0] + syllables[1] in compound_surnames_pinyin():
        surname = syllables[0] + syllables[1]
        return surname, run[len(surname) :]
    if syllables[0] in known_surnames():
        return syllables[0], run[len(syllables[0]) :]
    return run, ""
