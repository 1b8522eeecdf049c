"""`zhike identity …` sub-commands (registered on the `zhike` command through an entry point)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from zhike_identity.batch import read_records, resolve_csv, write_assignments
from zhike_identity.domain.matching.model import MatchModel


def register(commands: Any) -> None:
    identity = commands.add_parser("identity", help="identity resolution tools")
    sub = identity.add_subparsers(dest="identity_command", required=True)
    resolve = sub.add_parser(
        "resolve-csv",
        help="resolve a CSV of source records into parties (source,source_id,party_id)",
    )
    resolve.add_argument("input", type=Path, help="UTF-8 CSV with a header")
    resolve.add_argument("output", type=Path, help="where to write source,source_id,party_id")
    resolve.add_argument(
        "--target", help="HOST:PORT of a running identity service to stream the records through"
    )
    resolve.add_argument("--model", type=Path, help="a model JSON file to use as it is")
    resolve.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    resolve.set_defaults(func=_resolve_csv)


def _resolve_csv(args: argparse.Namespace) -> int:
    if not args.input.exists():
        sys.stderr.write(f"{args.input}: no such file\n")
        return 2
    if args.target:
        from zhike_identity.remote import stream_through_service

        records = read_records(args.input)
        party_ids, problems = asyncio.run(
            stream_through_service(args.target, records, progress=not args.no_progress)
        )
        for index, problem in problems:
            sys.stderr.write(f"{args.input}:{index + 2}: {problem}\n")
        write_assignments(args.output, records, party_ids)
        sys.stderr.write(
            f"{len(records)} records → {len(set(party_ids))} parties via {args.target}\n"
        )
        return 0
    model = MatchModel.from_json(args.model.read_text()) if args.model else None
    report = resolve_csv(
        args.input,
        args.output,
        progress=not args.no_progress,
        model=model,
        estimate_model=model is None,
    )
    sys.stderr.write(
        f"{report.records} records → {report.parties} parties, {report.possible_matches} possible "
        f"matches for review, {report.problems} problems, {report.records_per_second:.0f} records/s\n"
    )
    return 0
