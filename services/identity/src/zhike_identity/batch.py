"""`zhike identity resolve-csv`: resolve a CSV of source records into parties.

Input: UTF-8 CSV with a header; columns
`source,source_id,full_name,id_type,id_number,phone,email,birth_date,gender,address` (any may be
empty, unknown columns are ignored). Output: `source,source_id,party_id`, one row per input row,
in input order. A row with unusable values still gets a party; its problems go to stderr with the
line number. By default the records are resolved in this process with the same matching code the
service uses; `--target HOST:PORT` streams them through a running identity service instead.

Line numbers are as an editor shows them (the header is line 1) and name the line a record
*starts* on: a quoted value may run over several lines, and blank lines hold no record but count.

A file the tool cannot read — a header without `source` and `source_id`, text that is not UTF-8,
a value longer than the csv module's field limit — raises `BadInput` naming the file and the line,
never a value.

A source key (`source`, `source_id`) is one record. Given on more than one row, it is refused by
default (`RepeatedKeys`): a bank's key seldom repeats but by a fault — a key reused for another
customer, an extract run twice — and which row is right is the bank's to say, not this tool's.
With `keep-last` the key is its last row, as the store keeps it: the earlier rows are dropped
before any matching (they link no one), each told by line, and in the output they get the party
of the key's last row.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.model import MatchModel
from zhike_identity.domain.matching.resolver import Resolution, resolve, superseded
from zhike_identity.progress import StageProgress

# RawRecord's fields, in its order (read_records makes records from them by place).
COLUMNS = tuple(field.name for field in dataclasses.fields(RawRecord))

RepeatedKeyRule = Literal["refuse", "keep-last"]
REPEATED_KEY_RULES: tuple[RepeatedKeyRule, ...] = ("refuse", "keep-last")


class BadInput(ValueError):
    """An input file the tool will not resolve as it is. The text names the file (and the
    line), never a value from it: the command prints it and exits with code 2."""


class UnreadableInput(BadInput):
    """The file cannot be read as the input format: `line` is where (None: the file itself)."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}")


class RepeatedKeys(BadInput):
    """Rows repeat the source key of a later row, and the rule is to refuse such a file."""

    def __init__(self, path: Path, rows: int) -> None:
        self.path = path
        self.rows = rows
        repeat = "1 row repeats" if rows == 1 else f"{rows} rows repeat"
        super().__init__(
            f"{path}: {repeat} the source key of a later row; a source key is one record, so the "
            "file is refused (--repeated-keys keep-last keeps each key's last row)"
        )


@dataclass(frozen=True)
class InputFile:
    """The records of an input file, in file order, with the line each starts on."""

    path: Path
    records: list[RawRecord]
    lines: list[int]  # the header is line 1

    def at(self, index: int) -> str:
        """`path:line` of the record at `index`, the form editors and compilers jump to."""
        return f"{self.path}:{self.lines[index]}"


@dataclass(frozen=True)
class ResolveReport:
    model_version: str  # the model that decided (estimated from the input unless one was given)
    records: int  # resolved: a repeated key's earlier rows not counted
    parties: int
    problems: int
    possible_matches: int
    seconds: float
    repeated_keys: int = 0  # source keys given on more than one row (keep-last)
    dropped_lines: tuple[int, ...] = ()  # the lines of their earlier rows, dropped

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def read_records(path: Path) -> InputFile:
    """The records of the file at `path`; raises `UnreadableInput` for a file it cannot read."""
    end = 0  # the line the last row read ended on: the next row starts on the line after
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            missing = [c for c in ("source", "source_id") if c not in header]
            if missing:
                raise UnreadableInput(path, 1, f"the header lacks {', '.join(missing)}")
            # Rows as lists, each column taken by its place in the header (a dict per row cost a
            # third of reading); a column the header lacks, or a short row, reads as empty.
            places = [header.index(column) if column in header else -1 for column in COLUMNS]
            end = reader.line_num
            records: list[RawRecord] = []
            lines: list[int] = []
            for row in reader:
                if row:  # (a blank line holds no record, as csv.DictReader reads it)
                    records.append(RawRecord(*(_cell(row, place) for place in places)))
                    lines.append(end + 1)
                end = reader.line_num
    except UnicodeDecodeError:
        # The text is decoded a block ahead of the parser: its line is not the faulty one.
        reason = "not UTF-8: convert the file to UTF-8 first (from GB18030 or GBK, say)"
        raise UnreadableInput(path, _first_undecodable_line(path), reason) from None
    except csv.Error as error:
        # The csv module's reasons name its limits and the format's characters, never a value.
        raise UnreadableInput(path, end + 1, f"not readable as CSV: {error}") from None
    except OSError as error:
        raise UnreadableInput(path, None, f"cannot be read: {error.strerror}") from None
    return InputFile(path, records, lines)


def _cell(row: list[str], place: int) -> str:
    return row[place].strip() if 0 <= place < len(row) else ""


def _first_undecodable_line(path: Path) -> int | None:
    # Split on b"\n", which no UTF-8 sequence contains, so each line decodes on its own.
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def screen_repeated_keys(
    source: InputFile, rule: RepeatedKeyRule, errors: TextIO
) -> dict[int, int]:
    """The rows a later row of the same source key replaces (index → the key's last row), each
    told on `errors` by its line and its key's last line. Under "refuse" any such row refuses
    the file: raises `RepeatedKeys` once all are told."""
    replaced = superseded(source.records)
    for index, last in replaced.items():
        kept = source.lines[last]
        outcome = "" if rule == "refuse" else f"; this row is dropped, line {kept} stands"
        errors.write(f"{source.at(index)}: source key repeated on line {kept}{outcome}\n")
    if replaced and rule == "refuse":
        raise RepeatedKeys(source.path, len(replaced))
    return replaced


def write_assignments(path: Path, records: list[RawRecord], party_ids: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "source_id", "party_id"])
        for record, party_id in zip(records, party_ids, strict=True):
            writer.writerow([record.source, record.source_id, party_id])


def resolve_file(
    input_path: Path,
    output_path: Path,
    *,
    progress: bool = False,
    model: MatchModel | None = None,
    estimate_model: bool = True,
    errors: TextIO | None = None,
    household_guardrail: bool = True,
    workers: int = 1,
    today: dt.date | None = None,
    repeated_keys: RepeatedKeyRule = "refuse",
) -> tuple[list[RawRecord], Resolution, ResolveReport]:
    """`zhike identity resolve-csv` in process: the records, their resolution (for a bulk load)
    and the report. `workers` > 1 normalises and compares in that many processes (resolve).
    Raises `BadInput` for a file it will not resolve, before writing anything."""
    started = time.perf_counter()
    stderr = errors or sys.stderr
    source = read_records(input_path)
    screen_repeated_keys(source, repeated_keys, stderr)
    records, resolution, report = resolve_input(
        source,
        output_path,
        progress=progress,
        model=model,
        estimate_model=estimate_model,
        errors=stderr,
        household_guardrail=household_guardrail,
        workers=workers,
        today=today,
    )
    return records, resolution, dataclasses.replace(report, seconds=time.perf_counter() - started)


def resolve_input(
    source: InputFile,
    output_path: Path,
    *,
    progress: bool = False,
    model: MatchModel | None = None,
    estimate_model: bool = True,
    errors: TextIO | None = None,
    household_guardrail: bool = True,
    workers: int = 1,
    today: dt.date | None = None,
) -> tuple[list[RawRecord], Resolution, ResolveReport]:
    """`resolve_file` for a file already read (and its repeated keys screened): a repeated
    key's earlier rows take no part, and get the party of the key's last row."""
    started = time.perf_counter()
    stderr = errors or sys.stderr
    records = source.records
    with StageProgress(stderr, enabled=progress) as bars:
        resolution = resolve(
            records,
            model=model,
            estimate_model=estimate_model,
            progress=bars,
            household_guardrail=household_guardrail,
            workers=workers,
            today=today,
        )
    for index, problem in resolution.problems:
        stderr.write(f"{source.at(index)}: {problem.field}: {problem.reason}\n")
    write_assignments(output_path, records, resolution.party_ids)
    assert resolution.model is not None
    replaced = resolution.superseded
    report = ResolveReport(
        model_version=resolution.model.version,
        records=len(records) - len(replaced),
        parties=len(set(resolution.party_ids)),
        problems=len(resolution.problems),
        possible_matches=len(resolution.reviews),
        seconds=time.perf_counter() - started,
        repeated_keys=len(set(replaced.values())),
        dropped_lines=tuple(source.lines[i] for i in replaced),
    )
    return records, resolution, report
