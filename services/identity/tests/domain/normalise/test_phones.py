"""Phones: E.164 from the forms bank records hold, their type, unallocated ranges, placeholders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_identity.domain.normalise import Phone, Unusable, normalise_phone
from zhike_runtime.phones import PhoneKind

MOBILE = Phone("+8613812345678", PhoneKind.MOBILE)


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


@pytest.mark.parametrize("prefix", ["139", "147", "150", "166", "177", "180", "199"])
def test_mobile_prefixes_13_to_19(prefix: str) -> None:
    assert normalise_phone(prefix + "12345678").mobile


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
        ("0931-2345678", "+869312345678"),  # Lanzhou still allocates 7-digit numbers
    ],
)
def test_landlines_drop_the_trunk_zero(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == Phone(e164, PhoneKind.FIXED_LINE)


@pytest.mark.parametrize(
    ("raw", "phone"),
    [
        ("+852 9123 4567", Phone("+85291234567", PhoneKind.MOBILE)),
        ("00852 2123 4567", Phone("+85221234567", PhoneKind.FIXED_LINE)),
        ("+853 6612 3456", Phone("+85366123456", PhoneKind.MOBILE)),
        ("+886 912 345 678", Phone("+886912345678", PhoneKind.MOBILE)),
        ("+886 (0)2 2345 6789", Phone("+886223456789", PhoneKind.FIXED_LINE)),
        ("+44 20 7946 0018", Phone("+442079460018", PhoneKind.FIXED_LINE)),
        # The North American plan does not tell mobiles from landlines.
        ("+1 415 555 0100", Phone("+14155550100", PhoneKind.FIXED_LINE_OR_MOBILE)),
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
        ("4008001234", "service_number"),  # a company's 400 number
        ("800-820-8820", "service_number"),  # toll-free
        ("10086", "unallocated"),  # a carrier's short code
        ("0571-0765432", "unallocated"),  # no local number starts with 0
        ("0571-2222222", "placeholder"),  # an older-plan number, one digit repeated
        ("14912345678", "unallocated"),  # a mobile prefix no carrier holds
        ("+999 1234 5678", "unknown_country"),
        ("62345678", "no_area_code"),
        ("6234567", "no_area_code"),
        ("2345678", "placeholder"),  # counted digits
        ("12012345678", "unallocated"),  # no mobile prefix 12
        ("021-123456", "unallocated"),  # 6 digits: no plan ever had them
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


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("0571-8765432", "+865718765432"),  # Hangzhou before it moved to 8 digits
        ("021-6234567", "+86216234567"),  # Shanghai before 1995
    ],
)
def test_a_seven_digit_landline_of_an_older_numbering_plan_is_kept_as_a_fixed_line(
    raw: str, e164: str
) -> None:
    phone = normalise_phone(raw)

    assert (phone.e164, phone.kind) == (e164, PhoneKind.FIXED_LINE)


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
        # 13800000000 and the like, or a prefix no carrier holds (140…)
        assert reason in ("placeholder", "unallocated")
        return

    assert expected.e164 == "+86" + national
    spaced = f"{national[:3]} {national[3:7]} {national[7:]}"
    for variant in (
        f"+86 {spaced}",
        f"0086-{national}",
        f"86-{national}",
        spaced.replace(" ", "-"),
    ):
        assert normalise_phone(variant) == expected


def test_a_mainland_mobile_is_typed_mobile_and_a_landline_is_not() -> None:
    assert normalise_phone("13812345678").mobile
    assert not normalise_phone("010-62345678").mobile
