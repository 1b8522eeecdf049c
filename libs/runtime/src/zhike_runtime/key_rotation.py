"""`zhike rotate-keys`: re-seals every stored value that is not under the active data key.

A service declares its encrypted columns (`crypto.EncryptedColumns`) under the entry-point group
`zhike.encrypted_columns`, named after the service; this module walks those tables in primary-key
order, a batch per transaction, opens each value under the key that sealed it and seals it again
under the active key, in the same place (column and row key: the associated data is unchanged).

Safe while the service runs:
- on PostgreSQL each batch locks its rows with `FOR UPDATE SKIP LOCKED`: a row a request holds
  is skipped (never waited for, so the tool and the service cannot deadlock) and taken by a
  later pass; the service's own write of such a row waits only for this short batch;
- on SQLite each batch is one BEGIN IMMEDIATE transaction, serialised with the service's writers;
- values the service writes meanwhile are sealed under its active key: roll the new key out to
  every replica first, then rotate (docs/operations.md, "Key rotation").

The report says how many values are still under another key at the end (0 unless a replica
still seals under the old key or rows stayed locked through every pass); only then may the old
key leave `ZHIKE_DATA_KEYS`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import sqlalchemy as sa

from zhike_runtime.crypto import EncryptedColumns, KeyRing, UndecryptableValue
from zhike_runtime.db import Database

ENTRY_POINT_GROUP = "zhike.encrypted_columns"
DEFAULT_BATCH = 500
_PASSES = 5
_PAUSE_BETWEEN_PASSES = 0.5


@dataclass(frozen=True)
class RotationReport:
    values: int  # values re-sealed under the active key
    rows: int  # rows that held at least one of them
    remaining: int  # values still under another key when the tool stopped
    seconds: float


def declared_columns(service: str) -> tuple[EncryptedColumns, ...]:
    """The encrypted columns `service` declares (KeyError if it declares none)."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == service:
            return tuple(entry.load())
    raise KeyError(service)


def declaring_services() -> list[str]:
    return sorted(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP))


def _table(spec: EncryptedColumns) -> sa.TableClause:
    return sa.table(spec.table, *(sa.column(c) for c in (*spec.row_key, *spec.columns)))


def _stale(spec: EncryptedColumns, table: sa.TableClause, ring: KeyRing) -> sa.ColumnElement[bool]:
    """Rows holding a value not sealed under the active key (an empty value needs nothing)."""
    return sa.or_(
        *(
            sa.and_(
                table.c[c] != "",
                sa.not_(table.c[c].startswith(ring.active_prefix, autoescape=True)),
            )
            for c in spec.columns
        )
    )


async def count_stale(database: Database, ring: KeyRing, spec: EncryptedColumns) -> int:
    """How many values of these columns are sealed under another key than the active one."""
    table = _table(spec)
    total = 0
    async with database.engine.connect() as connection:
        for column in spec.columns:
            c = table.c[column]
            total += int(
                await connection.scalar(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(c != "", sa.not_(c.startswith(ring.active_prefix, autoescape=True)))
                )
                or 0
            )
    return total


async def _rotate_pass(
    database: Database, ring: KeyRing, spec: EncryptedColumns, batch_size: int
) -> tuple[int, int]:
    table = _table(spec)
    key_columns = [table.c[c] for c in spec.row_key]
    update = (
        sa.update(table)
        .where(*(table.c[c] == sa.bindparam(f"key_{c}") for c in spec.row_key))
        .values({c: sa.bindparam(f"value_{c}") for c in spec.columns})
    )
    values = rows = 0
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*key_columns, *(table.c[c] for c in spec.columns)).where(
            _stale(spec, table, ring)
        )
        if after is not None:
            query = query.where(
                sa.tuple_(*key_columns) > sa.tuple_(*(sa.literal(v) for v in after))
            )
        query = query.order_by(*key_columns).limit(batch_size)
        if database.is_postgres:
            query = query.with_for_update(skip_locked=True)
        async with database.engine.begin() as connection:
            batch = (await connection.execute(query)).all()
            if not batch:
                break
            changes: list[dict[str, Any]] = []
            for row in batch:
                key = tuple(row[: len(spec.row_key)])
                place_key = [str(v) for v in key]
                change = {f"key_{c}": v for c, v in zip(spec.row_key, key, strict=True)}
                for offset, column in enumerate(spec.columns):
                    token = row[len(spec.row_key) + offset]
                    if token is not None and not ring.is_current(token):
                        place = spec.place(column)
                        plain = ring.decrypt(token, place, place_key)
                        token = ring.encrypt(plain, place, place_key)
                        values += 1
                    change[f"value_{column}"] = token
                changes.append(change)
            await connection.execute(update, changes)
        rows += len(batch)
        after = tuple(batch[-1][: len(spec.row_key)])
    return values, rows


async def rotate_keys(
    database: Database,
    ring: KeyRing,
    tables: Sequence[EncryptedColumns],
    *,
    batch_size: int = DEFAULT_BATCH,
) -> RotationReport:
    """Re-seals every value of `tables` not under `ring`'s active key; see the module text."""
    started = time.perf_counter()
    values = rows = remaining = 0
    for spec in tables:
        for attempt in range(_PASSES):
            done, touched = await _rotate_pass(database, ring, spec, batch_size)
            values += done
            rows += touched
            left = await count_stale(database, ring, spec)
            if left == 0 or attempt == _PASSES - 1:
                remaining += left
                break
            await asyncio.sleep(_PAUSE_BETWEEN_PASSES)  # rows a request held: try them again
    return RotationReport(values, rows, remaining, time.perf_counter() - started)


def register(commands: Any) -> None:
    """`zhike rotate-keys --service NAME --store URL` on the runtime's command line."""
    rotate = commands.add_parser(
        "rotate-keys",
        help="re-seal a service's encrypted values under the active data key "
        "(ZHIKE_DATA_KEY_ID; safe while the service runs)",
    )
    rotate.add_argument(
        "--service",
        required=True,
        help=f"the service whose store it is ({', '.join(declaring_services()) or 'none installed'})",
    )
    rotate.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get("ZHIKE_DATABASE_URL"),
        help="the service's database URL (default: ZHIKE_DATABASE_URL)",
    )
    rotate.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help="rows per transaction"
    )
    rotate.set_defaults(func=_rotate_keys)


def _rotate_keys(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from zhike_runtime.settings import load_field_keys

    if args.batch_size < 1:
        sys.stderr.write("--batch-size must be at least 1\n")
        return 2
    if not args.store:
        sys.stderr.write("--store URL (or ZHIKE_DATABASE_URL) is required\n")
        return 2
    try:
        tables = declared_columns(args.service)
    except KeyError:
        sys.stderr.write(
            f"{args.service}: declares no encrypted columns "
            f"(services that do: {', '.join(declaring_services()) or 'none'})\n"
        )
        return 2
    keys = load_field_keys()
    shown = make_url(args.store).render_as_string(hide_password=True)

    async def run() -> RotationReport:
        database = Database(args.store)
        try:
            return await rotate_keys(database, keys.ring, tables, batch_size=args.batch_size)
        finally:
            await database.dispose()

    try:
        report = asyncio.run(run())
    except UndecryptableValue as error:  # names the column and the key id, never a value
        sys.stderr.write(f"{shown}: stopped: {error}\n")
        return 1
    sys.stderr.write(
        f"re-sealed {report.values} values in {report.rows} rows of {args.service} at {shown} "
        f"under key {keys.ring.active_key_id} in {report.seconds:.1f} s; "
        f"{report.remaining} still under another key\n"
    )
    return 0 if report.remaining == 0 else 1
