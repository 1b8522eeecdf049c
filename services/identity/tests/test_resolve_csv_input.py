"""The batch tool's input rules, end to end (`zhike identity resolve-csv` in process, with
`--store` and with `--target`, and `train-model`): a file it cannot read is refused at a line with
exit code 2 and no traceback; problems name the line their record starts on; a source key given
twice is refused, or with `--repeated-keys keep-last` is one record, its last row. No message
quotes a value."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from unittest import mock

import pytest

from zhike_runtime import cli
from zhike_runtime.testing.services import field_key_environment

# Each way the batch tool reads a file. `--target` names a port where nothing listens: the file
# must be refused before any connection is tried.
COMMANDS = {
    "in process": ("resolve-csv", "--no-progress"),
    "--store": ("resolve-csv", "--no-progress", "--store={store}"),
    "--target": ("resolve-csv", "--no-progress", "--target=127.0.0.1:1", "--token=any"),
    "train-model": ("train-model", "--version=test"),
}
ZHANG_SAN = "张三,13812345678,zhangsan@163.com,1949-12-31"
LI_SI = "李四,13987654321,lisi@qq.com,1980-01-01"
# core/1 first held 张三 (whom branch/5 also holds), then was reused for 李四 (cards/9).
CORE_1_REUSED = (
    "source,source_id,full_name,phone,email,birth_date\n"
    f"core,1,{ZHANG_SAN}\n"  # line 2, repeated on line 6
    f"branch,5,{ZHANG_SAN}\n"
    "\n"
    f"cards,9,{LI_SI}\n"
    f"core,1,{LI_SI}\n"  # line 6
)


@dataclasses.dataclass(frozen=True)
class Ran:
    returncode: int
    stderr: str


def zhike_identity(command: str, source: Path, output: Path, *options: str) -> Ran:
    """`zhike identity <command> SOURCE OUTPUT <options>`, a store's options formatted with a
    store beside the output, and the service's field keys in the environment (for --store).
    Run in this process, through the command line's own entry point: a process per run would
    cost seconds of imports each."""
    subcommand, *preset = COMMANDS[command]
    store = f"sqlite+aiosqlite:///{output.parent / 'identity.db'}"
    argv = [
        *("identity", subcommand, str(source), str(output)),
        *(option.format(store=store) for option in [*preset, *options]),
    ]
    errors = io.StringIO()
    with (
        mock.patch.dict(os.environ, field_key_environment()),
        contextlib.redirect_stderr(errors),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse refusing the arguments
            code = int(exit_.code or 0)
    return Ran(code, errors.getvalue())


def stored_parties(database: Path) -> dict[tuple[str, str], str]:
    with closing(sqlite3.connect(database)) as db:
        query = "SELECT source_system, source_record_id, party_id FROM source_record"
        return {(row[0], row[1]): row[2] for row in db.execute(query)}


def output_parties(output: Path) -> list[str]:
    with output.open(encoding="utf-8") as handle:
        return [row["party_id"] for row in csv.DictReader(handle)]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_header_without_the_key_columns_is_refused_at_line_1_with_exit_code_2(
    command: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("full_name,phone\n刘建军,13812345678\n", encoding="utf-8")

    result = zhike_identity(command, source, tmp_path / "out")

    assert (result.returncode, result.stderr) == (
        2,
        f"{source}:1: the header lacks source, source_id\n",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_not_in_utf8_is_refused_at_its_first_undecodable_line_with_exit_code_2(
    command: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes("source,source_id,full_name\ncore,1,Liu\ncards,9,刘建军\n".encode("gbk"))

    result = zhike_identity(command, source, tmp_path / "out")

    assert (result.returncode, result.stderr) == (
        2,
        f"{source}:3: not UTF-8: convert the file to UTF-8 first (from GB18030 or GBK, say)\n",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_field_over_the_csv_limit_is_refused_at_its_records_first_line_with_exit_code_2(
    command: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "source,source_id,full_name,address\n\ncore,1,刘建军," + "朝阳区建国路" * 30_000 + "\n",
        encoding="utf-8",
    )

    result = zhike_identity(command, source, tmp_path / "out")

    assert (result.returncode, result.stderr) == (
        2,
        f"{source}:3: not readable as CSV: field larger than field limit (131072)\n",
    )


def test_a_refused_file_touches_neither_the_output_nor_the_store(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("full_name,phone\n刘建军,13812345678\n", encoding="utf-8")

    zhike_identity("--store", source, tmp_path / "out.csv")

    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv"]


def test_problems_name_the_line_their_record_starts_on_past_blank_lines_and_multiline_fields(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "source,source_id,full_name,phone,address\n"
        'core,1,刘建军,13812345678,"北京市朝阳区\n建国路 1 号"\n'  # lines 2 and 3
        "\n"
        "cards,9,王伟,00000000000,\n",  # line 5
        encoding="utf-8",
    )

    result = zhike_identity("in process", source, tmp_path / "out.csv")

    problems = [line for line in result.stderr.splitlines() if line.startswith(f"{source}:")]
    assert problems == [f"{source}:5: phone: placeholder"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_repeats_a_source_key_is_refused_naming_the_lines_with_exit_code_2(
    command: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CORE_1_REUSED, encoding="utf-8")

    result = zhike_identity(command, source, tmp_path / "out")

    assert (result.returncode, result.stderr) == (
        2,
        f"{source}:2: source key repeated on line 6\n"
        f"{source}: 1 row repeats the source key of a later row; a source key is one record, so "
        "the file is refused (--repeated-keys keep-last keeps each key's last row)\n",
    )


def test_a_file_that_repeats_a_source_key_leaves_no_output_and_no_store(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CORE_1_REUSED, encoding="utf-8")

    zhike_identity("--store", source, tmp_path / "out.csv")

    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv"]


def test_keep_last_stores_a_repeated_keys_last_row_and_its_earlier_row_links_no_one(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CORE_1_REUSED, encoding="utf-8")

    zhike_identity("--store", source, tmp_path / "out.csv", "--repeated-keys=keep-last")

    stored = stored_parties(tmp_path / "identity.db")
    assert stored[("branch", "5")] != stored[("cards", "9")]  # 张三 and 李四: two people


def test_keep_last_gives_every_output_row_of_a_repeated_key_the_party_of_its_last_row(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CORE_1_REUSED, encoding="utf-8")

    zhike_identity("in process", source, tmp_path / "out.csv", "--repeated-keys=keep-last")

    core_1_first, _branch_5, cards_9, core_1_last = output_parties(tmp_path / "out.csv")
    assert core_1_first == core_1_last == cards_9


@pytest.mark.parametrize("command", ["in process", "--store", "train-model"])
def test_keep_last_reports_each_dropped_row_by_its_line(command: str, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CORE_1_REUSED, encoding="utf-8")

    result = zhike_identity(command, source, tmp_path / "out", "--repeated-keys=keep-last")

    assert f"{source}:2: source key repeated on line 6; this row is dropped, line 6 stands" in (
        result.stderr.splitlines()
    )


def test_keep_last_counts_the_repeated_keys_and_dropped_rows_in_the_summary(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CORE_1_REUSED + f"core,1,{LI_SI}\n", encoding="utf-8")  # a third row

    result = zhike_identity("in process", source, tmp_path / "out.csv", "--repeated-keys=keep-last")

    summary = result.stderr.splitlines()[-1]
    assert summary.startswith(
        "3 records → 2 parties, 0 possible matches for review, 0 problems, "
        "1 repeated source key (2 earlier rows dropped), "
    )


def test_the_store_summary_counts_the_rows_of_repeated_keys_it_did_not_store(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(CORE_1_REUSED, encoding="utf-8")

    result = zhike_identity("--store", source, tmp_path / "out.csv", "--repeated-keys=keep-last")

    assert "; earlier rows of a repeated source key, not stored: 1\n" in result.stderr


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("source,source_id\ncore,1\n", "JSONDecodeError"),
        ('{"version": "v1"}', "KeyError (no 'prior')"),
        ("[1, 2]", "TypeError"),
    ],
)
def test_a_model_file_that_is_not_a_model_is_refused_with_exit_code_2(
    model: str, reason: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"source,source_id,full_name,phone\ncore,1,{ZHANG_SAN}\n", encoding="utf-8")
    model_file = tmp_path / "model.json"
    model_file.write_text(model, encoding="utf-8")

    result = zhike_identity("in process", source, tmp_path / "out", f"--model={model_file}")

    assert (result.returncode, result.stderr) == (
        2,
        f"{model_file}: not a match model as train-model writes it: {reason}\n",
    )
    assert not (tmp_path / "out").exists()


def test_an_unknown_business_time_zone_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"source,source_id,full_name,phone\ncore,1,{ZHANG_SAN}\n", encoding="utf-8")

    with mock.patch.dict(os.environ, {"ZHIKE_BUSINESS_TIME_ZONE": "Asia/Beijing"}):
        result = zhike_identity("in process", source, tmp_path / "out")

    assert (result.returncode, result.stderr) == (
        2,
        "ZHIKE_BUSINESS_TIME_ZONE: not an IANA time zone: 'Asia/Beijing'\n",
    )
    assert not (tmp_path / "out").exists()
