"""`zhike identity …` sub-commands (registered on the `zhike` command through an entry point)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhike_identity.batch import (
    REPEATED_KEY_RULES,
    BadInput,
    InputFile,
    read_records,
    resolve_input,
    screen_repeated_keys,
    write_assignments,
)
from zhike_identity.domain.matching.features import RawRecord
from zhike_identity.domain.matching.model import MatchModel
from zhike_identity.domain.matching.resolver import Resolution, latest_rows
from zhike_identity.settings import business_zone_of_environment
from zhike_runtime.tls import add_client_tls_arguments, client_credentials

if TYPE_CHECKING:
    import grpc

# Exit codes, as the help says: 0 done; 1 the store or the service failed; 2 bad arguments, or
# an input file refused (told on stderr as FILE:LINE: reason) with nothing written.
REPEATED_KEYS_HELP = (
    "what a source key (source, source_id) given on more than one row means. refuse (the "
    "default): the file is refused, each such row named by line, as a key is one record and "
    "its rows most often repeat by a fault (a key reused for another customer, an extract run "
    "twice). keep-last: the key is its last row, as the store keeps it; the earlier rows are "
    "dropped before matching, each named by line, and take the party of the key's last row"
)


def register(commands: Any) -> None:
    identity = commands.add_parser("identity", help="identity resolution tools")
    sub = identity.add_subparsers(dest="identity_command", required=True)
    resolve = sub.add_parser(
        "resolve-csv",
        help="resolve a CSV of source records into parties (source,source_id,party_id)",
        description="Resolve a CSV of source records into parties. Problems go to stderr as "
        "FILE:LINE: reason, LINE being where the record starts (the header is line 1). Exit "
        "code 2: bad arguments, or an input file refused (unreadable, or a repeated source key "
        "under --repeated-keys refuse), with nothing written; 1: the store or the service failed.",
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
        "--repeated-keys", choices=REPEATED_KEY_RULES, default="refuse", help=REPEATED_KEYS_HELP
    )
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
        "train-model",
        help="estimate the matching model from a CSV of records (for the service)",
        description="Estimate the matching model from a CSV of records in the resolve-csv input "
        "format. Exit code 2: bad arguments, or an input file refused (unreadable, or a repeated "
        "source key under --repeated-keys refuse), told on stderr as FILE:LINE: reason.",
    )
    train.add_argument("input", type=Path, help="UTF-8 CSV in the resolve-csv input format")
    train.add_argument("output", type=Path, help="where to write the model JSON")
    train.add_argument("--version", required=True, help="the model version recorded with links")
    train.add_argument(
        "--repeated-keys", choices=REPEATED_KEY_RULES, default="refuse", help=REPEATED_KEYS_HELP
    )
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
    credentials: grpc.ChannelCredentials | None = None
    if args.target:
        if not args.token:
            sys.stderr.write("--target needs a bearer token: --token or ZHIKE_TOKEN\n")
            return 2
        try:
            credentials = client_credentials(args)
        except (OSError, ValueError) as error:
            sys.stderr.write(f"{error}\n")
            return 2
    # The whole file is read and checked before the store or the service is touched.
    read = _read_input(args)
    if read is None:
        return 2
    source, replaced = read
    if args.target:
        return _through_service(args, source, replaced, credentials)
    model = None
    if args.model:
        model = _read_model(args.model)
        if model is None:
            return 2
    try:
        # Birth dates are checked against the bank's day, as the service checks them.
        zone = business_zone_of_environment()
    except ValueError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    if args.store and not _store_is_fresh(args.store):
        return 1
    records, resolution, report = resolve_input(
        source,
        args.output,
        progress=not args.no_progress,
        model=model,
        estimate_model=model is None,
        household_guardrail=not args.without_household_guardrail,
        workers=max(args.workers, 1),
        today=dt.datetime.now(zone).date(),
    )
    repeated = (
        f"{_count(report.repeated_keys, 'repeated source key')} "
        f"({_count(len(report.dropped_lines), 'earlier row')} dropped), "
        if report.dropped_lines
        else ""
    )
    sys.stderr.write(
        f"{report.records} records → {report.parties} parties, {report.possible_matches} possible "
        f"matches for review, {report.problems} problems, {repeated}"
        f"{report.records_per_second:.0f} records/s\n"
    )
    if args.store:
        return _store(args.store, records, resolution, report.model_version, zone)
    return 0


def _read_input(args: argparse.Namespace) -> tuple[InputFile, dict[int, int]] | None:
    """The input file and the rows its repeated keys drop; None when the file is refused (told
    on stderr)."""
    try:
        source = read_records(args.input)
        return source, screen_repeated_keys(source, args.repeated_keys, sys.stderr)
    except BadInput as error:
        sys.stderr.write(f"{error}\n")
        return None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _through_service(
    args: argparse.Namespace,
    source: InputFile,
    replaced: dict[int, int],
    credentials: grpc.ChannelCredentials | None,
) -> int:
    """`resolve-csv --target`: only each key's last row is sent (the service would take an
    earlier one as a record of its own until the later one updated it, and rows are sent 16
    at a time, so not even in file order); the earlier rows get their key's party."""
    from zhike_identity.remote import StreamFailed, stream_through_service

    sent = latest_rows(source.records, replaced)
    try:
        party_ids, problems = asyncio.run(
            stream_through_service(
                args.target,
                [source.records[i] for i in sent],
                token=args.token,
                progress=not args.no_progress,
                credentials=credentials,
            )
        )
    except StreamFailed as error:
        sys.stderr.write(f"{args.target}: {error}; no output written\n")
        return 1
    for index, problem in problems:
        sys.stderr.write(f"{source.at(sent[index])}: {problem}\n")
    party_of = dict(zip(sent, party_ids, strict=True))
    every = [party_of[replaced.get(i, i)] for i in range(len(source.records))]
    write_assignments(args.output, source.records, every)
    dropped = (
        f" ({_count(len(replaced), 'earlier row')} of repeated keys dropped)" if replaced else ""
    )
    sys.stderr.write(
        f"{len(sent)} records → {len(set(party_ids))} parties via {args.target}{dropped}\n"
    )
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


def _store(
    url: str, records: list[RawRecord], resolution: Resolution, version: str, zone: dt.tzinfo
) -> int:
    """Writes the records just resolved into a fresh store."""
    from sqlalchemy.engine import make_url

    from zhike_identity.storage.bulk import write_store
    from zhike_runtime.settings import load_field_keys

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        stored = asyncio.run(
            write_store(
                url,
                records,
                resolution,
                keys=load_field_keys(),
                model_version=version,
                business_zone=zone,
            )
        )
    except ValueError as error:  # a store that already holds records, an unstorable key
        sys.stderr.write(f"{shown}: not stored: {error}\n")
        return 1
    blanked = ", ".join(f"{n} {f}" for f, n in sorted(stored.blanked.items())) or "none"
    sys.stderr.write(
        f"stored {stored.records} records in {stored.parties} parties ({stored.blocking_keys} "
        f"index keys) at {shown} in {stored.seconds:.1f} s; values the service refuses, stored "
        f"blank: {blanked}; earlier rows of a repeated source key, not stored: "
        f"{stored.duplicate_keys}\n"
    )
    return 0


def _read_model(path: Path) -> MatchModel | None:
    """The model in the file at `path`; None, told on stderr, for a file that is not one."""
    try:
        return MatchModel.from_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        sys.stderr.write(f"{path}: cannot be read: {error.strerror}\n")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # The class and, for a missing key, its name: a model holds no personal data, but a
        # file passed by mistake (a CSV of records) might.
        missing = f" (no {error.args[0]!r})" if isinstance(error, KeyError) else ""
        sys.stderr.write(
            f"{path}: not a match model as train-model writes it: {type(error).__name__}{missing}\n"
        )
    return None


def _train_model(args: argparse.Namespace) -> int:
    from zhike_identity.domain.matching.resolver import train

    read = _read_input(args)
    if read is None:
        return 2
    source, replaced = read
    model = train(source.records, version=args.version)  # a repeated key: its last row only
    args.output.write_text(model.to_json() + "\n", encoding="utf-8")
    dropped = (
        f" ({_count(len(replaced), 'earlier row')} of repeated keys dropped)" if replaced else ""
    )
    sys.stderr.write(f"model {model.version} written to {args.output}{dropped}\n")
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
