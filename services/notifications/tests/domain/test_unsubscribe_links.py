"""Unsubscribe links: a token names its notification only under the secret it was made with."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_notifications.domain.unsubscribe_links import (
    MAX_NOTIFICATION_ID_LENGTH,
    MAX_TOKEN_LENGTH,
    notification_of,
    unsubscribe_token,
    unsubscribe_url,
)

SECRET = b"unsubscribe-secret-for-tests"


@given(st.text(min_size=1, max_size=MAX_NOTIFICATION_ID_LENGTH))
def test_a_token_names_the_notification_it_was_made_for(notification_id: str) -> None:
    token = unsubscribe_token(SECRET, notification_id)
    assert len(token) <= MAX_TOKEN_LENGTH
    assert notification_of(SECRET, token) == notification_id


def test_a_token_made_with_another_secret_names_nothing() -> None:
    token = unsubscribe_token(b"another-secret", "n-1")
    assert notification_of(SECRET, token) is None


@given(st.data())
def test_a_token_with_any_character_changed_names_nothing(data: st.DataObject) -> None:
    token = unsubscribe_token(SECRET, "notification-0001")
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    )
    tampered = token[:position] + replacement + token[position + 1 :]
    if tampered != token:
        assert notification_of(SECRET, tampered) is None


def test_a_token_for_another_id_with_the_first_ones_mac_names_nothing() -> None:
    encoded_id, mac = unsubscribe_token(SECRET, "n-1").split(".")
    other_id, _ = unsubscribe_token(SECRET, "n-2").split(".")
    assert notification_of(SECRET, f"{other_id}.{mac}") is None
    assert notification_of(SECRET, f"{encoded_id}.{mac}") == "n-1"


@pytest.mark.parametrize(
    "token",
    ["", ".", "bi0x", "bi0x.", ".abc", "bi0x.abc.def", "bi0x." + "A" * 43, "x" * 5000, "b i0x.a"],
)
def test_what_is_not_a_token_names_nothing(token: str) -> None:
    assert notification_of(SECRET, token) is None


@given(st.text(max_size=300))
def test_any_text_is_either_a_token_or_names_nothing(text: str) -> None:
    assert notification_of(SECRET, text) is None


def test_the_link_is_the_public_base_url_with_the_token() -> None:
    url = unsubscribe_url("https://notify.example.cn/", SECRET, "n-1")
    assert url == f"https://notify.example.cn/unsubscribe/{unsubscribe_token(SECRET, 'n-1')}"


@pytest.mark.parametrize(("secret", "notification_id"), [(b"", "n-1"), (SECRET, "")])
def test_an_empty_secret_or_id_makes_no_token(secret: bytes, notification_id: str) -> None:
    with pytest.raises(ValueError, match=r"empty|characters"):
        unsubscribe_token(secret, notification_id)


def test_an_empty_secret_verifies_nothing() -> None:
    with pytest.raises(ValueError, match="empty"):
        notification_of(b"", unsubscribe_token(SECRET, "n-1"))
