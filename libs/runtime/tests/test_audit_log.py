"""The audit log on SQLite and PostgreSQL: a record appended is there as soon as append returns,
for any other connection to read (on PostgreSQL it is one autocommitted INSERT). `zhike audit`
prints one line per record whatever its text holds, and pages through more records than its
limit instead of silently dropping the newest."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from zhike_runtime import cli
from zhike_runtime.auth.audit import AuditEntry, AuditLog, audit_record, format_entries
from zhike_runtime.db import Database
from zhike_runtime.migrations import apply_migrations


async def test_an_appended_record_is_committed_when_append_returns(database_url: str) -> None:
    database = Database(database_url)
    other = Database(database_url)
    try:
        await apply_migrations(database, None)
        entry = AuditEntry(
            actor="teller-0042",
            roles=("branch_teller",),
            method="/zhike.profile.v1.ProfileService/GetProfile",
            party_id="p-1",
            fields=("holdings.account_id",),
            purpose="account opening",
            outcome="OK",
            trace_id="t" * 32,
            recorded_at=dt.datetime(2026, 12, 2, 1, tzinfo=dt.UTC),
        )

        await AuditLog(database, dt.timedelta(days=365)).append(entry)

        assert await AuditLog(other, dt.timedelta(days=365)).read(party_id="p-1") == [entry]
    finally:
        await database.dispose()
        await other.dispose()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await apply_migrations(database, None)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def audit(database: Database) -> AuditLog:
    return AuditLog(database, dt.timedelta(days=365))


def recorded(at: dt.datetime, **fields: Any) -> AuditEntry:
    """A teller's read of a profile at `at`, with `fields` replaced."""
    base: dict[str, Any] = {
        "actor": "teller-1",
        "roles": ("branch_teller",),
        "method": "/zhike.profile.v1.ProfileService/GetProfile",
        "party_id": "p-1",
        "fields": (),
        "purpose": "",
        "outcome": "OK",
        "trace_id": "",
    }
    return AuditEntry(**(base | fields), recorded_at=at)


async def test_records_since_a_time_given_in_another_zone_are_those_after_that_instant(
    audit: AuditLog,
) -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    for hour in (0, 1, 2):
        # Given in the bank's zone: 08:00, 09:00 and 10:00 in Shanghai.
        at = dt.datetime(2026, 12, 4, hour, tzinfo=dt.UTC).astimezone(shanghai)
        await audit.append(recorded(at, actor=f"teller-{hour}"))

    since = dt.datetime(2026, 12, 4, 9, 30, tzinfo=shanghai)  # 01:30 UTC
    read = await audit.read(since=since)

    assert [(e.actor, e.recorded_at) for e in read] == [
        ("teller-2", dt.datetime(2026, 12, 4, 2, tzinfo=dt.UTC))
    ]


async def test_a_nul_in_what_a_refused_call_asked_for_is_stored_replaced(audit: AuditLog) -> None:
    # Calls are audited before their request is validated; PostgreSQL refuses NUL in text.
    refused = recorded(
        dt.datetime(2026, 12, 4, 1, tzinfo=dt.UTC),
        actor="app-user",
        roles=("channel_app",),
        method="/zhike.notifications.v1.NotificationsService/ListInbox",
        party_id="a\x00b",
        outcome="NOT_FOUND",
    )

    await audit.append(refused)

    assert [e.party_id for e in await audit.read()] == ["a\ufffdb"]


async def test_expiry_deletes_the_records_older_than_the_retention_and_keeps_the_rest(
    audit: AuditLog,
) -> None:
    now = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
    for days_ago in (400, 366, 364, 1):
        await audit.append(recorded(now - dt.timedelta(days=days_ago), actor=f"t-{days_ago}"))

    assert await audit.expire(now) == 2

    assert sorted(e.actor for e in await audit.read()) == ["t-1", "t-364"]


# --- `zhike audit` -------------------------------------------------------------------------------

COLUMNS = ["time", "actor", "roles", "method", "party", "fields", "purpose", "outcome"]


@dataclass(frozen=True)
class Printed:
    code: int
    lines: list[str]


async def zhike_audit(database: Database, *options: str) -> Printed:
    argv = ["audit", "--database-url", database.url, *options]
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return cli.main(argv)

    code = await asyncio.to_thread(run)
    # splitlines() also breaks at \v, \f, \x1c-\x1e, \x85, U+2028 and U+2029, as a terminal
    # or a log viewer may: none of them may be left in a record.
    return Printed(code, out.getvalue().splitlines())


async def test_a_party_id_forging_a_line_prints_as_one_record_with_every_field(
    audit: AuditLog, database: Database
) -> None:
    # A refused call is audited with the party id it asked for, unvalidated (up to 64 chars).
    forged = "p\n2026-12-04T01:00Z\tsre-bob\tsre\tGetParty\tp-9\t\t\tOK"
    await audit.append(
        recorded(
            dt.datetime(2026, 12, 4, 1, tzinfo=dt.UTC),
            actor="app-user",
            party_id=forged + "\x1b[2K\u202e\u2028\x85\x7f\\",
            outcome="PERMISSION_DENIED",
        )
    )

    printed = await zhike_audit(database)

    assert printed.code == 0
    assert len(printed.lines) == 3
    header, record, footer = printed.lines
    assert header.split("\t") == COLUMNS
    fields = record.split("\t")
    assert len(fields) == len(COLUMNS)
    assert fields[4] == (
        "p\\n2026-12-04T01:00Z\\tsre-bob\\tsre\\tGetParty\\tp-9\\t\\t\\tOK"
        "\\u001b[2K\\u202e\\u2028\\u0085\\u007f\\\\"
    )
    assert fields[-1] == "PERMISSION_DENIED"
    assert footer == "1 record(s)"


def unescaped(text: str) -> str:
    """The inverse of the printed escaping, to show it loses nothing and confuses nothing."""
    named = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}

    def one(match: re.Match[str]) -> str:
        escape = match.group(1)
        return named[escape] if escape in named else chr(int(escape[1:], 16))

    return re.sub(r"\\(\\|n|t|r|u[0-9a-f]{4}|U[0-9a-f]{8})", one, text)


@given(st.text(max_size=64), st.text(max_size=40))
def test_every_printed_record_is_one_line_of_escaped_fields_that_give_back_the_text(
    party_id: str, purpose: str
) -> None:
    entry = recorded(dt.datetime(2026, 12, 4, tzinfo=dt.UTC), party_id=party_id, purpose=purpose)

    [line] = format_entries([entry])

    assert len(line.splitlines()) == 1
    controls = [c for c in line if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]
    assert controls == ["\t"] * (len(COLUMNS) - 1)  # the separators, and nothing else
    fields = line.split("\t")
    assert len(fields) == len(COLUMNS)
    assert (unescaped(fields[4]), unescaped(fields[6])) == (party_id, purpose)


async def insert_records(database: Database, count: int, at: dt.datetime) -> None:
    rows = [
        {
            "recorded_at": at + dt.timedelta(seconds=number),
            "actor": f"teller-{number}",
            "roles": "branch_teller",
            "method": "/zhike.profile.v1.ProfileService/GetProfile",
            "party_id": "p-1",
            "fields": "",
            "purpose": "",
            "outcome": "OK",
            "trace_id": "",
        }
        for number in range(1, count + 1)
    ]
    async with database.session() as session, session.begin():
        await session.execute(sa.insert(audit_record), rows)


async def test_more_records_than_the_limit_say_so_and_the_next_page_holds_the_newest(
    database: Database,
) -> None:
    await insert_records(database, 1002, dt.datetime(2026, 12, 4, tzinfo=dt.UTC))

    first = await zhike_audit(database, "--since", "2026-12-01")

    records = first.lines[1:-1]
    assert (first.code, len(records)) == (0, 1000)
    assert records[-1].split("\t")[1] == "teller-1000"
    assert first.lines[-1] == "1000 record(s); more match: continue with --after-id 1000"

    rest = await zhike_audit(database, "--since", "2026-12-01", "--after-id", "1000")

    assert [line.split("\t")[1] for line in rest.lines[1:-1]] == ["teller-1001", "teller-1002"]
    assert rest.lines[-1] == "2 record(s)"


@pytest.mark.parametrize(
    "until", ["2026-12-04T00:00:03", "2026-12-04T00:00:03Z", "2026-12-04T08:00:03+08:00"]
)
async def test_until_ends_before_the_instant_given_in_utc_or_with_its_offset(
    database: Database, until: str
) -> None:
    await insert_records(database, 4, dt.datetime(2026, 12, 4, tzinfo=dt.UTC))

    printed = await zhike_audit(database, "--since", "2026-12-04T08:00:02+08:00", "--until", until)

    assert [line.split("\t")[1] for line in printed.lines[1:-1]] == ["teller-2"]


@pytest.mark.parametrize(
    "options",
    [
        ["--limit", "0"],
        ["--limit", "-5"],
        ["--after-id", "-1"],
        ["--since", "yesterday"],
    ],
)
def test_a_limit_below_one_or_an_unreadable_range_is_refused_as_a_usage_error(
    options: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["audit", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", *options])

    assert refused.value.code == 2
    assert "usage: zhike audit" in capsys.readouterr().err


@pytest.mark.parametrize("until", ["2026-12-04", "2026-12-04T07:59+08:00"])
def test_an_until_not_later_than_since_is_refused(
    until: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    options = ["--since", "2026-12-04", "--until", until]

    assert cli.main(["audit", "--database-url", database_url, *options]) == 2
    assert capsys.readouterr().err == "zhike audit: --until must be later than --since\n"
