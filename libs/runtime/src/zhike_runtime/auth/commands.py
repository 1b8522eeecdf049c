"""`zhike token` (development tokens for the local stack) and `zhike audit` (read the audit log)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zhike_runtime.auth.audit import AuditLog, AuditPage, format_entries
from zhike_runtime.auth.development import DevelopmentIssuer
from zhike_runtime.auth.permissions import CUSTOMER_ROLES, DEFAULT_ROLES
from zhike_runtime.db import Database

# Where `make run` keeps its development issuer (under ZHIKE_DEV_STATE_DIR, default .zhike/).
ISSUER_DIRECTORY = "auth"


def register(commands: Any) -> None:
    token = commands.add_parser(
        "token", help="mint a development token the local stack accepts (never in production)"
    )
    token.add_argument(
        "--role",
        action="append",
        required=True,
        choices=sorted(DEFAULT_ROLES),
        help="a role the token carries (repeatable)",
    )
    token.add_argument("--party", help="a party id: a customer-delegated token for that party")
    token.add_argument("--subject", default="developer", help="the token's subject (sub)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    token.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("ZHIKE_DEV_STATE_DIR", ".zhike")),
        help="the local stack's state directory (default .zhike/)",
    )
    token.set_defaults(func=_token)

    audit = commands.add_parser("audit", help="read a service's audit log")
    audit.add_argument("--database-url", required=True, help="the service's ZHIKE_DATABASE_URL")
    audit.add_argument("--party", help="only records about this party")
    audit.add_argument("--actor", help="only records of this actor (token subject)")
    audit.add_argument(
        "--since",
        type=_time,
        help="records from this time on: ISO 8601, e.g. 2026-12-01 or 2026-12-01T09:00+08:00; "
        "without an offset, UTC (the times printed are UTC)",
    )
    audit.add_argument("--until", type=_time, help="records before this time (as --since)")
    audit.add_argument(
        "--after-id",
        type=_at_least(0),
        help="records after this record id: the last line names it when more records match "
        "than --limit",
    )
    audit.add_argument(
        "--limit",
        type=_at_least(1),
        default=1000,
        help="at most this many records, oldest first (default 1000)",
    )
    audit.set_defaults(func=_audit)


def _time(text: str) -> dt.datetime:
    """An ISO 8601 time; without an offset it is UTC, as every stored time is."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _at_least(minimum: int) -> Callable[[str], int]:
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return whole_number


def _token(args: argparse.Namespace) -> int:
    if os.environ.get("ZHIKE_PROFILE", "") == "production":
        sys.stderr.write("zhike token: refused with ZHIKE_PROFILE=production\n")
        return 2
    directory = args.state_dir / ISSUER_DIRECTORY
    if not (directory / "signing-key.pem").exists():
        sys.stderr.write(f"zhike token: no development issuer in {directory}: start `make run`\n")
        return 1
    if args.ttl <= 0 or args.ttl > 7 * 86400:
        sys.stderr.write("zhike token: --ttl must be between 1 second and 7 days\n")
        return 2
    customer_roles = sorted(set(args.role).intersection(CUSTOMER_ROLES))
    if customer_roles and not args.party:
        sys.stderr.write(
            f"zhike token: --role {customer_roles[0]} acts for a customer: give --party\n"
        )
        return 2
    issuer = DevelopmentIssuer(directory)
    token = issuer.mint(args.role, subject=args.subject, party_id=args.party, ttl_seconds=args.ttl)
    sys.stdout.write(token + "\n")
    return 0


def _audit(args: argparse.Namespace) -> int:
    if args.since is not None and args.until is not None and args.until <= args.since:
        sys.stderr.write("zhike audit: --until must be later than --since\n")
        return 2

    async def read() -> AuditPage:
        database = Database(args.database_url, 1)
        try:
            log = AuditLog(database, dt.timedelta(days=0))
            return await log.read_page(
                party_id=args.party,
                actor=args.actor,
                since=args.since,
                until=args.until,
                after_id=args.after_id,
                limit=args.limit,
            )
        finally:
            await database.dispose()

    page = asyncio.run(read())
    sys.stdout.write("time\tactor\troles\tmethod\tparty\tfields\tpurpose\toutcome\n")
    for line in format_entries(page.entries):
        sys.stdout.write(line + "\n")
    footer = f"{len(page.entries)} record(s)"
    if page.next_after_id is not None:
        # Said on the last line, where a reader (or `tail -1`) looks: a cut list must not pass
        # for all there is, and the newest records are the ones left out.
        footer += f"; more match: continue with --after-id {page.next_after_id}"
    sys.stdout.write(footer + "\n")
    return 0
