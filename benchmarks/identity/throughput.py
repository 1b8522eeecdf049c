"""Batch throughput: Zhike's `resolve_csv` and the Splink baseline on the same 100,000 records.

Generates about 100,000 records (zhike_identity_evaluation.generator, fixed seed), then times each
system from reading the CSV to writing `source,source_id,party_id`, on the same machine, one after
the other. Prints records/s (and, for information, pairwise P/R/F1); never asserts. The online
`LinkSourceRecord` latency on PostgreSQL with a million stored records is measured in online.py.

    python -m benchmarks.identity.throughput [--records N] [--seed S] [--keep DIR] [--no-splink]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.identity import splink_baseline
from benchmarks.identity.common import HEADER, Timed, row, run_zhike, say
from zhike_identity_evaluation import generator
from zhike_identity_evaluation.dataset import read_grouping
from zhike_identity_evaluation.metrics import pairwise_scores

DEFAULT_RECORDS = 100_000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.identity.throughput")
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--seed", type=int, default=generator.DEFAULT_SEED)
    parser.add_argument("--keep", type=Path, help="write the CSVs and outputs here, and keep them")
    parser.add_argument("--no-splink", action="store_true", help="skip the Splink baseline")
    args = parser.parse_args(argv)

    say(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="zhike-throughput-") as scratch:
        directory = args.keep or Path(scratch)
        started = time.perf_counter()
        generated = generator.write_csv(directory, generator.persons_for(args.records), args.seed)
        say(
            f"generated {len(generated.records)} records of {len(generated.persons)} persons "
            f"in {time.perf_counter() - started:.1f} s"
        )
        records_csv = directory / "records.csv"
        truth = read_grouping(directory / "truth.csv", "person_id")
        table: list[str] = []
        output = directory / "zhike_output.csv"
        timed = run_zhike(records_csv, output)
        # Peak memory of Zhike's run: this process (Splink has not run yet) and its workers.
        peak_mib = (
            max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            )
            / 1024
        )
        scores = pairwise_scores(truth, read_grouping(output, "party_id"))
        table.append(row("generated", "zhike", timed, scores))
        splink: Timed | None = None
        if not args.no_splink:
            output = directory / "splink_output.csv"
            result = splink_baseline.run(records_csv, output)
            scores = pairwise_scores(truth, read_grouping(output, "party_id"))
            splink = Timed(result.records, result.seconds)
            table.append(row("generated", "splink", splink, scores))
        say()
        say(HEADER)
        for line in table:
            say(line)
        say(f"zhike peak memory: {peak_mib:,.0f} MiB (largest process)")
        if splink is not None:
            ratio = timed.records_per_second / splink.records_per_second
            say(f"zhike / splink records/s: {ratio:.2f}")
        say("target (issue 14): Zhike at or above Splink's records/s, under 2 GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
