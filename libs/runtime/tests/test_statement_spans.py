"""Statement spans from OpenTelemetry's SQLAlchemy instrumentation (Telemetry.instrument_database):
one per statement, its SQL with placeholders, and no bound value in it or in a failure's status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from zhike_runtime import telemetry as telemetry_module
from zhike_runtime.db import Database
from zhike_runtime.telemetry import Telemetry

PERSONAL = "欧阳振华 13912345678"


@pytest.fixture
async def traced(database_url: str) -> AsyncIterator[tuple[Database, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry("testing", extra_span_processors=[SimpleSpanProcessor(exporter)])
    database = Database(database_url)
    assert telemetry.instrument_database(database.engine)
    try:
        yield database, exporter
    finally:
        await database.dispose()
        telemetry.shutdown()


def statements(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if "db.statement" in (s.attributes or {})]


async def test_a_statement_span_holds_the_sql_with_placeholders_not_the_value(
    traced: tuple[Database, InMemorySpanExporter],
) -> None:
    database, exporter = traced
    async with database.engine.connect() as connection:
        answer = await connection.scalar(sa.select(sa.literal(PERSONAL, sa.String) + "!"))
    assert answer == PERSONAL + "!"  # the value went to the database as a bound parameter

    [span] = [
        s for s in statements(exporter) if "SELECT" in str((s.attributes or {})["db.statement"])
    ]
    attributes = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert attributes["db.system"] == ("postgresql" if database.is_postgres else "sqlite")
    assert not [v for v in attributes.values() if "13912345678" in str(v) or "振华" in str(v)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_failed_statement_span_says_why_without_quoting_the_value(
    traced: tuple[Database, InMemorySpanExporter],
) -> None:
    database, exporter = traced
    async with database.engine.connect() as connection:
        # asyncpg refuses the text for an integer parameter and quotes it in its message.
        with pytest.raises(sa.exc.DBAPIError) as refused:
            await connection.execute(sa.text("SELECT :v + 1"), {"v": PERSONAL})
    assert "13912345678" in str(refused.value.orig)  # so the status below had it to leak

    [span] = [s for s in statements(exporter) if s.status.status_code is StatusCode.ERROR]
    description = span.status.description or ""
    assert description.startswith("DBAPIError")
    assert "13912345678" not in description
    assert "振华" not in description


async def test_without_a_trace_exporter_the_database_is_not_instrumented(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    telemetry = Telemetry("testing")
    database = Database(database_url)
    try:
        assert not telemetry.instrument_database(database.engine)
        assert not sa.event.contains(
            database.engine.sync_engine, "handle_error", telemetry_module._failed_statement
        )
    finally:
        await database.dispose()
        telemetry.shutdown()
