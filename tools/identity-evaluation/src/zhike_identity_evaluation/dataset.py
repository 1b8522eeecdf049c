"""The batch CSV formats shared by the evaluation sets, the metrics and the benchmarks.

`records.csv` is the input of `zhike identity resolve-csv`; `truth.csv` says which real person each
record belongs to; a resolver's output names the party each record was given. Every file is UTF-8
with a header, and every record is keyed by `(source, source_id)`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path

RecordKey = tuple[str, str]
"""`(source, source_id)`: the key of one source record."""

ID_TYPES = (
    "RESIDENT_ID",
    "PASSPORT",
    "HK_MACAO_PERMIT",
    "TAIWAN_PERMIT",
    "FOREIGN_PERMANENT_RESIDENT",
    "OTHER",
)


@dataclass(frozen=True, slots=True)
class InputRow:
    """One row of the `resolve-csv` input; every value is the raw text a source system holds."""

    source: str
    source_id: str
    full_name: str = ""
    id_type: str = ""
    id_number: str = ""
    phone: str = ""
    email: str = ""
    birth_date: str = ""
    gender: str = ""
    address: str = ""

    @property
    def key(self) -> RecordKey:
        return (self.source, self.source_id)


COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(InputRow))
TRUTH_COLUMNS = ("source", "source_id", "person_id")
OUTPUT_COLUMNS = ("source", "source_id", "party_id")


def write_records(path: Path, rows: Iterable[InputRow]) -> int:
    """Write rows in the `resolve-csv` input format; returns how many were written."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(astuple(row))
            count += 1
    return count


def read_records(path: Path) -> list[InputRow]:
    """Read a `resolve-csv` input file; unknown columns are ignored, missing ones are empty."""
    with path.open(encoding="utf-8", newline="") as file:
        return [
            InputRow(**{column: line.get(column) or "" for column in COLUMNS})
            for line in csv.DictReader(file)
        ]


def write_grouping(
    path: Path, grouping: Mapping[RecordKey, str], label_column: str = "person_id"
) -> None:
    """Write `source,source_id,<label_column>`, one row per record, in key order."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("source", "source_id", label_column))
        for (source, source_id), label in sorted(grouping.items()):
            writer.writerow((source, source_id, label))


def read_grouping(path: Path, label_column: str) -> dict[RecordKey, str]:
    """Read `source,source_id,<label_column>` (a truth file or a resolver's output).

    Raises ValueError naming the file and line when a key repeats or the column is missing.
    """
    grouping: dict[RecordKey, str] = {}
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        header = reader.fieldnames or []
        for column in ("source", "source_id", label_column):
            if column not in header:
                raise ValueError(f"{path}: missing column {column!r} (header {header})")
        for line in reader:
            key = (line["source"], line["source_id"])
            if key in grouping:
                raise ValueError(f"{path}:{reader.line_num}: record {key} appears twice")
            grouping[key] = line[label_column]
    return grouping
