"""Blocking keys: a one-digit typo or a part of the name swapped still leaves a key in common."""

from __future__ import annotations

import datetime as dt

import pytest

from zhike_identity.domain.matching.blocking import (
    MAX_KEY_LENGTH,
    blocking_keys,
    name_and_birth_date_keys,
)
from zhike_identity.domain.matching.features import RawRecord, extract_features
from zhike_identity.domain.normalise import normalise_name


def shared_keys(a: RawRecord, b: RawRecord) -> set[str]:
    return set(blocking_keys(extract_features(a))) & set(blocking_keys(extract_features(b)))


def test_a_short_document_number_with_one_typo_shares_a_half() -> None:
    a = RawRecord("x", "a", full_name="vanessa george", id_type="OTHER", id_number="3116798")
    b = RawRecord("x", "b", full_name="vanessa geogre", id_type="OTHER", id_number="3116789")
    assert shared_keys(a, b) == {"ih:OTHER:311"}


def test_either_name_part_with_the_postcode_is_a_key() -> None:
    a = RawRecord("x", "a", full_name="jessica hanna", address="7 jerrabomberra avenue nsw 2821")
    b = RawRecord("x", "b", full_name="jesdicai hanna", address="7 jerrabombera avenue nsw 2821")
    assert "gp:hanna:2821" in shared_keys(a, b)


def test_a_name_typed_quite_differently_meets_its_record_by_birth_date_and_initial() -> None:
    a = RawRecord("x", "a", full_name="emiily hingston", birth_date="1971-12-19")
    b = RawRecord("x", "b", full_name="emily hingstxon", birth_date="1971-12-19")
    assert {"bi:1971-12-19:e", "bi:1971-12-19:h"} <= shared_keys(a, b)
    # Not everyone born that day: a stranger with other initials shares no key.
    c = RawRecord("x", "c", full_name="zhang wei", birth_date="1971-12-19")
    assert shared_keys(a, c) == set()


def test_a_record_mistyped_in_name_birth_date_and_postcode_meets_its_record_at_home() -> None:
    a = RawRecord(
        "x",
        "a",
        full_name="emiily hingston",
        birth_date="1971-12-19",
        address="15 paul coe crescent mooroolbark sa 2565",
    )
    b = RawRecord(
        "x",
        "b",
        full_name="emiily hingstxon",
        birth_date="1971-13-19",
        address="15 paul coe crescent mooroolbark sa 2556",
    )
    assert "ai:15paulcoecrescentmooroolbarksa:e" in shared_keys(a, b)


def test_a_key_longer_than_the_index_column_is_stored_as_a_digest() -> None:
    address = "北京市朝阳区" + "建国路八十八号院" * 30  # normalised text far over 200 characters
    a = RawRecord("x", "a", full_name="王伟", address=address)
    b = RawRecord("x", "b", full_name="王薇", address=address)
    keys = blocking_keys(extract_features(a))
    assert all(len(k) <= MAX_KEY_LENGTH for k in keys)
    assert any(k.startswith("ai:#") for k in shared_keys(a, b))  # equal values, equal digests


def test_postcodes_in_other_countries_formats_are_keys() -> None:
    # A British and a Canadian postcode: the town and street are mistyped, the name reordered.
    a = RawRecord("x", "a", full_name="Arthur Jones", address="140 Albert Street, Leeds W3 8EE")
    b = RawRecord("x", "b", full_name="JONES Art", address="140 Alberg St, Lees W3 8EE")
    assert {"pk:w38ee:j", "an:140:j"} <= shared_keys(a, b)
    c = RawRecord("x", "c", full_name="Ann Lee", address="240 Bloor Street, Toronto, ON M1E 8A9")
    d = RawRecord("x", "d", full_name="Lee, Anne", address="240 Blor St, Toronto ON M1E 8A9")
    assert "pk:m1e8a9:l" in shared_keys(c, d)


def test_a_han_address_with_a_mistyped_street_meets_by_its_numbers() -> None:
    a = RawRecord("x", "a", full_name="刘晶", address="广州市天河区世纪大道61号16栋4单元3104室")
    b = RawRecord("x", "b", full_name="刘靖", address="天河区世纪安道61号16栋4单元3104室")
    assert "an:61-16-4-3104:l" in shared_keys(a, b)


def test_birth_dates_with_day_and_month_swapped_or_a_mistyped_day_share_a_key() -> None:
    a = RawRecord("x", "a", full_name="Robert Chan", birth_date="1960-07-03")
    swapped = RawRecord("x", "b", full_name="Bob Chan", birth_date="1960-03-07")
    assert "bi:1960-07-03:c" in shared_keys(a, swapped)
    mistyped = RawRecord("x", "c", full_name="Robert Chan", birth_date="1960-07-08")
    assert "bm:1960-07:c" in shared_keys(a, mistyped)


@pytest.mark.parametrize(
    ("asked", "record"),
    [
        ("王伟", RawRecord("x", "a", full_name="王伟", birth_date="1985-03-02")),
        ("王伟", RawRecord("x", "a", full_name="WANG WEI", birth_date="1985年3月2日")),
        # The same name with another split into surname and given name: no `sb`/`gb` in common.
        ("欧阳修", RawRecord("x", "a", full_name="欧 阳修", birth_date="1985-03-02")),
        (
            "阿依古丽·买买提",
            RawRecord("x", "a", full_name="阿依古丽·买买提", birth_date="1985-03-02"),
        ),
        ("王", RawRecord("x", "a", full_name="王", birth_date="1985-03-02", phone="13912345678")),
        # The birth date only in the resident ID number.
        (
            "王伟",
            RawRecord(
                "x", "a", full_name="王伟", id_type="RESIDENT_ID", id_number="110105198503020011"
            ),
        ),
    ],
)
def test_every_record_of_a_name_and_birth_date_holds_the_keys_that_find_it(
    asked: str, record: RawRecord
) -> None:
    keys = name_and_birth_date_keys(normalise_name(asked), dt.date(1985, 3, 2))

    assert set(keys) <= set(blocking_keys(extract_features(record)))
    # Not the name alone: a look-up by name and birth date never reads every 王伟.
    assert [k[:3] for k in keys] == ["bi:", "nm:"]
