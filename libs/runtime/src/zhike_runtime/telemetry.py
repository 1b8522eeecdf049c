"""OpenTelemetry traces and metrics, configured by the standard OTEL_* variables.

OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: `none` (default), `console` (to stderr, keeping
stdout for JSON logs) or `otlp` (OTEL_EXPORTER_OTLP_ENDPOINT and friends); metrics may also be
`prometheus`, served for scraping on OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT. The trace context
travels in gRPC metadata and in NATS message headers as W3C `traceparent`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.metrics import CallbackOptions, Observation
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
from opentelemetry.trace import Tracer


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


@dataclass
class Gauges:
    """Latest values for the observable gauges, updated by the loops that know them."""

    outbox_backlog: int = 0
    consumer_pending: dict[str, int] = field(default_factory=dict)


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
        for processor in extra_span_processors:
            self.tracer_provider.add_span_processor(processor)
        readers = list(metric_readers)
        reader = _metric_reader()
        if reader is not None:
            readers.append(reader)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        self.tracer: Tracer = self.tracer_provider.get_tracer("zhike_runtime")
        meter = self.meter_provider.get_meter("zhike_runtime")
        self.gauges = Gauges()
        self.rpc_requests = meter.create_counter("zhike.rpc.requests", description="RPCs handled")
        self.rpc_errors = meter.create_counter("zhike.rpc.errors", description="RPCs not OK")
        self.rpc_duration = meter.create_histogram(
            "zhike.rpc.duration", unit="ms", description="RPC handling time"
        )
        self.events_applied = meter.create_counter(
            "zhike.events.applied", description="Events applied by consumers"
        )
        self.events_duplicate = meter.create_counter(
            "zhike.events.duplicate", description="Redelivered events absorbed by the inbox"
        )
        self.events_dead_lettered = meter.create_counter(
            "zhike.events.dead_lettered", description="Events sent to the dead-letter stream"
        )
        self.events_published = meter.create_counter(
            "zhike.outbox.published", description="Outbox events acknowledged by JetStream"
        )
        meter.create_observable_gauge(
            "zhike.outbox.backlog", callbacks=[self._observe_backlog], description="Unsent events"
        )
        meter.create_observable_gauge(
            "zhike.consumer.pending",
            callbacks=[self._observe_pending],
            description="Events waiting for or being processed by each durable consumer",
        )

    def _observe_backlog(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.gauges.outbox_backlog)]

    def _observe_pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"consumer": name})
            for name, value in self.gauges.consumer_pending.items()
        ]

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def inject_context(carrier: MutableMapping[str, str]) -> None:
    """Writes the current trace context (traceparent, tracestate) into headers or metadata."""
    propagate.inject(carrier)


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(carrier)
