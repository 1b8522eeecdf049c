"""Identity documents: resident ID numbers (valid, mistyped, legacy, garbage) and other kinds."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhike_identity.domain.normalise import (
    KINDS,
    IdentityDocument,
    Unusable,
    infer_id_kind,
    normalise_id,
)
from zhike_identity.domain.resident_id import check_character

TODAY = dt.date(2026, 6, 1)
VALID = "11010519491231002X"  # GB 11643's worked example: born 1949-12-31, female


def with_check(first17: str) -> str:
    return first17 + check_character(first17)


def test_valid_resident_id_gives_birth_date_and_sex() -> None:
    assert normalise_id("RESIDENT_ID", VALID, TODAY) == IdentityDocument(
        "RESIDENT_ID", VALID, True, dt.date(1949, 12, 31), False
    )


@pytest.mark.parametrize(
    "raw",
    [
        "11010519491231002x",
        "110105 19491231 002X",
        "110105-19491231-002X",
        "１１０１０５１９４９１２３１００２Ｘ",
        " 110105\u300019491231\u3000002x ",
    ],
)
def test_resident_id_formatting_is_removed(raw: str) -> None:
    document = normalise_id("RESIDENT_ID", raw, TODAY)

    assert (document.number, document.valid) == (VALID, True)


def test_legacy_15_digit_number_becomes_its_18_character_form() -> None:
    document = normalise_id("RESIDENT_ID", "440524800101001", TODAY)

    assert document.number == with_check("44052419800101001")
    assert document.valid
    assert document.birth_date == dt.date(1980, 1, 1)
    assert document.male is True


def test_mistyped_digit_keeps_the_number_as_invalid_evidence_with_its_birth_date() -> None:
    mistyped = VALID[:15] + "3" + VALID[16:]  # sequence 002 → 032: check character now wrong

    document = normalise_id("RESIDENT_ID", mistyped, TODAY)

    assert document == IdentityDocument(
        "RESIDENT_ID", mistyped, False, dt.date(1949, 12, 31), False
    )


def test_wrong_check_character_alone_is_invalid_not_unusable() -> None:
    document = normalise_id("RESIDENT_ID", VALID[:17] + "1", TODAY)

    assert not document.valid
    assert document.birth_date == dt.date(1949, 12, 31)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("无", "placeholder"),
        ("000000000000000000", "placeholder"),
        ("111111111111111111", "placeholder"),
        ("123456789012345678", "placeholder"),
        ("1101051949123100", "bad_length"),
        ("11010519491331002X", "bad_date"),  # month 13
        ("11010519490230002X", "bad_date"),  # 30 February
        ("11010530491231002X", "out_of_range"),  # born 3049
        ("01010519491231002X", "unknown_format"),  # no region starts with 0
        ("1101051949123100X2", "unknown_format"),
        ("11010519491231002Y", "unknown_format"),
        ("110105194912310★2X", "bad_characters"),
        ("1" * 40, "too_long"),
    ],
)
def test_unusable_resident_ids(raw: str, reason: str) -> None:
    with pytest.raises(Unusable) as caught:
        normalise_id("RESIDENT_ID", raw, TODAY)

    assert caught.value.reason == reason


@given(
    st.integers(110000, 659999),
    st.dates(dt.date(TODAY.year - 150, 1, 1), TODAY),
    st.integers(0, 999),
)
def test_any_well_formed_number_is_valid_and_any_one_digit_typo_is_not(
    region: int, birth: dt.date, sequence: int
) -> None:
    number = with_check(f"{region:06d}{birth:%Y%m%d}{sequence:03d}")

    document = normalise_id("RESIDENT_ID", number, TODAY)

    assert document.valid
    assert document.number == number
    assert document.birth_date == birth
    # MOD 11-2 catches every single-digit substitution; the sequence part leaves the date intact.
    typo = number[:15] + str((int(number[15]) + 1) % 10) + number[16:]
    mistyped = normalise_id("RESIDENT_ID", typo, TODAY)
    assert not mistyped.valid
    assert mistyped.birth_date == birth


@pytest.mark.parametrize(
    ("kind", "raw", "number", "valid"),
    [
        ("PASSPORT", "E12345678", "E12345678", True),
        ("PASSPORT", "ea 1234567", "EA1234567", True),
        ("PASSPORT", "520471896", "520471896", True),
        ("PASSPORT", "ABCDEFGH", "ABCDEFGH", False),  # no digit
        ("PASSPORT", "E1234567890", "E1234567890", False),  # too long for an MRZ
        ("HK_MACAO_PERMIT", "H12345678", "H12345678", True),
        ("HK_MACAO_PERMIT", "m1234567801", "M12345678", True),  # renewal count dropped
        ("HK_MACAO_PERMIT", "C12345678", "C12345678", False),
        ("TAIWAN_PERMIT", "0415-2387", "04152387", True),
        ("TAIWAN_PERMIT", "0415238701", "0415238701", False),
        ("FOREIGN_PERMANENT_RESIDENT", "USA310112120101", "USA310112120101", True),
        ("FOREIGN_PERMANENT_RESIDENT", with_check("93184019800101001"), None, True),
        ("FOREIGN_PERMANENT_RESIDENT", "931840198001010010", "931840198001010010", False),
        ("OTHER", "ab-1234", "AB1234", True),
        ("OTHER", "a1b", None, None),
    ],
)
def test_other_document_kinds(kind: str, raw: str, number: str | None, valid: bool | None) -> None:
    if valid is None:
        with pytest.raises(Unusable) as caught:
            normalise_id(kind, raw, TODAY)
        assert caught.value.reason == "bad_length"
        return
    document = normalise_id(kind, raw, TODAY)

    assert document.kind == kind
    assert document.number == (number or raw)
    assert document.valid is valid
    assert document.birth_date is None
    assert document.male is None


def test_foreign_permanent_resident_check_character_is_verified() -> None:
    good = with_check("93184019800101001")
    bad = good[:17] + ("0" if good[17] != "0" else "1")

    assert normalise_id("FOREIGN_PERMANENT_RESIDENT", good, TODAY).valid
    assert not normalise_id("FOREIGN_PERMANENT_RESIDENT", bad, TODAY).valid


def test_kind_is_case_insensitive_and_unknown_kinds_are_rejected() -> None:
    assert normalise_id(" resident_id ", VALID, TODAY).valid
    with pytest.raises(Unusable) as caught:
        normalise_id("DRIVING_LICENCE", "123456", TODAY)
    assert caught.value.reason == "unknown_kind"


def test_empty_kind_is_inferred() -> None:
    assert normalise_id("", VALID, TODAY).kind == "RESIDENT_ID"
    assert normalise_id("", "E12345678", TODAY).kind == "OTHER"


def test_non_resident_kinds_reject_garbage() -> None:
    with pytest.raises(Unusable) as caught:
        normalise_id("PASSPORT", "E1234/5678", TODAY)
    assert caught.value.reason == "bad_characters"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (VALID, "RESIDENT_ID"),
        ("11010519491231002x", "RESIDENT_ID"),
        (VALID[:17] + "1", "RESIDENT_ID"),  # wrong check character: still shaped like one
        ("440524800101001", "RESIDENT_ID"),
        ("11010519491331002X", None),  # month 13
        ("E12345678", None),
        ("13812345678", None),
        (with_check("93184019800101001"), None),  # a foreign permanent resident card
        ("", None),
        ("\x00" * 18, None),
    ],
)
def test_infer_id_kind(raw: str, kind: str | None) -> None:
    assert infer_id_kind(raw) == kind


def test_kinds_are_the_contract_id_types() -> None:
    from zhike_identity.domain.model import IdType

    assert set(KINDS) == {member.name for member in IdType}
