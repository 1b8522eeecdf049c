"""Identity resolution quality: Zhike's `resolve_csv` next to Splink on the same two CSVs.

1. The generated evaluation set (zhike_identity_evaluation.generator, default size and seed:
   about 11,000 records over 7 source systems), target precision ≥ 0.995 and recall ≥ 0.97.
2. FEBRL4 (10,000 records, 5,000 true pairs) mapped onto the same input format; F1 ≥ 0.999 is a
   smoke test of generality. Zhike runs twice: with the bank's guardrails, and without the
   household and twins guardrail (`--without-household-guardrail`), as Splink runs.
3. The weak-identifier set (zhike_identity_evaluation.weak, issue 14: no ID number, phone or
   e-mail, 5–12 records per person, nicknames, typos, households and twins), 50,000 records by
   default; target precision ≥ 0.995 and recall ≥ 0.90.

For each, it prints pairwise precision, recall, F1, seconds and records/s for Zhike and for the
Splink baseline (benchmarks/identity/splink_baseline.py), then the worst false merges and missed
pairs of Zhike's output. Figures only — it never asserts.

    python -m benchmarks.identity.quality [--persons N] [--seed S] [--weak-records N] [--weak-seed S]
                                          [--keep DIR] [--no-splink]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.identity import splink_baseline
from benchmarks.identity.common import HEADER, Timed, row, run_zhike, say
from zhike_identity.domain.matching.comparison import shared_by_household
from zhike_identity.domain.matching.features import RawRecord, extract_features
from zhike_identity_evaluation import febrl, generator, weak
from zhike_identity_evaluation.dataset import RecordKey, read_grouping, read_records
from zhike_identity_evaluation.metrics import breakdown, pairwise_scores


def _describe(records_csv: Path) -> dict[tuple[str, str], str]:
    return {
        row.key: " | ".join(
            value
            for value in (row.full_name, row.id_number, row.phone, row.birth_date, row.address)
            if value
        )
        for row in read_records(records_csv)
    }


def _missed_by_household_rule(
    records_csv: Path, truth: dict[RecordKey, str], predicted: dict[RecordKey, str]
) -> tuple[int, int]:
    """(missed true pairs, those of them whose shared address, phone or e-mail the household
    and twins guardrail set aside): how much of the recall that rule costs on this data."""
    rows = {row.key: row for row in read_records(records_csv)}
    people: dict[str, list[RecordKey]] = {}
    for key, person in truth.items():
        people.setdefault(person, []).append(key)
    missed = household = 0
    for keys in people.values():
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if predicted[a] == predicted[b]:
                    continue
                missed += 1
                fa, fb = (
                    extract_features(RawRecord(*dataclasses.astuple(rows[k]))) for k in (a, b)
                )
                household += bool(shared_by_household(fa, fb))
    return missed, household


def evaluate(name: str, directory: Path, *, run_splink: bool, worst: int) -> list[str]:
    """Rows of the results table for one dataset."""
    records_csv, truth_csv = directory / "records.csv", directory / "truth.csv"
    truth = read_grouping(truth_csv, "person_id")
    lines = []
    output = directory / "zhike_output.csv"
    timed = run_zhike(records_csv, output)
    predicted = read_grouping(output, "party_id")
    scores = pairwise_scores(truth, predicted)
    lines.append(row(name, "zhike", timed, scores))
    missed, household = _missed_by_household_rule(records_csv, truth, predicted)
    found = scores.true_positive_pairs + household
    say(
        f"{name}: {missed} true pairs missed, {household} of them set apart by the household "
        f"and twins guardrail (same surname or shared contact, other given name, no document "
        f"agreeing); recall without those misses: {found / max(scores.true_pairs, 1):.4f}"
    )
    if worst:
        say(f"--- {name}: Zhike's worst cases")
        say(breakdown(truth, predicted, worst, _describe(records_csv)))
    if name == "febrl4":
        # The model alone, as Splink and recordlinkage run: FEBRL holds no households or
        # twins, and its duplicates look like twins to the household guardrail.
        output = directory / "zhike_model_only_output.csv"
        timed = run_zhike(records_csv, output, household_guardrail=False)
        scores = pairwise_scores(truth, read_grouping(output, "party_id"))
        lines.append(row(name, "zhike, no household", timed, scores))
    if run_splink:
        output = directory / "splink_output.csv"
        result = splink_baseline.run(records_csv, output)
        scores = pairwise_scores(truth, read_grouping(output, "party_id"))
        lines.append(row(name, "splink", Timed(result.records, result.seconds), scores))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.identity.quality")
    parser.add_argument("--persons", type=int, default=generator.DEFAULT_PERSONS)
    parser.add_argument("--seed", type=int, default=generator.DEFAULT_SEED)
    parser.add_argument(
        "--weak-records", type=int, default=50_000, help="size of the weak set (0: skip it)"
    )
    parser.add_argument("--weak-seed", type=int, default=weak.DEFAULT_SEED)
    parser.add_argument("--keep", type=Path, help="write the CSVs and outputs here, and keep them")
    parser.add_argument("--no-splink", action="store_true", help="skip the Splink baseline")
    parser.add_argument("--worst", type=int, default=3, help="worst cases to list (0: none)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="zhike-quality-") as scratch:
        root = args.keep or Path(scratch)
        generated = generator.write_csv(root / "generated", args.persons, args.seed)
        say(
            f"generated: {len(generated.records)} records of {len(generated.persons)} persons, "
            f"seed {args.seed}"
        )
        febrl.write_csv(root / "febrl4")
        say("febrl4: 10,000 records, 5,000 true pairs")
        names = ["generated", "febrl4"]
        if args.weak_records:
            weak_set = weak.write_csv(
                root / "weak", weak.persons_for(args.weak_records), args.weak_seed
            )
            say(
                f"weak: {len(weak_set.records)} records of {len(weak_set.persons)} persons, "
                f"seed {args.weak_seed}"
            )
            names.append("weak")
        table: list[str] = []
        for name in names:
            table.extend(
                evaluate(name, root / name, run_splink=not args.no_splink, worst=args.worst)
            )
        say()
        say(HEADER)
        for line in table:
            say(line)
        say(
            "targets: generated precision >= 0.995 and recall >= 0.97; febrl4 F1 >= 0.999 "
            "('no household': resolve-csv --without-household-guardrail); weak precision "
            ">= 0.995 and recall >= 0.90"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
