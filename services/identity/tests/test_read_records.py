"""resolve-csv's reader: columns found by their header in any order, unknown ones ignored,
missing ones and short rows read as empty, blank lines skipped, a byte-order mark tolerated;
each record with the line it starts on, and a file it cannot read refused at a line, never
quoting a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhike_identity.batch import UnreadableInput, read_records
from zhike_identity.domain.matching.features import RawRecord


def test_columns_are_read_by_their_header_whatever_their_order_and_unknown_ones_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    path.write_text(
        "\ufeffphone,branch,source_id,full_name,source\n 136 7182 9305 ,B-12,A-1, 刘晓燕 ,core\n",
        encoding="utf-8",
    )

    assert read_records(path).records == [
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

    assert read_records(path).records == [
        RawRecord(source="core", source_id="A-1", full_name="刘晓燕"),
        RawRecord(source="cards", source_id="C-9", full_name="王伟", email="wang@example.cn"),
    ]


def test_a_header_without_source_or_source_id_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text("full_name,phone\n刘晓燕,13671829305\n", encoding="utf-8")

    with pytest.raises(UnreadableInput) as refused:
        read_records(path)

    assert str(refused.value) == f"{path}:1: the header lacks source, source_id"


def test_each_record_carries_the_line_it_starts_on_past_blank_lines_and_multiline_fields(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    path.write_text(
        "source,source_id,full_name,address\n"
        'core,A-1,刘晓燕,"朝阳区\n建国路 1 号"\n'  # lines 2 and 3
        "\n"
        "cards,C-9,王伟,\r\n"  # line 5
        "\r\n"
        'loans,L-3,"王\n伟",\n',  # lines 7 and 8
        encoding="utf-8",
    )

    assert read_records(path).lines == [2, 5, 7]


def test_a_file_not_in_utf8_is_refused_at_the_line_of_its_first_undecodable_byte(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    path.write_bytes(
        "source,source_id,full_name\ncore,A-1,Liu Xiaoyan\ncards,C-9,王伟\n".encode("gbk")
    )

    with pytest.raises(UnreadableInput) as refused:
        read_records(path)

    assert str(refused.value) == (
        f"{path}:3: not UTF-8: convert the file to UTF-8 first (from GB18030 or GBK, say)"
    )


def test_a_field_over_the_csv_field_limit_is_refused_at_the_line_its_record_starts_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "records.csv"
    # An unclosed quote on line 4 runs on over every line after it.
    path.write_text(
        "source,source_id,full_name,address\n"
        "core,A-1,刘晓燕,朝阳区\n"
        "\n"
        'cards,C-9,王伟,"海淀区\n' + "中关村大街 1 号\n" * 20_000,
        encoding="utf-8",
    )

    with pytest.raises(UnreadableInput) as refused:
        read_records(path)

    assert str(refused.value) == (
        f"{path}:4: not readable as CSV: field larger than field limit (131072)"
    )


def test_a_file_that_cannot_be_opened_is_refused_naming_why(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInput) as refused:
        read_records(tmp_path)  # a directory

    assert str(refused.value) == f"{tmp_path}: cannot be read: Is a directory"
