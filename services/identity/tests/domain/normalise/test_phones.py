"""Phones: E.164 from the forms bank records hold, mobile versus landline, placeholders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_identity.domain.normalise import Phone, Unusable, normalise_phone

MOBILE = Phone("+8613812345678", True)


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+8613812345678",
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "(+86) 13812345678",
        "0086 13812345678",
        "0086-138-1234-5678",
        "86-13812345678",
        "8613812345678",
        "１３８１２３４５６７８",
        "13812345678/13987654321",  # the first of several numbers
    ],
)
def test_mobile_formats(raw: str) -> None:
    assert normalise_phone(raw) == MOBILE


@pytest.mark.parametrize("prefix", ["13", "14", "15", "16", "17", "18", "19"])
def test_mobile_prefixes_13_to_19(prefix: str) -> None:
    assert normalise_phone(prefix + "912345678").mobile


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("010-62345678", "+861062345678"),
        ("(010) 6234 5678", "+861062345678"),
        ("+86 10 6234 5678", "+861062345678"),
        ("+86 (0)10 6234 5678", "+861062345678"),
        ("0086-10-62345678", "+861062345678"),
        ("86 10 62345678", "+861062345678"),
        ("021-63456789", "+862163456789"),
        ("0755-26543210", "+8675526543210"),
        ("0755-26543210 转 801", "+8675526543210"),
        ("0755 2654 3210 ext. 12", "+8675526543210"),
        ("0571-8765432", "+865718765432"),  # 7-digit subscriber number
    ],
)
def test_landlines_drop_the_trunk_zero(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == Phone(e164, False)


@pytest.mark.parametrize(
    ("raw", "phone"),
    [
        ("+852 9123 4567", Phone("+85291234567", True)),
        ("00852 2123 4567", Phone("+85221234567", False)),
        ("+853 6612 3456", Phone("+85366123456", True)),
        ("+886 912 345 678", Phone("+886912345678", True)),
        ("+886 (0)2 2345 6789", Phone("+886223456789", False)),
        ("+1 415 555 0100", Phone("+14155550100", False)),
    ],
)
def test_hong_kong_macau_taiwan_and_other_countries(raw: str, phone: Phone) -> None:
    assert normalise_phone(raw) == phone


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("无", "placeholder"),
        ("-", "placeholder"),
        ("00000000000", "placeholder"),
        ("11111111111", "placeholder"),
        ("12345678901", "placeholder"),
        ("13800000000", "placeholder"),
        ("13999999999", "placeholder"),
        ("13800138000", "placeholder"),
        ("010-88888888", "placeholder"),
        ("1381234567", "bad_length"),  # 10 digits
        ("138123456789", "bad_length"),  # 12 digits
        ("4008001234", "bad_length"),  # a 400 service number
        ("10086", "bad_length"),
        ("62345678", "no_area_code"),
        ("6234567", "no_area_code"),
        ("2345678", "placeholder"),  # counted digits
        ("12012345678", "unknown_format"),  # no mobile prefix 12
        ("021-1234567", "bad_length"),  # Shanghai numbers have 8 digits
        ("010-02345678", "unknown_format"),
        ("138a1234567", "bad_characters"),
        ("+", "placeholder"),  # punctuation only
        ("+86 138 1234 5678 9", "bad_length"),
        ("+852 123", "bad_length"),
        ("1" * 41, "too_long"),
    ],
)
def test_unusable_phones(raw: str, reason: str) -> None:
    with pytest.raises(Unusable) as caught:
        normalise_phone(raw)

    assert caught.value.reason == reason


@given(st.sampled_from("3456789"), st.text("0123456789", min_size=9, max_size=9))
def test_any_mobile_in_any_common_format_gives_the_same_e164(second: str, rest: str) -> None:
    national = "1" + second + rest
    try:
        expected = normalise_phone(national)
    except Unusable as error:
        reason = error.reason
    else:
        reason = ""
    if reason:
        assert reason == "placeholder"  # 13800000000 and the like
        return

    assert expected == Phone("+86" + national, True)
    spaced = f"{national[:3]} {national[3:7]} {national[7:]}"
    for variant in (
        f"+86 {spaced}",
        f"0086-{national}",
        f"86-{national}",
        spaced.replace(" ", "-"),
    ):
        assert normalise_phone(variant) == expected
