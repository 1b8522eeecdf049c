"""Inbound SMS replies: "TD", "T" and "退订" in their everyday variants unsubscribe from
marketing SMS; anything else does nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_notifications.domain.model import Channel, Purpose
from zhike_notifications.domain.replies import (
    NO_ACTION,
    Reply,
    ReplyAction,
    command,
    parse_reply,
)

UNSUBSCRIBE = Reply(ReplyAction.UNSUBSCRIBE, Channel.SMS, Purpose.MARKETING)


@pytest.mark.parametrize(
    "text",
    [
        "TD",
        "td",
        "Td",
        "T",
        "t",
        "退订",
        " TD ",
        "TD\n",
        "\tT D",
        "ＴＤ",  # full-width letters
        "ｔｄ",
        "ＴＤ\u3000",  # ideographic space
        "退 订",
        "退订。",
        "TD!",
        "「退订」",
        "T\u200bD",  # a zero-width space
    ],
)
def test_the_unsubscribe_words_and_their_variants_unsubscribe(text: str) -> None:
    assert parse_reply(text) == UNSUBSCRIBE


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "不要退订",
        "TD 谢谢",
        "TDD",
        "好的",
        "T1",
        "STOP",
        "退订吗？",
        "tdx",
        "T" * 2000,
    ],
)
def test_anything_else_does_nothing(text: str) -> None:
    assert parse_reply(text) == NO_ACTION


@given(
    word=st.sampled_from(["TD", "td", "T", "退订", "ＴＤ"]),
    before=st.text(alphabet=" \t\n\u3000\u00a0", max_size=5),
    after=st.text(alphabet=" \t\n\u3000\u00a0。！!.", max_size=5),
)
def test_a_word_wrapped_in_whitespace_or_punctuation_still_unsubscribes(
    word: str, before: str, after: str
) -> None:
    assert parse_reply(before + word + after) == UNSUBSCRIBE


@given(
    word=st.sampled_from(["TD", "T", "退订"]),
    extra=st.characters(categories=["Lu", "Ll", "Lo", "Nd"]).filter(
        lambda c: command(c) not in {"", "t", "d", "退", "订"}
    ),
    where=st.integers(0, 2),
)
def test_a_word_with_any_other_letter_or_digit_does_nothing(
    word: str, extra: str, where: int
) -> None:
    position = min(where, len(word))
    assert parse_reply(word[:position] + extra + word[position:]) == NO_ACTION
