"""Model estimation: u from random pairs, m from anchor pairs."""

from __future__ import annotations

from zhike_identity.domain.matching.comparison import FIELDS, NULL, Pattern
from zhike_identity.domain.matching.model import default_model, estimate


def pattern(**levels: str) -> Pattern:
    return tuple(levels.get(field, NULL) for field in FIELDS)


def test_random_pairs_that_are_surely_one_person_do_not_count_as_chance() -> None:
    # 10,000 random pairs, 5 of them true duplicates drawn by chance (same document number and
    # name), and 1 genuinely shared document number between two different people.
    chance = [pattern(id="different", name="different", birth_date="different")] * 9_994
    duplicates = [pattern(id="exact", name="exact_pinyin", birth_date="exact")] * 5
    shared = [pattern(id="exact", name="different", birth_date="different")]
    model = estimate(default_model(), [], [*chance, *duplicates, *shared], version="t")
    assert model.u["id"]["exact"] == 1 / 9_995  # the shared number only
    # None seen by chance: at most one in the sample, not the 5 duplicates.
    assert model.u["name"]["exact_pinyin"] <= 1 / 9_995
    assert model.u["birth_date"]["exact"] <= 1 / 9_995
