"""zhike_runtime.phones: numbers read with libphonenumber's metadata, for every service."""

from __future__ import annotations

import pytest

from zhike_runtime.phones import PhoneKind, PhoneUnreadable, parse_phone


@pytest.mark.parametrize(
    ("dialled", "e164", "region", "kind"),
    [
        ("13912345678", "+8613912345678", "CN", PhoneKind.MOBILE),
        ("+86 10 6234 5678", "+861062345678", "CN", PhoneKind.FIXED_LINE),
        ("0086-21-63456789", "+862163456789", "CN", PhoneKind.FIXED_LINE),
        ("+852 9123 4567", "+85291234567", "HK", PhoneKind.MOBILE),
        ("+1 415 555 0100", "+14155550100", "US", PhoneKind.FIXED_LINE_OR_MOBILE),
        ("400 800 1234", "+864008001234", "CN", PhoneKind.SERVICE),
        ("800-820-8820", "+868008208820", "CN", PhoneKind.SERVICE),
        ("12012345678", "+8612012345678", "CN", PhoneKind.UNKNOWN),  # no such mobile range
    ],
)
def test_a_number_is_read_with_its_region_and_type(
    dialled: str, e164: str, region: str, kind: PhoneKind
) -> None:
    phone = parse_phone(dialled)

    assert (phone.e164, phone.region, phone.kind) == (e164, region, kind)
    assert phone.valid is (kind is not PhoneKind.UNKNOWN)


def test_the_area_code_is_told_apart_from_the_subscriber_number() -> None:
    assert parse_phone("010-62345678").area_code_length == 2
    assert parse_phone("0755-26543210").area_code_length == 3
    assert parse_phone("13912345678").area_code_length == 0


@pytest.mark.parametrize(
    ("dialled", "reason"),
    [
        ("hello", "not_a_number"),
        ("+999 1234 5678", "unknown_country"),
        ("+852 123", "bad_length"),
        ("+86 1", "bad_length"),
    ],
)
def test_what_is_no_possible_number_is_refused_with_a_reason(dialled: str, reason: str) -> None:
    with pytest.raises(PhoneUnreadable) as refused:
        parse_phone(dialled)

    assert refused.value.reason == reason
    assert dialled.strip("+") not in str(refused.value)
