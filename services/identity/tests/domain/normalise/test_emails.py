"""E-mail: one comparison form; junk that staff type to get past a form is rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_identity.domain.normalise import Unusable, normalise_email


@pytest.mark.parametrize(
    "raw",
    [
        "zhang.wei@163.com",
        "  Zhang.Wei@163.COM ",
        "ZHANG.WEI@163.COM",
        "ｚｈａｎｇ．ｗｅｉ＠１６３．ｃｏｍ",
        "zhang.wei@163。com",
        "mailto:zhang.wei@163.com",
        "<zhang.wei@163.com>",
        "zhang.wei @ 163.com",
    ],
)
def test_case_width_and_whitespace_are_folded(raw: str) -> None:
    assert normalise_email(raw) == "zhang.wei@163.com"


def test_plus_addressing_and_subdomains_are_kept() -> None:
    assert normalise_email("Li+bank@mail.example-corp.cn") == "li+bank@mail.example-corp.cn"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("无", "placeholder"),
        ("null", "placeholder"),
        ("test@test.com", "placeholder"),
        ("a@a.com", "placeholder"),
        ("123@123.com", "placeholder"),
        ("none@qq.com", "placeholder"),
        ("noemail@bank.cn", "placeholder"),
        ("zhang@example.com", "placeholder"),
        ("zhang@example.org", "placeholder"),
        ("aaaa@qq.com", "placeholder"),
        ("123456@qq.com", "placeholder"),
        ("zhang.wei", "unknown_format"),
        ("zhang@@163.com", "unknown_format"),
        ("zhang@163", "unknown_format"),
        ("zhang..wei@163.com", "unknown_format"),
        ("张伟@163.com", "bad_characters"),
        ("a" * 250 + "@qq.com", "too_long"),
    ],
)
def test_unusable_emails(raw: str, reason: str) -> None:
    with pytest.raises(Unusable) as caught:
        normalise_email(raw)

    assert caught.value.reason == reason


@given(st.emails())
def test_generated_addresses_normalise_to_lower_case_or_a_reason(raw: str) -> None:
    try:
        email = normalise_email(raw)
    except Unusable as error:
        reason = error.reason
    else:
        reason = ""
    if reason:
        # Hypothesis draws from the whole RFC grammar, including example.com and one-letter parts.
        assert reason in {"placeholder", "unknown_format", "too_long"}
        return
    assert email == raw.lower()
    assert normalise_email(email.upper()) == email
