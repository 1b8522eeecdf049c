from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from zhike_runtime.app import page_token_key
from zhike_runtime.crypto import generate_key
from zhike_runtime.errors import InvalidArgument
from zhike_runtime.paging import (
    DEFAULT_PAGE_SIZE,
    PageTokens,
    bind_page_token_owner,
    page_size,
    unbind_page_token_owner,
)
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.services import TEST_SETTINGS
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


def test_an_altered_token_or_another_key_or_listing_is_refused() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.issue("reviews", ["1"])
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[len(raw) // 2] ^= 0x01
    altered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidArgument):
        read(tokens, altered)
    with pytest.raises(InvalidArgument):
        read(PageTokens(b"x" * 32), token)
    with pytest.raises(InvalidArgument) as raised:
        read(tokens, token, query="parties")
    assert raised.value.violations[0].description == "belongs to another listing"


def test_a_token_shows_nothing_of_its_listing_or_position() -> None:
    token = PageTokens(b"k" * 32).issue("offers|party-42", ["app_card", "2026-11-29T10:00:00"])
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for plain in (b"offers", b"party-42", b"app_card", b"2026"):
        assert plain not in raw


def test_a_token_read_after_a_day_has_expired() -> None:
    now = [1_800_000_000.0]
    tokens = PageTokens(b"k" * 32, clock=lambda: now[0])
    token = tokens.issue("reviews", ["7"])
    now[0] += 24 * 3600
    assert read(tokens, token) == ["7"]
    now[0] += 1
    with pytest.raises(InvalidArgument) as raised:
        read(tokens, token)
    assert raised.value.violations[0].description == "has expired: start the listing again"


def test_a_token_works_only_for_the_caller_it_was_issued_to() -> None:
    tokens = PageTokens(b"k" * 32)
    issued_to = bind_page_token_owner("teller-0042")
    token = tokens.issue("reviews", ["7"])
    assert read(tokens, token) == ["7"]
    unbind_page_token_owner(issued_to)

    other = bind_page_token_owner("teller-0043")
    try:
        with pytest.raises(InvalidArgument) as raised:
            read(tokens, token)
    finally:
        unbind_page_token_owner(other)
    assert raised.value.violations[0].description == (
        "is not a page token this service issued to this caller"
    )


@pytest.mark.parametrize(
    ("requested", "expected"),
    [(0, DEFAULT_PAGE_SIZE), (1, 1), (200, 200), (201, 200), (10**6, 200), (2**31 - 1, 200)],
)
def test_page_size_defaults_at_zero_and_clamps_to_the_maximum(
    requested: int, expected: int
) -> None:
    v = Violations()
    assert page_size(v, "page_size", requested, maximum=200) == expected
    assert not v


def test_a_negative_page_size_is_a_violation_naming_the_field() -> None:
    v = Violations()
    page_size(v, "reviews.page_size", -1, maximum=200)
    with pytest.raises(InvalidArgument) as raised:
        v.raise_if_any()
    assert [f.field for f in raised.value.violations] == ["reviews.page_size"]


def test_the_default_never_exceeds_a_smaller_maximum() -> None:
    assert page_size(Violations(), "page_size", 0, maximum=10) == 10


def replica_settings(**overrides: Any) -> ServiceSettings:
    """One replica's settings, as every pod of a deployment gets them."""
    return ServiceSettings(**(TEST_SETTINGS | overrides))


def field_keys() -> dict[str, str]:
    return {
        "data_keys": json.dumps({"k1": generate_key()}),
        "data_key_id": "k1",
        "blind_index_key": generate_key(),
    }


def test_a_token_one_replica_issued_is_read_by_another_with_the_field_keys_alone() -> None:
    keys = field_keys()
    issuing = PageTokens(page_token_key("offers", replica_settings(**keys)))
    reading = PageTokens(page_token_key("offers", replica_settings(**keys)))
    other_service = PageTokens(page_token_key("profile", replica_settings(**keys)))

    token = issuing.issue("offers", ["7"])

    assert read(reading, token, "offers") == ["7"]
    with pytest.raises(InvalidArgument):
        read(other_service, token, "offers")


def test_the_page_token_key_setting_wins_over_the_field_keys() -> None:
    settings = replica_settings(**field_keys(), page_token_key="shared-secret")
    assert page_token_key("offers", settings) == b"shared-secret"


def test_without_either_key_each_replica_signs_with_its_own() -> None:
    no_keys = replica_settings(data_keys=None, data_key_id=None, blind_index_key=None)
    assert page_token_key("offers", no_keys) is None
