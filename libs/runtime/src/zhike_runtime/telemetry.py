"""OpenTelemetry traces and metrics, configured by the standard OTEL_* variables.

OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: `none` (default), `console` (to stderr, keeping
stdout for JSON logs) or `otlp` (OTEL_EXPORTER_OTLP_ENDPOINT and friends); metrics may also be
`prometheus`, served for scraping on OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT. The trace context
travels in gRPC metadata and in NATS message headers as W3C `traceparent`.

Spans come from OpenTelemetry's instrumentation packages, each given this service's tracer
provider (never the global one, so services sharing a process keep apart): gRPC server spans
(`server_interceptor`), client spans on the channels a service opens (`client_interceptors`), and
a span per database statement (`instrument_database`, only when spans are exported). A statement
span's `db.statement` is the SQL as sent, with placeholders: bound values (names, ID numbers,
phones) are never recorded.

Every metric data point carries `service` (identity, profile, ...): resource attributes such as
`service.name` reach Prometheus only on `target_info`, so per-service rules need the label on
the series themselves, and on the data point it arrives the same whether scraped or sent over
OTLP through a collector. Durations are in seconds, Prometheus's base unit. docs/operations.md
lists every metric under its Prometheus name.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.instrumentation.sqlalchemy import engine as statement_spans
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import (
    __version__ as sqlalchemy_instrumentation,
)
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from zhike_runtime.auth.permissions import PUBLIC_PREFIXES
from zhike_runtime.redaction import describe_error


def _exporter_name(variable: str) -> str:
    return os.environ.get(variable, "none").strip().lower() or "none"


def _span_exporter() -> SpanExporter | None:
    name = _exporter_name("OTEL_TRACES_EXPORTER")
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name != "none":
        raise SystemExit(f"OTEL_TRACES_EXPORTER: unsupported value {name!r} (none|console|otlp)")
    return None


def _metric_reader() -> MetricReader | None:
    name = _exporter_name("OTEL_METRICS_EXPORTER")
    exporter: MetricExporter
    if name == "console":
        exporter = ConsoleMetricExporter(out=sys.stderr)
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter()
    elif name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(
            port=int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")),
            addr=os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
        )
        return PrometheusMetricReader()
    elif name == "none":
        return None
    else:
        raise SystemExit(
            f"OTEL_METRICS_EXPORTER: unsupported value {name!r} (none|console|otlp|prometheus)"
        )
    return PeriodicExportingMetricReader(exporter)


# Bucket bounds of the RPC duration histogram, in seconds (the SDK's defaults are made for
# milliseconds): fine below 100 ms where calls live, and a bound at 1 s, the latency alert's line.
RPC_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip


class ServiceCounter:
    """A counter whose every data point carries the service's `service` label."""

    def __init__(self, counter: Counter, service: str) -> None:
        self._counter = counter
        self._service = service

    def add(self, amount: int, attributes: Mapping[str, str] | None = None) -> None:
        self._counter.add(amount, {**(attributes or {}), "service": self._service})


class ServiceHistogram:
    """A histogram whose every data point carries the service's `service` label."""

    def __init__(self, histogram: Histogram, service: str) -> None:
        self._histogram = histogram
        self._service = service

    def record(self, amount: float, attributes: Mapping[str, str] | None = None) -> None:
        self._histogram.record(amount, {**(attributes or {}), "service": self._service})


@dataclass
class Gauges:
    """Latest values for the observable gauges, updated by the loops that know them."""

    outbox_backlog: int = 0
    # created_at of the oldest unsent outbox event; None when everything is sent.
    outbox_oldest_unsent: dt.datetime | None = None
    consumer_pending: dict[str, int] = field(default_factory=dict)
    nats_connected: bool = False
    # Per stream the service declares: the bytes it holds over its byte limit.
    stream_fill: dict[str, float] = field(default_factory=dict)


class Telemetry:
    """One service's tracer and instruments. Built per service instance, never at import time."""

    def __init__(
        self,
        service: str,
        extra_span_processors: Iterable[SpanProcessor] = (),
        metric_readers: Iterable[MetricReader] = (),
    ) -> None:
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"zhike-{service}")}
        )
        self.tracer_provider = TracerProvider(resource=resource)
        exporter = _span_exporter()
        if exporter is not None:
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        processors = list(extra_span_processors)
        for processor in processors:
            self.tracer_provider.add_span_processor(processor)
        self.spans_exported = exporter is not None or bool(processors)
        readers = list(metric_readers)
        reader = _metric_reader()
        if reader is not None:
            readers.append(reader)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        self.tracer: Tracer = self.tracer_provider.get_tracer("zhike_runtime")
        meter = self.meter_provider.get_meter("zhike_runtime")
        self.gauges = Gauges()
        self._service = service
        # The instrumentation's connection-pool gauge, as its instrumentor names it.
        self._db_connections = meter.create_up_down_counter(
            "db.client.connections.usage",
            unit="connections",
            description="Database connections in each state (idle, used)",
        )
        self.rpc_requests = ServiceCounter(
            meter.create_counter("zhike.rpc.requests", description="RPCs handled"), service
        )
        self.rpc_errors = ServiceCounter(
            meter.create_counter("zhike.rpc.errors", description="RPCs not OK"), service
        )
        self.rpc_duration = ServiceHistogram(
            meter.create_histogram(
                "zhike.rpc.duration",
                unit="s",
                description="RPC handling time",
                explicit_bucket_boundaries_advisory=RPC_DURATION_BUCKETS,
            ),
            service,
        )
        self.events_applied = ServiceCounter(
            meter.create_counter("zhike.events.applied", description="Events applied by consumers"),
            service,
        )
        self.events_duplicate = ServiceCounter(
            meter.create_counter(
                "zhike.events.duplicate", description="Redelivered events absorbed by the inbox"
            ),
            service,
        )
        self.events_dead_lettered = ServiceCounter(
            meter.create_counter(
                "zhike.events.dead_lettered", description="Events sent to the dead-letter stream"
            ),
            service,
        )
        self.events_unhandled = ServiceCounter(
            meter.create_counter(
                "zhike.events.unhandled",
                description="Events of a type the consumer has no handler for (recorded, acked)",
            ),
            service,
        )
        self.events_deferred = ServiceCounter(
            meter.create_counter(
                "zhike.events.deferred",
                description="Events a batch left for a later batch (another transaction held "
                "what they need)",
            ),
            service,
        )
        self.events_published = ServiceCounter(
            meter.create_counter(
                "zhike.outbox.published", description="Outbox events acknowledged by JetStream"
            ),
            service,
        )
        meter.create_observable_gauge(
            "zhike.outbox.backlog", callbacks=[self._observe_backlog], description="Unsent events"
        )
        meter.create_observable_gauge(
            "zhike.outbox.oldest_unsent_age",
            callbacks=[self._observe_oldest_unsent],
            unit="s",
            description="Age of the oldest committed event not yet published (0 when none)",
        )
        meter.create_observable_gauge(
            "zhike.consumer.pending",
            callbacks=[self._observe_pending],
            description="Events waiting for or being processed by each durable consumer",
        )
        # Not part of readiness (requests do not need the broker): this gauge is what alerts
        # on a broker outage.
        meter.create_observable_gauge(
            "zhike.nats.connected",
            callbacks=[self._observe_nats],
            description="1 while connected to NATS with the streams declared, else 0",
        )

        # A stream at its byte limit refuses new events (they wait in the outboxes): this is
        # the warning before that, which the outbox backlog alert would give only after.
        meter.create_observable_gauge(
            "zhike.stream.fill_ratio",
            callbacks=[self._observe_stream_fill],
            unit="1",
            description="Bytes each JetStream stream holds over its byte limit (1: full)",
        )

    def server_interceptor(self) -> grpc.aio.ServerInterceptor:
        """A server span per call (continuing the caller's `traceparent`); health checks and
        reflection, which probes call every few seconds, get none."""
        # The instrumentation packages ship no type hints.
        return aio_server_interceptor(self.tracer_provider, filter_=_not_public)  # type: ignore[no-untyped-call]

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """A client span per call on a channel, and the trace context in its metadata."""
        return list(aio_client_interceptors(self.tracer_provider))  # type: ignore[no-untyped-call]

    def instrument_database(self, engine: AsyncEngine) -> bool:
        """A client span per statement on this engine, when spans go anywhere (True then). The
        instrumentor's `instrument()` would patch `create_engine` process-wide for one tracer
        provider; this attaches its listeners to this engine only, with this service's provider.
        No SQL comments are added."""
        if not self.spans_exported:
            # With OTEL_TRACES_EXPORTER=none the spans would be made and dropped, and they are
            # not free: identity's LinkSourceRecord went from 76 to 50 links/s with them.
            return False
        EngineTracer(  # type: ignore[no-untyped-call]
            self.tracer_provider.get_tracer(
                "opentelemetry.instrumentation.sqlalchemy", sqlalchemy_instrumentation
            ),
            engine.sync_engine,
            self._db_connections,
        )
        # A failed statement's span status would be the driver's message, which may quote a
        # bound value (asyncpg's DataError, PostgreSQL's DETAIL): the instrumentation's handler
        # gives way to one that writes the value-free description instead.
        event.remove(engine.sync_engine, "handle_error", statement_spans._handle_error)
        event.listen(engine.sync_engine, "handle_error", _failed_statement)
        return True

    def _observe_nats(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(int(self.gauges.nats_connected), {"service": self._service})]

    def _observe_stream_fill(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"stream": name, "service": self._service})
            for name, value in self.gauges.stream_fill.items()
        ]

    def _observe_backlog(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.gauges.outbox_backlog, {"service": self._service})]

    def _observe_oldest_unsent(self, _options: CallbackOptions) -> Iterable[Observation]:
        # Computed at each collection, so the age keeps growing between the relay's refreshes
        # of the oldest row (a stuck relay must not freeze the figure the alert watches).
        oldest = self.gauges.outbox_oldest_unsent
        age = 0.0
        if oldest is not None:
            age = max(0.0, (dt.datetime.now(dt.UTC) - oldest).total_seconds())
        return [Observation(age, {"service": self._service})]

    def _observe_pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"consumer": name, "service": self._service})
            for name, value in self.gauges.consumer_pending.items()
        ]

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _failed_statement(context: ExceptionContext) -> None:
    span = getattr(context.execution_context, "_otel_span", None)
    if span is None:
        return
    if span.is_recording():
        error = context.sqlalchemy_exception or context.original_exception
        span.set_status(Status(StatusCode.ERROR, describe_error(error)))
    span.end()


def _not_public(details: grpc.HandlerCallDetails) -> bool:
    method: str = details.method
    return not method.startswith(PUBLIC_PREFIXES)


def inject_context(carrier: MutableMapping[str, str]) -> None:
    """Writes the current trace context (traceparent, tracestate) into headers or metadata."""
    propagate.inject(carrier)


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(carrier)
