"""Source record validation: every bad-input class names its field path, all at once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhike_identity.domain.model import (
    Gender,
    IdType,
    SourceRecord,
    SourceRecordInput,
    SourceRecordKey,
)
from zhike_identity.domain.resident_id import check_character
from zhike_identity.domain.validation import validate_source_record
from zhike_runtime.errors import InvalidArgument

TODAY = dt.date(2026, 6, 1)
RESIDENT_ID = "11010519491231002X"  # born 1949-12-31
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)

# Stored column widths (identity_0001) that the validator's max lengths are meant to protect.
STORED_LIMITS = {
    "source_system": 64,
    "source_record_id": 128,
    "full_name": 200,
    "id_number": 64,
    "phone": 32,
    "email": 254,
    "address": 500,
}

VALID = SourceRecordInput(
    source_system="core-banking",
    source_record_id="CIF-000123",
    full_name="王小明",
    id_type=int(IdType.RESIDENT_ID),
    id_number=RESIDENT_ID,
    phone="+86 138-0013-8000",
    email="xiaoming.wang@example.cn",
    birth_date=(1949, 12, 31),
    gender=int(Gender.FEMALE),
    address="北京市朝阳区建国路 1 号",
)


def record(**changes: Any) -> SourceRecordInput:
    return dataclasses.replace(VALID, **changes)


def violated_fields(candidate: SourceRecordInput) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        validate_source_record(candidate, TODAY)
    return [v.field for v in caught.value.violations]


def outcome(candidate: SourceRecordInput) -> SourceRecord | InvalidArgument:
    """The validated record, or the InvalidArgument it was rejected with (anything else raises)."""
    try:
        return validate_source_record(candidate, TODAY)
    except InvalidArgument as error:
        return error


def test_valid_record_is_normalised() -> None:
    validated = validate_source_record(
        record(
            source_record_id="  CIF-000123 ",
            full_name=" Zoe\u0301 ",  # decomposed é
            id_number="110105 19491231 002x",
            email="XiaoMing.Wang@Example.CN",
        ),
        TODAY,
    )

    assert validated.key == SourceRecordKey("core-banking", "CIF-000123")
    assert validated.full_name == "Zoé"  # NFC, stripped
    assert validated.id_type is IdType.RESIDENT_ID
    assert validated.id_number == RESIDENT_ID
    assert validated.email == "xiaoming.wang@example.cn"
    assert validated.birth_date == dt.date(1949, 12, 31)
    assert validated.gender is Gender.FEMALE


def test_record_with_only_its_key_is_valid() -> None:
    validated = validate_source_record(SourceRecordInput("crm", "42"), TODAY)

    assert validated.key == SourceRecordKey("crm", "42")
    assert validated.id_type is None
    assert validated.gender is None
    assert validated.birth_date is None
    assert validated.id_number == ""


def test_legacy_resident_id_is_stored_in_its_18_character_form() -> None:
    validated = validate_source_record(record(id_number="110105491231002"), TODAY)

    assert validated.id_number == RESIDENT_ID


def test_passport_number_is_upper_cased_without_spaces() -> None:
    validated = validate_source_record(
        record(id_type=int(IdType.PASSPORT), id_number="e 1234 5678", birth_date=None), TODAY
    )

    assert validated.id_number == "E12345678"


BAD_INPUTS = [
    pytest.param(
        {"source_system": ""}, "source_record.key.source_system", id="source-system-empty"
    ),
    pytest.param(
        {"source_system": "core.banking"}, "source_record.key.source_system", id="source-system-dot"
    ),
    pytest.param(
        {"source_system": "core*"}, "source_record.key.source_system", id="source-system-star"
    ),
    pytest.param(
        {"source_system": "core>"}, "source_record.key.source_system", id="source-system-gt"
    ),
    pytest.param(
        {"source_system": "core banking"},
        "source_record.key.source_system",
        id="source-system-space",
    ),
    pytest.param(
        {"source_system": "c" * 65}, "source_record.key.source_system", id="source-system-65-chars"
    ),
    pytest.param(
        {"source_record_id": ""}, "source_record.key.source_record_id", id="record-id-empty"
    ),
    pytest.param(
        {"source_record_id": "   "},
        "source_record.key.source_record_id",
        id="record-id-whitespace-only",
    ),
    pytest.param(
        {"source_record_id": "r" * 129},
        "source_record.key.source_record_id",
        id="record-id-129-chars",
    ),
    pytest.param({"full_name": "名" * 100_000}, "source_record.full_name", id="name-100k"),
    pytest.param({"full_name": "王\x07小明"}, "source_record.full_name", id="name-control-char"),
    pytest.param({"full_name": "王\x00小明"}, "source_record.full_name", id="name-nul"),
    pytest.param({"full_name": "王\u200b小明"}, "source_record.full_name", id="name-zero-width"),
    pytest.param({"full_name": "王\u202e小明"}, "source_record.full_name", id="name-rtl-override"),
    pytest.param({"address": "路\x1b[2J"}, "source_record.address", id="address-escape"),
    pytest.param({"address": "路" * 501}, "source_record.address", id="address-501-chars"),
    pytest.param({"id_type": 99}, "source_record.id_type", id="id-type-99"),
    pytest.param({"id_type": -1}, "source_record.id_type", id="id-type-negative"),
    pytest.param({"gender": 7}, "source_record.gender", id="gender-7"),
    pytest.param({"id_type": 0}, "source_record.id_type", id="id-number-without-id-type"),
    pytest.param(
        {"id_type": int(IdType.PASSPORT), "id_number": "", "birth_date": None},
        "source_record.id_number",
        id="id-type-without-id-number",
    ),
    pytest.param(
        {"id_number": "110105194912310021"}, "source_record.id_number", id="resident-id-checksum"
    ),
    pytest.param(
        {"id_number": "11010519491231002X\x00"}, "source_record.id_number", id="resident-id-nul"
    ),
    pytest.param(
        {"id_number": ""}, "source_record.id_number", id="resident-id-type-without-number"
    ),
    pytest.param(
        {"id_type": 0, "id_number": "", "birth_date": (2000, 2, 30)},
        "source_record.birth_date",
        id="birth-date-feb-30",
    ),
    pytest.param(
        {"id_type": 0, "id_number": "", "birth_date": (2026, 6, 2)},
        "source_record.birth_date",
        id="birth-date-tomorrow",
    ),
    pytest.param(
        {"id_type": 0, "id_number": "", "birth_date": (1875, 12, 31)},
        "source_record.birth_date",
        id="birth-date-over-150-years-ago",
    ),
    pytest.param(
        {"id_type": 0, "id_number": "", "birth_date": (0, 0, 0)},
        "source_record.birth_date",
        id="birth-date-all-zero",
    ),
    pytest.param(
        {"birth_date": (1950, 1, 1)}, "source_record.birth_date", id="birth-date-not-resident-id"
    ),
    pytest.param({"email": "not-an-email"}, "source_record.email", id="email-no-at"),
    pytest.param({"email": "a@b"}, "source_record.email", id="email-no-domain-dot"),
    pytest.param({"email": "a b@example.cn"}, "source_record.email", id="email-space"),
    pytest.param({"email": "a@@example.cn"}, "source_record.email", id="email-two-ats"),
    pytest.param({"phone": "138abc"}, "source_record.phone", id="phone-letters"),
    pytest.param({"phone": "1" * 33}, "source_record.phone", id="phone-33-chars"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_INPUTS)
def test_bad_input_names_the_offending_field(changes: dict[str, Any], field: str) -> None:
    assert field in violated_fields(record(**changes))


@pytest.mark.parametrize(
    "source_system",
    [
        pytest.param("crm\n", id="trailing-newline"),
        pytest.param("crm\r\n", id="trailing-crlf"),
    ],
)
def test_source_system_with_a_line_break_is_rejected(source_system: str) -> None:
    # The source system ends up in keys and subjects: "crm\n" must not pass as a second "crm".
    assert violated_fields(record(source_system=source_system)) == [
        "source_record.key.source_system"
    ]


def test_unknown_id_type_with_an_id_number_is_reported_once_as_unknown() -> None:
    # The caller did send an id_type; "is required when id_number is given" contradicts that.
    with pytest.raises(InvalidArgument) as caught:
        validate_source_record(record(id_type=99, id_number="E123", birth_date=None), TODAY)

    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("source_record.id_type", "unknown value 99")
    ]


def test_all_violations_are_reported_at_once() -> None:
    candidate = SourceRecordInput(
        source_system="a.b.>",
        source_record_id="",
        full_name="x" * 100_000,
        id_type=99,
        id_number="123",
        phone="call me",
        email="nobody",
        birth_date=(2000, 2, 30),
        gender=7,
        address="\u202e",
    )

    with pytest.raises(InvalidArgument) as caught:
        validate_source_record(candidate, TODAY)

    fields = {v.field for v in caught.value.violations}
    assert fields == {
        "source_record.key.source_system",
        "source_record.key.source_record_id",
        "source_record.full_name",
        "source_record.id_type",
        "source_record.phone",
        "source_record.email",
        "source_record.birth_date",
        "source_record.gender",
        "source_record.address",
    }
    assert all(v.description for v in caught.value.violations)
    assert "source_record.full_name" in str(caught.value)


def test_resident_id_with_digit_like_characters_is_a_named_violation() -> None:
    # "①" passes str.isdigit() but not int(): must be INVALID_ARGUMENT, not a crash.
    assert violated_fields(record(id_number="①" * 15, birth_date=None)) == [
        "source_record.id_number"
    ]


def stored_value(validated: SourceRecord, field: str) -> str:
    if field in ("source_system", "source_record_id"):
        return str(getattr(validated.key, field))
    return str(getattr(validated, field))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # U+0958 is excluded from composition: NFC turns each one into two code points.
        pytest.param({"full_name": "\u0958" * 200}, "full_name", id="name-grows-under-nfc"),
        pytest.param(
            {"source_record_id": "\u0958" * 128}, "source_record_id", id="record-id-grows-under-nfc"
        ),
        # "İ".lower() is two code points.
        pytest.param(
            {"email": "İ" * 120 + "@" + "İ" * 120 + ".cn"}, "email", id="email-grows-when-lowered"
        ),
        # "ß".upper() is "SS".
        pytest.param(
            {"id_type": int(IdType.PASSPORT), "id_number": "ß" * 64, "birth_date": None},
            "id_number",
            id="passport-grows-when-upper-cased",
        ),
    ],
)
def test_text_that_grows_past_its_limit_under_normalisation_is_refused_naming_it(
    changes: dict[str, Any], field: str
) -> None:
    # Each passes its limit as sent and exceeds it once normalised (the stored form).
    result = outcome(record(**changes))

    assert isinstance(result, InvalidArgument)
    [violation] = result.violations
    assert field in violation.field


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    birth = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
    first17 = f"110105{birth:%Y%m%d}{draw(st.integers(0, 999)):03d}"
    return first17 + check_character(first17)


_text = st.text(max_size=300)
_id_numbers = st.one_of(
    _text,
    resident_ids(),
    st.text(alphabet=st.sampled_from("0123456789①²٣"), min_size=15, max_size=15),
    st.text(alphabet=st.sampled_from("0123456789X ①²٣"), min_size=14, max_size=19),
)


@settings(max_examples=300)
@given(
    st.builds(
        SourceRecordInput,
        # "$" as the service's own pattern writes it; Hypothesis may add the newline "$" allows.
        source_system=st.one_of(_text, st.from_regex(r"^[A-Za-z0-9_-]{1,60}$")),
        source_record_id=_text,
        full_name=_text,
        id_type=st.one_of(
            st.just(int(IdType.RESIDENT_ID)), st.sampled_from(list(IdType)).map(int), INT32
        ),
        id_number=_id_numbers,
        phone=_text,
        email=st.one_of(_text, st.emails()),
        birth_date=st.one_of(st.none(), st.tuples(INT32, INT32, INT32)),
        gender=st.one_of(st.integers(0, 3), INT32),
        address=st.text(max_size=600),
    )
)
def test_any_source_record_validates_or_is_rejected_by_field(candidate: SourceRecordInput) -> None:
    result = outcome(candidate)

    if isinstance(result, InvalidArgument):
        assert result.violations
        assert all(v.field.startswith("source_record.") for v in result.violations)
        assert all(v.description for v in result.violations)
        return
    assert result.key.source_system == candidate.source_system
    assert re.fullmatch(r"[A-Za-z0-9_-]+", result.key.source_system)
    assert result.key.source_record_id
    for field, limit in STORED_LIMITS.items():
        assert len(stored_value(result, field)) <= limit, field


def test_a_birth_date_that_is_no_calendar_date_is_named_never_quoted() -> None:
    # The caller's answer and its log line carry the description: a birth date is personal.
    with pytest.raises(InvalidArgument) as caught:
        validate_source_record(record(birth_date=(1990, 2, 30)), TODAY)

    [violation] = caught.value.violations
    assert (violation.field, violation.description) == (
        "source_record.birth_date",
        "is not a calendar date",
    )
