"""Blocking keys: a one-digit typo or a part of the name swapped still leaves a key in common."""

from __future__ import annotations

from zhike_identity.domain.matching.blocking import MAX_KEY_LENGTH, blocking_keys
from zhike_identity.domain.matching.features import RawRecord, extract_features


def shared_keys(a: RawRecord, b: RawRecord) -> set[str]:
    return set(blocking_keys(extract_features(a))) & set(blocking_keys(extract_features(b)))


def test_a_short_document_number_with_one_typo_shares_a_half() -> None:
    a = RawRecord("x", "a", full_name="vanessa george", id_type="OTHER", id_number="3116798")
    b = RawRecord("x", "b", full_name="vanessa geogre", id_type="OTHER", id_number="3116789")
    assert shared_keys(a, b) == {"ih:OTHER:311"}


def test_either_name_part_with_the_postcode_is_a_key() -> None:
    a = RawRecord("x", "a", full_name="jessica hanna", address="7 jerrabomberra avenue nsw 2821")
    b = RawRecord("x", "b", full_name="jesdicai hanna", address="7 jerrabombera avenue nsw 2821")
    assert shared_keys(a, b) == {"gp:hanna:2821"}


def test_a_name_typed_quite_differently_meets_its_record_by_birth_date_and_initial() -> None:
    a = RawRecord("x", "a", full_name="emiily hingston", birth_date="1971-12-19")
    b = RawRecord("x", "b", full_name="emily hingstxon", birth_date="1971-12-19")
    assert shared_keys(a, b) == {"bi:1971-12-19:e", "bi:1971-12-19:h"}
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
    assert shared_keys(a, b) == {"ai:15paulcoecrescentmooroolbarksa:e"}


def test_a_key_longer_than_the_index_column_is_stored_as_a_digest() -> None:
    address = "北京市朝阳区" + "建国路八十八号院" * 30  # normalised text far over 200 characters
    a = RawRecord("x", "a", full_name="王伟", address=address)
    b = RawRecord("x", "b", full_name="王薇", address=address)
    keys = blocking_keys(extract_features(a))
    assert all(len(k) <= MAX_KEY_LENGTH for k in keys)
    assert any(k.startswith("ai:#") for k in shared_keys(a, b))  # equal values, equal digests
