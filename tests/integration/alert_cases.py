"""promtool unit tests for every alert: one case that fires and one that stays silent, with input
series whose names and label sets are taken from a real scrape of the services.

Prometheus stores a scraped series under the exposition's labels plus the target's. The target
labels below are what the chart's ServiceMonitor gives a pod of release `zhike` in namespace
`zhike` (the Prometheus Operator's job, namespace, pod, container, endpoint and instance, and
`service` relabelled to the component); with honorLabels the exposition's own `service` stays.
Series that do not come from our exporter are written by hand: `up` (Prometheus writes it
itself) and kube-state-metrics' `kube_deployment_status_replicas_available`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .metrics_scrape import Labels, Scrape

NAMESPACE = "zhike"
SERVER_ERROR = "INTERNAL"
CLIENT_ERRORS = ("INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED")


def target_labels(service: str) -> Labels:
    return {
        "job": f"zhike-{service}",
        "namespace": NAMESPACE,
        "service": service,
        "pod": f"zhike-{service}-6f7d9c8b5-q2w4x",
        "container": service,
        "endpoint": "metrics",
        "instance": "10.244.1.17:9464",
    }


def stored(scraped: Mapping[str, str], service: str) -> Labels:
    """A scraped label set as Prometheus stores it: target labels, then the exposition's
    (honorLabels), with empty values dropped as Prometheus drops them."""
    merged = target_labels(service) | dict(scraped)
    return {name: value for name, value in merged.items() if value != ""}


def series(name: str, labels: Mapping[str, str]) -> str:
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"') for v in labels.values())
    inner = ",".join(f'{k}="{v}"' for k, v in zip(labels, escaped, strict=True))
    return f"{name}{{{inner}}}"


def _fill(template: str, labels: Mapping[str, str]) -> str:
    """An annotation as Prometheus renders it; the rules' templates only print labels, and one
    naming a label the alert lacks fails here instead of printing `<no value>`."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


@dataclass
class Case:
    alert: str
    fires: bool
    name: str
    eval_time: str
    input_series: list[dict[str, str]] = field(default_factory=list)
    # The labels of each expected alert (without alertname), when it fires.
    expected: list[Labels] = field(default_factory=list)

    def add(self, name: str, labels: Mapping[str, str], values: str) -> Case:
        self.input_series.append({"series": series(name, labels), "values": values})
        return self

    def promtool_test(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        """This case as a promtool test of `rule` (the rendered alerting rule): the expected
        alerts carry the rule's labels and its annotations filled in with their labels."""
        return {
            "name": f"{self.alert} {'fires' if self.fires else 'stays silent'}: {self.name}",
            "interval": "1m",
            "input_series": self.input_series,
            "alert_rule_test": [
                {
                    "eval_time": self.eval_time,
                    "alertname": self.alert,
                    "exp_alerts": [
                        {
                            "exp_labels": labels | rule["labels"],
                            "exp_annotations": {
                                key: _fill(template, labels)
                                for key, template in rule["annotations"].items()
                            },
                        }
                        for labels in self.expected
                    ],
                }
            ],
        }


def _rpc(scrape: Scrape, service: str, code: str, *, like: str = "OK") -> Labels:
    """The stored labels of zhike_rpc_requests_total for `service` with status `code`: the real
    series when the scrape has it, else a real one of that service with only the code changed
    (a server-side failure cannot be provoked from outside on demand)."""
    found = scrape.find("zhike_rpc_requests_total", service=service, rpc_grpc_status_code=code)
    scraped = (
        found[0].labels
        if found
        else scrape.labels_of(
            "zhike_rpc_requests_total", service=service, rpc_grpc_status_code=like
        )
        | {"rpc_grpc_status_code": code}
    )
    return stored(scraped, service)


def _error_rate(scrape: Scrape) -> list[Case]:
    alert = "ZhikeRPCErrorRateHigh"
    fires = Case(alert, True, "10% INTERNAL at identity, none at profile", "30m")
    fires.add("zhike_rpc_requests_total", _rpc(scrape, "identity", "OK"), "0+90x40")
    fires.add("zhike_rpc_requests_total", _rpc(scrape, "identity", SERVER_ERROR), "0+10x40")
    fires.add("zhike_rpc_requests_total", _rpc(scrape, "profile", "OK"), "0+100x40")
    fires.expected = [{"namespace": NAMESPACE, "service": "identity"}]
    silent = Case(
        alert, False, "identity refuses half, profile every call: the callers' fault", "30m"
    )
    silent.add("zhike_rpc_requests_total", _rpc(scrape, "identity", "OK"), "0+40x40")
    for code in CLIENT_ERRORS:
        found = scrape.find("zhike_rpc_requests_total", rpc_grpc_status_code=code)
        assert found, f"the calls made before the scrape produced no {code} series"
        labels = found[0].labels
        silent.add("zhike_rpc_requests_total", stored(labels, labels["service"]), "0+20x40")
    return [fires, silent]


def _buckets(scrape: Scrape, service: str, slow: bool) -> list[tuple[Labels, str]]:
    """Every bucket of one real RPC histogram series; each minute 10 calls, all slower than
    2 s (slow) or all faster than 50 ms."""
    scraped = scrape.labels_of("zhike_rpc_duration_seconds_bucket", service=service)
    keep = {k: v for k, v in scraped.items() if k != "le"}
    buckets = [s.labels["le"] for s in scrape.find("zhike_rpc_duration_seconds_bucket", **keep)]
    assert "+Inf" in buckets, buckets
    assert "1.0" in buckets, buckets  # the latency alert's line falls on a bucket bound
    rows = []
    for le in buckets:
        counted = float(le) > 2.0 if slow else float(le) >= 0.05
        rows.append((stored(keep | {"le": le}, service), "0+10x40" if counted else "0x40"))
    return rows


def _latency(scrape: Scrape) -> list[Case]:
    alert = "ZhikeRPCLatencyHigh"
    fires = Case(alert, True, "identity slow, profile fast", "30m")
    for service, slow in (("identity", True), ("profile", False)):
        for labels, values in _buckets(scrape, service, slow):
            fires.add("zhike_rpc_duration_seconds_bucket", labels, values)
    fires.expected = [{"namespace": NAMESPACE, "service": "identity"}]
    silent = Case(alert, False, "every call under 50 ms", "30m")
    for labels, values in _buckets(scrape, "identity", slow=False):
        silent.add("zhike_rpc_duration_seconds_bucket", labels, values)
    return [fires, silent]


def _one_series(
    scrape: Scrape, alert: str, metric: str, service: str, **match: str
) -> Callable[[bool, str, str, str], Case]:
    labels = stored(scrape.labels_of(metric, service=service, **match), service)

    def case(fires: bool, name: str, values: str, eval_time: str) -> Case:
        return Case(alert, fires, name, eval_time).add(metric, labels, values)

    return case


def _outbox(scrape: Scrape) -> list[Case]:
    alert = "ZhikeOutboxBacklogOld"
    case = _one_series(scrape, alert, "zhike_outbox_oldest_unsent_age_seconds", "identity")
    fires = case(True, "the oldest unsent event ages a minute a minute", "0+60x40", "20m")
    fires.expected = [{"namespace": NAMESPACE, "service": "identity"}]
    silent = case(False, "events leave within seconds", "2x40", "30m")
    return [fires, silent]


def _consumer_lag(scrape: Scrape) -> list[Case]:
    alert = "ZhikeConsumerLagging"
    case = _one_series(
        scrape, alert, "zhike_consumer_pending", "profile", consumer="profile-identity"
    )
    fires = case(True, "5000 pending for half an hour", "5000x40", "35m")
    fires.expected = [
        {"namespace": NAMESPACE, "service": "profile", "consumer": "profile-identity"}
    ]
    silent = case(False, "a burst that drains", "5000 4000 3000 2000 1000 0x35", "30m")
    return [fires, silent]


def _dead_letters(scrape: Scrape) -> list[Case]:
    alert = "ZhikeEventsDeadLettered"
    case = _one_series(
        scrape, alert, "zhike_events_dead_lettered_total", "profile", consumer="profile-identity"
    )
    fires = case(True, "a new dead letter", "0x10 1x30", "15m")
    fires.expected = [
        {"namespace": NAMESPACE, "service": "profile", "consumer": "profile-identity"}
    ]
    silent = case(False, "only a dead letter from long ago", "1x40", "30m")
    return [fires, silent]


def _nats(scrape: Scrape) -> list[Case]:
    alert = "ZhikeNATSDisconnected"
    labels = stored(scrape.labels_of("zhike_nats_connected", service="identity"), "identity")
    fires = Case(alert, True, "disconnected for 15 minutes", "20m")
    fires.add("zhike_nats_connected", labels, "1x5 0x30")
    fires.expected = [labels]
    silent = Case(alert, False, "a one-minute blip", "20m")
    silent.add("zhike_nats_connected", labels, "1x5 0 1x30")
    return [fires, silent]


def _stream_fill(scrape: Scrape) -> list[Case]:
    alert = "ZhikeStreamNearlyFull"
    labels = stored(
        scrape.labels_of("zhike_stream_fill_ratio", service="identity", stream="ZHIKE_IDENTITY"),
        "identity",
    )
    fires = Case(alert, True, "over 80 % for 20 minutes", "25m")
    fires.add("zhike_stream_fill_ratio", labels, "0.5x5 0.85x30")
    fires.expected = [{"namespace": NAMESPACE, "stream": "ZHIKE_IDENTITY"}]
    silent = Case(alert, False, "over 80 % for ten minutes, then old events expire", "30m")
    silent.add("zhike_stream_fill_ratio", labels, "0.5x5 0.85x10 0.6x20")
    return [fires, silent]


def _target_down() -> list[Case]:
    alert = "ZhikeTargetDown"
    labels = target_labels("profile")
    fires = Case(alert, True, "a pod's scrape fails for 10 minutes", "10m").add(
        "up", labels, "0x20"
    )
    fires.expected = [labels]
    silent = Case(alert, False, "every scrape succeeds", "10m").add("up", labels, "1x20")
    return [fires, silent]


def _target_absent(services: tuple[str, ...]) -> list[Case]:
    alert = "ZhikeTargetAbsent"
    fires = Case(alert, True, "nothing scrapes identity", "20m")
    for service in services[1:]:
        fires.add("up", target_labels(service), "1x30")
    fires.expected = [{"job": f"zhike-{services[0]}", "namespace": NAMESPACE}]
    silent = Case(alert, False, "every service is scraped", "20m")
    for service in services:
        silent.add("up", target_labels(service), "1x30")
    return [fires, silent]


def _service_unavailable() -> list[Case]:
    alert = "ZhikeServiceUnavailable"
    name = "kube_deployment_status_replicas_available"
    labels = {"namespace": NAMESPACE, "deployment": "zhike-identity"}
    fires = Case(alert, True, "no available replica", "10m").add(name, labels, "0x20")
    fires.expected = [labels]
    silent = Case(alert, False, "two available replicas", "10m").add(name, labels, "2x20")
    return [fires, silent]


def alert_cases(scrape: Scrape, services: tuple[str, ...]) -> list[Case]:
    return [
        *_service_unavailable(),
        *_error_rate(scrape),
        *_latency(scrape),
        *_outbox(scrape),
        *_consumer_lag(scrape),
        *_dead_letters(scrape),
        *_nats(scrape),
        *_stream_fill(scrape),
        *_target_down(),
        *_target_absent(services),
    ]
