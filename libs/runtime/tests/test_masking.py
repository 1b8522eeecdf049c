"""The platform's one masking pattern (JR/T 0171 Annex A style)."""

from __future__ import annotations

import pytest

from zhike_runtime.masking import (
    mask_account_id,
    mask_address,
    mask_email,
    mask_id_number,
    mask_phone,
)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("11010519491231002X", "110*************2X"),
        ("E12345678", "E12****78"),
        ("12345", "*****"),
    ],
)
def test_an_id_number_keeps_its_first_three_and_last_two_characters(
    value: str, masked: str
) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+8613812345678", "+86138****5678"),
        ("+85291234567", "+85*****4567"),
        ("+861234", "+86****"),
    ],
)
def test_a_phone_keeps_its_country_code_first_three_and_last_four_digits(
    value: str, masked: str
) -> None:
    assert mask_phone(value) == masked


def test_an_email_keeps_its_first_letter_and_domain() -> None:
    assert mask_email("xiaoyan.liu@163.com") == "x***@163.com"
    assert mask_email("not-an-address") == "*" * len("not-an-address")


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("北京市朝阳区建国路88号院3号楼1201", "北京市朝阳区****"),
        ("上海市徐汇区", "上海****"),
        ("12 Queen's Road Central, Hong Kong", "12 Que****"),
        ("", ""),
    ],
)
def test_an_address_keeps_at_most_its_leading_administrative_part(value: str, masked: str) -> None:
    assert mask_address(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [("6222021234567890123", "****0123"), ("SAV-0101-88", "****1-88"), ("1234", "****"), ("", "")],
)
def test_an_account_id_keeps_its_last_four_characters(value: str, masked: str) -> None:
    assert mask_account_id(value) == masked
