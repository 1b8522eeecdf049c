"""Every stream holds a bounded number of bytes (ZHIKE_STREAM_MAX_BYTES and, per stream,
ZHIKE_STREAM_MAX_BYTES_BY_STREAM, from nats.streamMaxBytes and nats.streamMaxBytesByStream):
the chart renders the services' own defaults, as whole bytes the services accept, in every
profile; it refuses an unlimited or malformed limit; and the default limits of all the streams
fit the JetStream volume of the kind cluster's NATS servers, each of which holds a copy of every
stream. No JetStream storage alert is rendered, as nothing scrapes NATS metrics: the runbook's
sizing section gives the rule and the checks instead."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest

from zhike_runtime.events.bus import DLQ_STREAM, StreamLimits
from zhike_runtime.events.nats_permissions import SERVICES as GRANTS
from zhike_runtime.settings import ServiceSettings

from .chart import CHART_DIR, KIND_DIR, REPO_ROOT, Manifest, load_yaml_file, render
from .service_settings import SETTINGS_CLASSES, pod_settings

MIB = 1024 * 1024
GIB = 1024 * MIB
DEFAULT_MAX_BYTES = 128 * MIB
DEFAULT_BY_STREAM = {"ZHIKE_SOURCE": 512 * MIB}
# nats-server without max_file_store takes 75 % of the free space of its store's volume.
DEFAULT_STORE_SHARE = 0.75
OPERATIONS = REPO_ROOT / "docs" / "operations.md"


def _limits(objects: list[Manifest]) -> set[tuple[str, str]]:
    return {
        (m["data"]["ZHIKE_STREAM_MAX_BYTES"], m["data"]["ZHIKE_STREAM_MAX_BYTES_BY_STREAM"])
        for m in objects
        if m["kind"] == "ConfigMap" and "ZHIKE_STREAM_MAX_BYTES" in m["data"]
    }


def test_every_service_gets_the_default_byte_limits(profile_objects: list[Manifest]) -> None:
    [(max_bytes, by_stream)] = _limits(profile_objects)
    assert int(max_bytes) == DEFAULT_MAX_BYTES
    assert json.loads(by_stream) == DEFAULT_BY_STREAM


def test_the_chart_defaults_are_the_services_defaults() -> None:
    nats = load_yaml_file(CHART_DIR / "values.yaml")["nats"]
    assert nats["streamMaxBytes"] == ServiceSettings.model_fields["stream_max_bytes"].default
    defaults = ServiceSettings.model_fields["stream_max_bytes_by_stream"].get_default(
        call_default_factory=True
    )
    assert nats["streamMaxBytesByStream"] == defaults == DEFAULT_BY_STREAM


@pytest.mark.parametrize("service", sorted(SETTINGS_CLASSES))
def test_every_service_starts_with_the_rendered_limits(
    default_objects: list[Manifest], service: str
) -> None:
    deployment = next(
        m
        for m in default_objects
        if m["kind"] == "Deployment" and m["metadata"]["name"] == f"zhike-{service}"
    )
    settings = pod_settings(service, deployment, default_objects)
    assert settings.stream_max_bytes == DEFAULT_MAX_BYTES
    assert settings.stream_max_bytes_by_stream == DEFAULT_BY_STREAM


def test_overrides_render_as_whole_bytes_and_keep_the_other_defaults() -> None:
    objects = render(
        {
            "nats": {
                "streamMaxBytes": 10 * GIB,
                "streamMaxBytesByStream": {"ZHIKE_IDENTITY": 20 * GIB},
            }
        }
    )
    [(max_bytes, by_stream)] = _limits(objects)
    assert max_bytes == str(10 * GIB)
    assert re.fullmatch(r"\{[\"A-Z_:,0-9]+\}", by_stream), by_stream  # no 2.147483648e+10
    assert json.loads(by_stream) == {"ZHIKE_IDENTITY": 20 * GIB, "ZHIKE_SOURCE": 512 * MIB}


@pytest.mark.parametrize(
    "nats",
    [
        {"streamMaxBytes": -1},  # JetStream's "no limit"
        {"streamMaxBytes": 0},
        {"streamMaxBytes": 1000},
        {"streamMaxBytes": "1Gi"},
        {"streamMaxBytes": 2097152.5},  # not whole bytes
        {"streamMaxBytesByStream": {"ZHIKE_SOURCE": -1}},
        {"streamMaxBytesByStream": {"ZHIKE_SOURCE": "512Mi"}},
        {"streamMaxBytesByStream": {"zhike_source": 512 * MIB}},
    ],
)
def test_an_unlimited_or_malformed_byte_limit_does_not_render(nats: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render({"nats": nats})


def _quantity(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", size).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": MIB, "Gi": GIB}[unit]


def test_the_default_limits_of_all_streams_fit_the_kind_jetstream_volume() -> None:
    nats = load_yaml_file(KIND_DIR / "nats-values.yaml")["config"]
    streams = {stream.name for grant in GRANTS for stream in grant.owns} | {DLQ_STREAM}
    assert streams == {
        "ZHIKE_IDENTITY",
        "ZHIKE_PROFILE",
        "ZHIKE_SOURCE",
        "ZHIKE_OFFERS",
        "ZHIKE_NOTIFICATIONS",
        "ZHIKE_DLQ",
    }
    limits = StreamLimits(DEFAULT_MAX_BYTES, DEFAULT_BY_STREAM)
    reserved = sum(limits.for_stream(name) or 0 for name in streams)
    # Three replicas on three servers: every server reserves every stream's limit.
    assert nats["cluster"]["replicas"] == 3
    store = _quantity(nats["jetstream"]["fileStore"]["pvc"]["size"]) * DEFAULT_STORE_SHARE
    assert reserved == 1152 * MIB
    assert reserved <= store


def test_the_runbook_gives_the_sizing_rule_and_the_defaults() -> None:
    runbook = " ".join(OPERATIONS.read_text(encoding="utf-8").split())
    sizing = runbook[runbook.index("### Stream sizing") :]
    for words in (
        "`nats.streamMaxBytes` (`ZHIKE_STREAM_MAX_BYTES`, 128 MiB)",
        "`nats.streamMaxBytesByStream` (`ZHIKE_STREAM_MAX_BYTES_BY_STREAM`, `ZHIKE_SOURCE`: 512 MiB)",
        "rate × `ZHIKE_STREAM_MAX_AGE_SECONDS` × stored size",
        "No NATS metrics are scraped",
    ):
        assert words in sizing, words
