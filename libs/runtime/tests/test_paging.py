from __future__ import annotations

import base64

import pytest

from zhike_runtime.errors import InvalidArgument
from zhike_runtime.paging import PageTokens
from zhike_runtime.validation import Violations


def read(tokens: PageTokens, token: str, query: str = "reviews") -> list[str] | None:
    v = Violations()
    position = tokens.read(v, "page_token", query, token)
    v.raise_if_any()
    return position


def test_a_token_round_trips_its_position() -> None:
    tokens = PageTokens(b"k" * 32)
    assert read(tokens, tokens.issue("reviews", ["2026-11-29T10:00:00", "abc"])) == [
        "2026-11-29T10:00:00",
        "abc",
    ]
    assert read(tokens, "") is None


@pytest.mark.parametrize("token", ["garbage", "2000-01-01T00:00:00|forged", "====", "a" * 500])
def test_forged_tokens_are_refused_naming_the_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        read(PageTokens(b"k" * 32), token)
    assert [v.field for v in raised.value.violations] == ["page_token"]


def test_an_altered_position_or_another_key_or_listing_is_refused() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.issue("reviews", ["1"])
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[raw.index(b"1")] = ord("2")
    altered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (altered,):
        with pytest.raises(InvalidArgument):
            read(tokens, bad)
    with pytest.raises(InvalidArgument):
        read(PageTokens(b"x" * 32), token)
    with pytest.raises(InvalidArgument):
        read(tokens, token, query="parties")
