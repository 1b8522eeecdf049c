"""R8 companion (T1): JetStream durability configuration. The kind NATS values run a
3-server cluster with a file store and sync_interval: always, and the services create their
streams with 3 replicas in production and in kind."""

from __future__ import annotations

from typing import Any

import pytest

from .chart import KIND_DIR, Manifest, load_yaml_file


@pytest.fixture(scope="module")
def nats_values() -> dict[str, Any]:
    return load_yaml_file(KIND_DIR / "nats-values.yaml")


def test_kind_nats_uses_a_persistent_file_store(nats_values: dict[str, Any]) -> None:
    jetstream = nats_values["config"]["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert jetstream["memoryStore"]["enabled"] is False


def test_kind_nats_fsyncs_every_write(nats_values: dict[str, Any]) -> None:
    assert nats_values["config"]["jetstream"]["merge"]["sync_interval"] == "always"


def test_kind_nats_runs_three_servers_for_replicated_streams(
    nats_values: dict[str, Any],
) -> None:
    cluster = nats_values["config"]["cluster"]
    assert cluster["enabled"] is True
    assert cluster["replicas"] == 3


def _stream_replicas(objects: list[Manifest]) -> set[str]:
    return {m["data"]["ZHIKE_STREAM_REPLICAS"] for m in objects if m["kind"] == "ConfigMap"}


def test_production_defaults_create_streams_with_three_replicas(
    default_objects: list[Manifest],
) -> None:
    assert _stream_replicas(default_objects) == {"3"}


def test_kind_streams_fit_the_kind_nats_cluster(
    kind_objects: list[Manifest], nats_values: dict[str, Any]
) -> None:
    replicas = _stream_replicas(kind_objects)
    assert replicas == {"3"}
    assert int(replicas.pop()) <= nats_values["config"]["cluster"]["replicas"]
