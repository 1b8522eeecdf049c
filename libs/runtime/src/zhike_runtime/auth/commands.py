"""`zhike token` (development tokens for the local stack) and `zhike audit` (read the audit log)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from zhike_runtime.auth.audit import AuditLog, format_entries
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
    audit.add_argument("--since", type=dt.datetime.fromisoformat, help="ISO time, e.g. 2026-12-01")
    audit.add_argument("--limit", type=int, default=1000, help="at most this many records")
    audit.set_defaults(func=_audit)


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
    async def read() -> list[str]:
        database = Database(args.database_url, 1)
        try:
            log = AuditLog(database, dt.timedelta(days=0))
            since = args.since
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=dt.UTC)
            entries = await log.read(
                party_id=args.party, actor=args.actor, since=since, limit=args.limit
            )
        finally:
            await database.dispose()
        return format_entries(entries)

    lines = asyncio.run(read())
    sys.stdout.write("time\tactor\troles\tmethod\tparty\tfields\tpurpose\toutcome\n")
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.write(f"{len(lines)} record(s)\n")
    return 0
