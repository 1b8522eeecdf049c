"""Agreement levels for names: what is a typo, what is another name part, what is another name."""

from __future__ import annotations

from zhike_identity.domain.matching.comparison import FIELDS, compare
from zhike_identity.domain.matching.features import RawRecord, extract_features


def name_level(a: str, b: str) -> str:
    pattern = compare(
        extract_features(RawRecord("x", "a", full_name=a)),
        extract_features(RawRecord("x", "b", full_name=b)),
    )
    return dict(zip(FIELDS, pattern, strict=True))["name"]


def test_a_name_part_left_out_is_a_partial_agreement() -> None:
    assert name_level("amber webb", "webb") == "partial"
    assert name_level("刘建军", "刘") == "partial"


def test_a_part_agreeing_in_another_position_is_a_partial_agreement() -> None:
    # Latin names arrive in either order; which part is the surname is a guess.
    assert name_level("james coleman", "howie james") == "partial"


def test_same_surname_and_given_names_that_differ_are_partial_not_a_typo() -> None:
    # "wangan" and "wangna" are close as whole strings; as names they are two people (twins).
    assert name_level("王安", "王娜") == "partial"
    assert name_level("WANG AN", "WANG NA") == "partial"


def test_typos_and_other_splits_stay_close() -> None:
    assert name_level("jessica hanna", "jesdicai hanna") == "close"
    assert name_level("emiily hingston", "emiily hingstxon") == "close"
    assert name_level("刘建军", "LIU JIANJUN") == "exact_pinyin"


def test_unrelated_names_differ() -> None:
    assert name_level("rhiannon bishop", "nicholas hope") == "different"


def test_a_one_part_name_mistyped_on_both_sides_is_close() -> None:
    assert name_level("kaitlin", "katilin") == "close"
    assert name_level("kaitlin", "kaitlin bowen") == "partial"  # a part missing, not mistyped


def levels(a: RawRecord, b: RawRecord) -> dict[str, str]:
    pattern = compare(extract_features(a), extract_features(b))
    return dict(zip(FIELDS, pattern, strict=True))


def test_an_address_with_a_mistyped_word_is_similar() -> None:
    a = RawRecord("x", "a", address="3 weavell place tilbrook robina tas 7018")
    b = RawRecord("x", "b", address="3 weavell place tilbrogk tas 7018")
    assert levels(a, b)["address"] == "similar"
    # Another house in the same street stays different: numbers are never "mistyped words".
    c = RawRecord("x", "c", address="5 weavell place tilbrook robina tas 7018")
    d = RawRecord("x", "d", address="35 weavell place tas 7018")
    assert levels(c, d)["address"] == "different"


def test_a_nickname_or_short_form_of_the_given_name_is_a_variant() -> None:
    assert name_level("Arthur Jackson", "ARTIE JACKSON") == "variant"  # order guessed apart
    assert name_level("William Smith", "Smith, Bill") == "variant"
    assert name_level("Patricia Patel", "Pat Patel") == "variant"
    assert name_level("Robert Chan", "Bob Chna") == "variant"  # with a typo in the surname


def test_a_variant_needs_the_table_and_the_other_part() -> None:
    # Christopher and Christine share a short form but are not each other's variants.
    assert name_level("Christopher Lee", "Christine Lee") != "variant"
    assert name_level("William Smith", "Bill Jones") == "different"


def birth_level(a: str, b: str) -> str:
    pattern = compare(
        extract_features(RawRecord("x", "a", full_name="Ann Lee", birth_date=a)),
        extract_features(RawRecord("x", "b", full_name="Ann Lee", birth_date=b)),
    )
    return dict(zip(FIELDS, pattern, strict=True))["birth_date"]


def test_a_one_digit_typo_or_a_day_month_swap_is_a_partial_agreement() -> None:
    assert birth_level("1980-05-03", "1980-05-08") == "close"
    assert birth_level("1980-05-03", "1980-03-05") == "close"
    assert birth_level("1980-05-03", "1986-11-23") == "different"


def test_an_impossible_date_is_dropped_with_a_reason_and_the_rest_is_kept() -> None:
    features = extract_features(
        RawRecord(
            "x", "a", full_name="Ann Lee", birth_date="1980-02-30", address="Flat 1A, 3 Tai Po Road"
        )
    )
    assert features.birth_date is None
    assert [(p.field, p.reason) for p in features.problems] == [("birth_date", "bad_date")]
    assert features.name is not None
    assert features.address is not None
