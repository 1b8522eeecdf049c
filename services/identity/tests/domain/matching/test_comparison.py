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
