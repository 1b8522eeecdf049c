"""resolve-csv's reader: columns found by their header in any order, unknown ones ignored,
missing ones and short rows read as empty, blank lines skipped, a byte-order mark tolerated."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhike_identity.batch import read_records
from zhike_identity.domain.matching.features import RawRecord


def test_columns_are_read_by_their_header_whatever_their_order_and_unknown_ones_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    path.write_text(
        "\ufeffphone,branch,source_id,full_name,source\n 136 7182 9305 ,B-12,A-1, 刘晓燕 ,core\n",
        encoding="utf-8",
    )

    assert read_records(path) == [
        RawRecord(source="core", source_id="A-1", full_name="刘晓燕", phone="136 7182 9305")
    ]


def test_a_short_row_reads_its_missing_cells_as_empty_and_a_blank_line_holds_no_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    path.write_text(
        "source,source_id,full_name,email\ncore,A-1,刘晓燕\n\ncards,C-9,王伟,wang@example.cn\n",
        encoding="utf-8",
    )

    assert read_records(path) == [
        RawRecord(source="core", source_id="A-1", full_name="刘晓燕"),
        RawRecord(source="cards", source_id="C-9", full_name="王伟", email="wang@example.cn"),
    ]


def test_a_header_without_source_or_source_id_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text("full_name,phone\n刘晓燕,13671829305\n", encoding="utf-8")

    with pytest.raises(ValueError, match="the header lacks source, source_id"):
        read_records(path)
