"""Traces through a running identity service: OpenTelemetry's gRPC and SQLAlchemy instrumentation
give one trace a client span, a server span and the statements' spans, and no span attribute
holds a value the statements bound (names, phones, ID numbers, their hashes and ciphertexts)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.type import date_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import identity_service_pb2_grpc, party_pb2
from zhike_identity.app import DEFINITION
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.telemetry import Telemetry
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    STAFF_ROLES,
    TEST_ISSUER,
    eventually,
    running_service,
    wait_serving,
)

LINK = "/zhike.identity.v1.IdentityService/LinkSourceRecord"
RECORD = party_pb2.SourceRecord(
    key=party_pb2.SourceRecordKey(source_system="crm", source_record_id="TRACE-000123"),
    full_name="欧阳振华",
    id_type=party_pb2.ID_TYPE_RESIDENT_ID,
    id_number="11010519491231002X",
    phone="+86 139 1234 5678",
    email="zhenhua.ouyang@example.com",
    birth_date=date_pb2.Date(year=1949, month=12, day=31),
    gender=party_pb2.GENDER_MALE,
    address="北京市西城区金融大街 35 号",
)
BAD_ID_NUMBER = "110105194912310021"  # the check character is wrong
PERSONAL = (
    "欧阳振华",
    "11010519491231002X",
    "13912345678",
    "zhenhua.ouyang@example.com",
    "金融大街",
)


_WORD = re.compile(r"[A-Za-z_.]+")


class BoundValues:
    """Every value the engine binds into a statement, as the driver receives it."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def __call__(self, *args: Any) -> None:
        parameters = args[3]
        rows = parameters if isinstance(parameters, list) else [parameters]
        for row in rows:
            items = row.values() if isinstance(row, dict) else (row or ())
            for value in items:
                text = value.hex() if isinstance(value, bytes) else str(value)
                # Short values ("crm", 1, True) and plain words (states and event types such
                # as "created", which are column names too) occur in SQL text by chance.
                if len(text) >= 6 and not _WORD.fullmatch(text):
                    self.values.add(text)
                    if isinstance(value, bytes):
                        self.values.add(repr(value))


@pytest.fixture
async def traced(
    nats_server: NatsServer, database_url: str
) -> AsyncIterator[tuple[list[ReadableSpan], BoundValues]]:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry("identity", extra_span_processors=[SimpleSpanProcessor(exporter)])
    bound = BoundValues()
    async with running_service(
        DEFINITION, database_url=database_url, nats_url=nats_server.url, telemetry=telemetry
    ) as service:
        await wait_serving(service.grpc_port)
        sa.event.listen(service.database.engine.sync_engine, "before_cursor_execute", bound)
        token = TEST_ISSUER.mint(STAFF_ROLES, subject="test-user")
        interceptors = [*telemetry.client_interceptors(), BearerToken(token)]
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.grpc_port}", interceptors=interceptors
        ) as channel:
            stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
            await stub.LinkSourceRecord(pb.LinkSourceRecordRequest(source_record=RECORD), timeout=5)
            # And a refused one: its span's status and events must not quote the request.
            refused = party_pb2.SourceRecord()
            refused.CopyFrom(RECORD)
            refused.key.source_record_id = "TRACE-000124"
            refused.id_number = BAD_ID_NUMBER
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.LinkSourceRecord(
                    pb.LinkSourceRecordRequest(source_record=refused), timeout=5
                )
            assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        # A refused call's status reaches the client before its server span ends.
        async def both_server_spans_ended() -> bool:
            ended = exporter.get_finished_spans()
            return sum(s.kind is SpanKind.SERVER for s in ended) == 2

        await eventually(both_server_spans_ended, timeout=5)
        sa.event.remove(service.database.engine.sync_engine, "before_cursor_execute", bound)
        yield list(exporter.get_finished_spans()), bound


def the_call(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The spans in the first LinkSourceRecord call's trace."""
    client = [s for s in spans if s.kind is SpanKind.CLIENT and s.name == LINK]
    assert len(client) == 2, [s.name for s in spans]
    client.sort(key=lambda s: s.start_time or 0)
    assert client[0].context is not None
    trace_id = client[0].context.trace_id
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


async def test_a_call_gives_one_trace_with_client_server_and_database_spans(
    traced: tuple[list[ReadableSpan], BoundValues],
) -> None:
    spans = the_call(traced[0])

    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == [LINK]
    server_attributes = dict(servers[0].attributes or {})
    assert server_attributes["rpc.system"] == "grpc"
    assert server_attributes["rpc.method"] == "LinkSourceRecord"
    assert server_attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    statements = [s for s in spans if "db.statement" in (s.attributes or {})]
    assert statements, [s.name for s in spans]
    assert servers[0].context is not None
    # The statements run inside the server span: the call's trace continued in the service.
    assert all(s.parent is not None for s in statements)
    assert any(
        s.parent is not None and s.parent.span_id == servers[0].context.span_id for s in statements
    )


async def test_a_refused_call_has_its_status_code_on_its_server_span(
    traced: tuple[list[ReadableSpan], BoundValues],
) -> None:
    codes = [
        (s.attributes or {}).get("rpc.grpc.status_code")
        for s in traced[0]
        if s.kind is SpanKind.SERVER
    ]

    assert sorted(c for c in codes if isinstance(c, int)) == [
        grpc.StatusCode.OK.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
    ]


async def test_no_span_attribute_holds_a_bound_value_or_personal_data(
    traced: tuple[list[ReadableSpan], BoundValues],
) -> None:
    spans, bound = traced
    # The check means something only if the statements bound values, the source key among them.
    assert "TRACE-000123" in bound.values
    texts = [
        str(value)
        for span in spans
        for value in [
            *(span.attributes or {}).values(),
            *(v for e in span.events for v in (e.name, *(e.attributes or {}).values())),
            span.name,
            span.status.description,
        ]
        if value is not None
    ]

    assert not [(value, text) for value in bound.values for text in texts if value in text]
    assert not [(value, text) for value in PERSONAL for text in texts if value in text]
