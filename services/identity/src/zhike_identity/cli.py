"""`zhike identity …` sub-commands (registered on the `zhike` command through an entry point)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from zhike_identity.batch import read_records, resolve_file, write_assignments
from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.model import MatchModel
from zhike_identity.domain.matching.resolver import Resolution
from zhike_runtime.tls import add_client_tls_arguments, client_credentials


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
    add_client_tls_arguments(resolve)  # for --target
    resolve.add_argument(
        "--token",
        default=os.environ.get("ZHIKE_TOKEN", ""),
        help="with --target: the bearer token (a source_system role's); default $ZHIKE_TOKEN",
    )
    resolve.add_argument("--model", type=Path, help="a model JSON file to use as it is")
    resolve.add_argument(
        "--store",
        metavar="URL",
        help="also write the resolved records into a fresh identity store at URL "
        "(sqlite+aiosqlite:///path or postgresql+asyncpg://…), ready for the service; "
        "needs the service's ZHIKE_DATA_KEYS, ZHIKE_DATA_KEY_ID and ZHIKE_BLIND_INDEX_KEY",
    )
    resolve.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    resolve.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help=(
            "processes normalising records and comparing pairs "
            "(default: one per CPU; 1: all in this process)"
        ),
    )
    resolve.add_argument(
        "--without-household-guardrail",
        action="store_true",
        help="evaluation only, for data known to hold no households or twins (FEBRL): let a "
        "shared address, phone or e-mail count as evidence between records whose names "
        "disagree; never for a bank's records (the service always keeps this guardrail), so "
        "not with --target or --store",
    )
    resolve.set_defaults(func=_resolve_csv)
    train = sub.add_parser(
        "train-model", help="estimate the matching model from a CSV of records (for the service)"
    )
    train.add_argument("input", type=Path, help="UTF-8 CSV in the resolve-csv input format")
    train.add_argument("output", type=Path, help="where to write the model JSON")
    train.add_argument("--version", required=True, help="the model version recorded with links")
    train.set_defaults(func=_train_model)
    reindex = sub.add_parser(
        "reindex",
        help="rebuild a store's candidate index from its records (after an upgrade that "
        "changes the blocking keys, or a new ZHIKE_BLIND_INDEX_KEY; safe while the service "
        "runs; needs the service's field keys in the environment)",
    )
    reindex.add_argument(
        "--store", metavar="URL", required=True, help="the identity store's database URL"
    )
    reindex.add_argument("--batch-size", type=int, default=500, help="records per transaction")
    reindex.set_defaults(func=_reindex)


def _resolve_csv(args: argparse.Namespace) -> int:
    if not args.input.exists():
        sys.stderr.write(f"{args.input}: no such file\n")
        return 2
    if args.target and args.store:
        sys.stderr.write("--store needs in-process resolution: with --target, the service stores\n")
        return 2
    if args.without_household_guardrail and (args.target or args.store):
        sys.stderr.write(
            "--without-household-guardrail is for evaluation: the service keeps the guardrail, "
            "so it cannot be used with --target or --store\n"
        )
        return 2
    if args.target:
        from zhike_identity.remote import StreamFailed, stream_through_service

        if not args.token:
            sys.stderr.write("--target needs a bearer token: --token or ZHIKE_TOKEN\n")
            return 2
        try:
            credentials = client_credentials(args)
        except (OSError, ValueError) as error:
            sys.stderr.write(f"{error}\n")
            return 2
        records = read_records(args.input)
        try:
            party_ids, problems = asyncio.run(
                stream_through_service(
                    args.target,
                    records,
                    token=args.token,
                    progress=not args.no_progress,
                    credentials=credentials,
                )
            )
        except StreamFailed as error:
            sys.stderr.write(f"{args.target}: {error}; no output written\n")
            return 1
        for index, problem in problems:
            sys.stderr.write(f"{args.input}:{index + 2}: {problem}\n")
        write_assignments(args.output, records, party_ids)
        sys.stderr.write(
            f"{len(records)} records → {len(set(party_ids))} parties via {args.target}\n"
        )
        return 0
    model = MatchModel.from_json(args.model.read_text()) if args.model else None
    if args.store and not _store_is_fresh(args.store):
        return 1
    records, resolution, report = resolve_file(
        args.input,
        args.output,
        progress=not args.no_progress,
        model=model,
        estimate_model=model is None,
        household_guardrail=not args.without_household_guardrail,
        workers=max(args.workers, 1),
    )
    sys.stderr.write(
        f"{report.records} records → {report.parties} parties, {report.possible_matches} possible "
        f"matches for review, {report.problems} problems, {report.records_per_second:.0f} records/s\n"
    )
    if args.store:
        return _store(args.store, records, resolution, report.model_version)
    return 0


def _store_is_fresh(url: str) -> bool:
    from sqlalchemy.engine import make_url

    from zhike_identity.storage.bulk import ensure_fresh
    from zhike_runtime.settings import load_field_keys

    keys = load_field_keys()  # before hours of resolution: stops here if the keys are missing
    try:
        asyncio.run(ensure_fresh(url, keys))
    except ValueError as error:
        sys.stderr.write(f"{make_url(url).render_as_string(hide_password=True)}: {error}\n")
        return False
    return True


def _store(url: str, records: list[RawRecord], resolution: Resolution, version: str) -> int:
    """Writes the records just resolved into a fresh store."""
    from sqlalchemy.engine import make_url

    from zhike_identity.storage.bulk import write_store
    from zhike_runtime.settings import load_field_keys

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        stored = asyncio.run(
            write_store(url, records, resolution, keys=load_field_keys(), model_version=version)
        )
    except ValueError as error:  # a store that already holds records, an unstorable key
        sys.stderr.write(f"{shown}: not stored: {error}\n")
        return 1
    blanked = ", ".join(f"{n} {f}" for f, n in sorted(stored.blanked.items())) or "none"
    sys.stderr.write(
        f"stored {stored.records} records in {stored.parties} parties ({stored.blocking_keys} "
        f"index keys) at {shown} in {stored.seconds:.1f} s; values the service refuses, stored "
        f"blank: {blanked}\n"
    )
    return 0


def _train_model(args: argparse.Namespace) -> int:
    from zhike_identity.domain.matching.resolver import train

    model = train(read_records(args.input), version=args.version)
    args.output.write_text(model.to_json() + "\n", encoding="utf-8")
    sys.stderr.write(f"model {model.version} written to {args.output}\n")
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from zhike_identity.reindex import rebuild_index
    from zhike_runtime.settings import load_field_keys

    if args.batch_size < 1:
        sys.stderr.write("--batch-size must be at least 1\n")
        return 2
    keys = load_field_keys()
    report = asyncio.run(rebuild_index(args.store, keys=keys, batch_size=args.batch_size))
    shown = make_url(args.store).render_as_string(hide_password=True)
    sys.stderr.write(
        f"re-indexed {report.records} records at {shown}: {report.rows_before} index rows "
        f"replaced by {report.rows_after} in {report.seconds:.1f} s\n"
    )
    return 0
