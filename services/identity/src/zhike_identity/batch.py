"""`zhike identity resolve-csv`: resolve a CSV of source records into parties.

Input: UTF-8 CSV with a header; columns
`source,source_id,full_name,id_type,id_number,phone,email,birth_date,gender,address` (any may be
empty, unknown columns are ignored). Output: `source,source_id,party_id`, one row per input row,
in input order. A row with unusable values still gets a party; its problems go to stderr with the
line number. By default the records are resolved in this process with the same matching code the
service uses; `--target HOST:PORT` streams them through a running identity service instead.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.model import MatchModel
from zhike_identity.domain.matching.resolver import Resolution, resolve
from zhike_identity.progress import StageProgress

# RawRecord's fields, in its order (read_records makes records from them by place).
COLUMNS = tuple(field.name for field in dataclasses.fields(RawRecord))


@dataclass(frozen=True)
class ResolveReport:
    model_version: str  # the model that decided (estimated from the input unless one was given)
    records: int
    parties: int
    problems: int
    possible_matches: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def read_records(path: Path) -> list[RawRecord]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [c for c in ("source", "source_id") if c not in header]
        if missing:
            raise ValueError(f"{path}: the header lacks {', '.join(missing)}")
        # Rows as lists, each column taken by its place in the header (a dict per row cost a
        # third of reading); a column the header lacks, or a short row, reads as empty.
        places = [header.index(column) if column in header else -1 for column in COLUMNS]
        # (Blank lines hold no record, as csv.DictReader reads them.)
        return [RawRecord(*(_cell(row, place) for place in places)) for row in reader if row]


def _cell(row: list[str], place: int) -> str:
    return row[place].strip() if 0 <= place < len(row) else ""


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
) -> tuple[list[RawRecord], Resolution, ResolveReport]:
    """`zhike identity resolve-csv` in process: the records, their resolution (for a bulk load)
    and the report. `workers` > 1 normalises and compares in that many processes (resolve)."""
    started = time.perf_counter()
    stderr = errors or sys.stderr
    records = read_records(input_path)
    with StageProgress(stderr, enabled=progress) as bars:
        resolution = resolve(
            records,
            model=model,
            estimate_model=estimate_model,
            progress=bars,
            household_guardrail=household_guardrail,
            workers=workers,
        )
    for index, problem in resolution.problems:
        # Line numbers as an editor shows them: the header is line 1.
        stderr.write(f"{input_path}:{index + 2}: {problem.field}: {problem.reason}\n")
    write_assignments(output_path, records, resolution.party_ids)
    assert resolution.model is not None
    report = ResolveReport(
        model_version=resolution.model.version,
        records=len(records),
        parties=len(set(resolution.party_ids)),
        problems=len(resolution.problems),
        possible_matches=len(resolution.reviews),
        seconds=time.perf_counter() - started,
    )
    return records, resolution, report
