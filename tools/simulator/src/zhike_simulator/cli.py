"""`zhike simulate`: fill a running platform with a simulated bank's customers and their activity
(registered on the `zhike` command through the `zhike.cli` entry point group).

    zhike simulate --state-dir .zhike --customers 200        # the local stack (`make run`)
    zhike simulate --identity-target … --profile-target … --token "$TOKEN" --ca-file ca.pem

The same --seed, --customers, --days and --until give the same records and events, so a run
repeated against the same stack changes nothing (ingestion is idempotent per event id).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from zhike_runtime.auth.commands import ISSUER_DIRECTORY
from zhike_runtime.auth.development import KEY_FILE, DevelopmentIssuer
from zhike_runtime.tls import add_client_tls_arguments, client_credentials
from zhike_simulator.customer import ZONE
from zhike_simulator.send import MAX_BATCH, SendFailed, Sent, send
from zhike_simulator.simulation import DEFAULT_DAYS, Simulation, simulate
from zhike_simulator.summary import showcase, summary

# The role a source system's adapter has: LinkSourceRecord and IngestSourceEvents, nothing else.
SOURCE_ROLE = "source_system"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate",
        help="fill a running platform with a simulated bank: customers over the source "
        "systems, their accounts, cards, loans and investments, and their activity",
    )
    parser.add_argument("--customers", type=int, default=200, help="people to simulate")
    parser.add_argument("--seed", type=int, default=1, help="the same seed, the same bank")
    parser.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help="days of activity before --until"
    )
    parser.add_argument(
        "--until",
        type=dt.date.fromisoformat,
        help="the day after the last simulated day, YYYY-MM-DD (default: today in Shanghai)",
    )
    parser.add_argument("--identity-target", default="127.0.0.1:50051", help="identity HOST:PORT")
    parser.add_argument("--profile-target", default="127.0.0.1:50052", help="profile HOST:PORT")
    add_client_tls_arguments(parser)
    parser.add_argument(
        "--token",
        default=os.environ.get("ZHIKE_TOKEN", ""),
        help=f"bearer token with the {SOURCE_ROLE} role (default $ZHIKE_TOKEN)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="the local stack's state directory (.zhike): mint the token with its "
        "development issuer instead of --token",
    )
    parser.add_argument(
        "--rate", type=float, default=500.0, help="events per second at most (0: no limit)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100,
        help=f"events per IngestSourceEvents call at most (1-{MAX_BATCH})",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        help="write what was sent as JSON: records and their parties, events by fact, the "
        "expected balance of every holding",
    )
    parser.add_argument("--show", type=int, default=3, help="party ids to print at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    today = dt.datetime.now(ZONE).date()
    until = args.until or today
    problem = _check(args, until, today)
    if problem:
        sys.stderr.write(f"zhike simulate: {problem}\n")
        return 2
    try:
        credentials = client_credentials(args)
        token = _token(args)
    except (OSError, ValueError) as error:
        sys.stderr.write(f"zhike simulate: {error}\n")
        return 2
    simulation = simulate(args.customers, args.seed, until=until, days=args.days)
    out = sys.stdout
    out.write(
        f"simulated {args.customers} customers (seed {args.seed}, {args.days} days to {until}): "
        f"{len(simulation.records)} records, {len(simulation.events):,} events\n"
    )
    try:
        sent = _send(args, simulation, token, credentials)
    except SendFailed as error:
        sys.stderr.write(f"zhike simulate: {error}\n")
        return 1
    if args.summary:
        args.summary.write_text(
            json.dumps(summary(simulation, sent), indent=1, ensure_ascii=False) + "\n"
        )
    _report(args, simulation, sent, credentials)
    return 0


def _check(args: argparse.Namespace, until: dt.date, today: dt.date) -> str:
    if args.customers < 1:
        return "--customers must be at least 1"
    if args.days < 1:
        return "--days must be at least 1"
    if until > today + dt.timedelta(days=1):
        return "--until is in the future: the profile refuses events from the future"
    if args.rate < 0:
        return "--rate must not be negative"
    if not 1 <= args.batch_size <= MAX_BATCH:
        return f"--batch-size must be within 1 and {MAX_BATCH}"
    if not args.token and args.state_dir is None:
        return "a bearer token is needed: --token, ZHIKE_TOKEN, or --state-dir for the local stack"
    return ""


def _token(args: argparse.Namespace) -> str:
    """--token as given, else one minted by the local stack's development issuer (`make run`
    creates it; a key made here would be trusted by nothing)."""
    if args.token:
        return str(args.token)
    if os.environ.get("ZHIKE_PROFILE", "") == "production":
        raise ValueError(
            "--state-dir mints development tokens: refused with ZHIKE_PROFILE=production"
        )
    directory = args.state_dir / ISSUER_DIRECTORY
    if not (directory / KEY_FILE).exists():
        raise ValueError(f"no development issuer in {directory}: start `make run` first")
    # Long enough for the slowest run at the chosen rate.
    seconds = (
        3600 if args.rate <= 0 else int(3600 + 2 * 100 * args.customers * args.days / args.rate)
    )
    return DevelopmentIssuer(directory).mint(
        [SOURCE_ROLE], subject="zhike-simulator", ttl_seconds=min(seconds, 7 * 86400)
    )


class _Rate(ProgressColumn):
    """Items per second, as rich measures them over the last seconds."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")


def _send(
    args: argparse.Namespace,
    simulation: Simulation,
    token: str,
    credentials: grpc.ChannelCredentials | None,
) -> Sent:
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        console=console,
        disable=args.no_progress or not console.is_terminal,
    ) as bar:
        tasks = {
            "records": bar.add_task("linking records", total=len(simulation.records)),
            "events": bar.add_task("sending events", total=len(simulation.events)),
        }
        return asyncio.run(
            send(
                simulation.records,
                simulation.events,
                identity_target=args.identity_target,
                profile_target=args.profile_target,
                token=token,
                credentials=credentials,
                rate=args.rate,
                batch_size=args.batch_size,
                progress=lambda stage, count: bar.advance(tasks[stage], count),
            )
        )


def _report(
    args: argparse.Namespace,
    simulation: Simulation,
    sent: Sent,
    credentials: grpc.ChannelCredentials | None,
) -> None:
    out = sys.stdout
    parties = len(set(sent.parties.values()))
    out.write(f"linked {len(sent.parties)} records → {parties} parties at {args.identity_target}\n")
    if sent.refused_fields or sent.unlinked:
        out.write(
            f"  identity refused {len(sent.refused_fields)} messy field(s), linked without them; "
            f"{len(sent.unlinked)} record(s) not linked\n"
        )
    rate = sent.events / sent.seconds if sent.seconds else 0.0
    out.write(
        f"sent {sent.events:,} events ({sent.duplicates:,} already there) to "
        f"{args.profile_target} in {sent.seconds:.1f} s ({rate:,.0f} events/s, with linking); "
        "the profile applies them from its stream in the background\n"
    )
    shown = showcase(simulation, sent, args.show)
    if not shown:
        return
    out.write("parties to look at:\n")
    for party, records, holdings in shown:
        out.write(f"  {party}  {records} source records, {holdings} open holdings\n")
    connection = "-plaintext" if credentials is None else f"-cacert {args.ca_file or '<ca.pem>'}"
    if args.state_dir is not None:
        out.write("look at one (a teller may read the whole profile):\n")
        out.write(
            f"  TELLER=$(.venv/bin/zhike token --state-dir {args.state_dir} --role branch_teller "
            "--subject teller-0042)\n"
        )
        bearer = "$TELLER"
    else:
        out.write("look at one, with a token of a role that may read profiles:\n")
        bearer = "$TOKEN"
    out.write(
        f'  grpcurl {connection} -H "authorization: Bearer {bearer}" '
        f'-d \'{{"party_id": "{shown[0][0]}"}}\' {args.profile_target} '
        "zhike.profile.v1.ProfileService/GetProfile\n"
    )
