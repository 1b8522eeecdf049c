"""FEBRL4 mapped onto the resolve-csv input format."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from zhike_identity_evaluation import febrl
from zhike_identity_evaluation.dataset import read_grouping, read_records
from zhike_identity_evaluation.metrics import pairwise_scores


@pytest.fixture(scope="module")
def febrl4() -> febrl.Febrl4:
    return febrl.load()


def test_febrl4_has_10000_records_in_two_sources_and_5000_true_pairs(
    febrl4: febrl.Febrl4,
) -> None:
    assert len(febrl4.rows) == 10_000
    assert Counter(row.source for row in febrl4.rows) == {"febrl_a": 5_000, "febrl_b": 5_000}
    assert set(febrl4.truth) == {row.key for row in febrl4.rows}
    assert pairwise_scores(febrl4.truth, febrl4.truth).true_pairs == 5_000
    assert set(Counter(febrl4.truth.values()).values()) == {2}


def test_febrl4_record_maps_onto_every_input_column(febrl4: febrl.Febrl4) -> None:
    rows = {row.key: row for row in febrl4.rows}
    original = rows[("febrl_a", "rec-1070-org")]
    assert original.full_name == "michaela neumann"
    assert (original.id_type, original.id_number) == ("OTHER", "5304218")
    assert original.birth_date == "19151111"
    assert original.address == "8 stanley street miami winston hills nsw 4223"
    assert (original.phone, original.email, original.gender) == ("", "", "")
    duplicate = rows[("febrl_b", "rec-1070-dup-0")]
    assert febrl4.truth[original.key] == febrl4.truth[duplicate.key] == "rec-1070"


def test_missing_values_become_empty_and_are_not_joined() -> None:
    row = febrl.map_record(
        "febrl_b",
        "rec-7-dup-0",
        {"given_name": math.nan, "surname": "smith", "soc_sec_id": None, "suburb": "dapto"},
    )
    assert (row.full_name, row.id_type, row.id_number, row.address) == ("smith", "", "", "dapto")


def test_record_ids_name_their_person() -> None:
    assert febrl.person_of("rec-1070-dup-0") == "rec-1070"
    assert febrl.person_of("rec-1070-org") == "rec-1070"
    with pytest.raises(ValueError, match="not a FEBRL record id"):
        febrl.person_of("1070")


def test_write_csv_writes_records_and_truth(tmp_path: Path) -> None:
    written = febrl.write_csv(tmp_path)
    assert read_records(tmp_path / "records.csv") == written.rows
    assert read_grouping(tmp_path / "truth.csv", "person_id") == written.truth
