"""values.yaml and values.schema.json: a values file with an unknown key or a wrong type
never renders, the schema is closed everywhere, and every value is documented."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest

from .chart import CHART_DIR, load_yaml_file, render

BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("unknown top-level key", {"replicaCount": 3}),
    ("unknown service", {"services": {"payments": {"enabled": True}}}),
    ("typo in a service key", {"services": {"identity": {"replicas": 3}}}),
    ("unknown nested key", {"nats": {"streamReplica": 3}}),
    ("string for an integer", {"nats": {"streamReplicas": "3"}}),
    ("even stream replicas", {"nats": {"streamReplicas": 2}}),
    ("string for a boolean", {"config": {"grpcReflection": "false"}}),
    ("integer for a string", {"services": {"profile": {"image": {"tag": 1}}}}),
    ("unknown exporter", {"telemetry": {"tracesExporter": "jaeger"}}),
    ("malformed digest", {"image": {"digest": "latest"}}),
    ("root container", {"podSecurityContext": {"runAsNonRoot": False}}),
    ("writable root filesystem", {"containerSecurityContext": {"readOnlyRootFilesystem": False}}),
    ("limits removed", {"services": {"offers": {"resources": {"limits": None}}}}),
    ("bad quantity", {"migrations": {"resources": {"limits": {"memory": "lots"}}}}),
    (
        "empty database secret name",
        {"services": {"identity": {"database": {"existingSecret": ""}}}},
    ),
    ("nats egress to anywhere", {"networkPolicy": {"egress": {"nats": {"to": []}}}}),
    ("lowercase env name", {"config": {"extraEnv": {"zhike_x": "1"}}}),
    ("non-string env value", {"config": {"extraEnv": {"ZHIKE_X": 1}}}),
    ("unknown test image source", {"tests": {"imageFrom": "payments"}}),
    ("unknown allowInsecure flag", {"allowInsecure": {"everything": True}}),
    ("string for an allowInsecure flag", {"allowInsecure": {"plaintextGrpc": "true"}}),
]


@pytest.mark.parametrize(("case", "values"), BAD_VALUES, ids=[case for case, _ in BAD_VALUES])
def test_values_with_an_unknown_key_or_a_wrong_type_do_not_render(
    case: str, values: dict[str, Any]
) -> None:
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_a_well_typed_override_renders() -> None:
    objects = render({"services": {"offers": {"replicaCount": 4}}, "nats": {"streamReplicas": 5}})
    offers = next(
        m for m in objects if m["metadata"]["name"] == "zhike-offers" and m["kind"] == "Deployment"
    )
    assert offers["spec"]["replicas"] == 4


def _schemas(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _schemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas(value, f"{path}/{index}")


def test_schema_closes_every_object_with_named_properties() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    open_objects = [
        path
        for path, node in _schemas(schema)
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_objects == []


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of values.yaml; empty maps, lists and scalars are leaves."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def test_every_value_has_a_param_line() -> None:
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\s*## @param (\S+) ", text, flags=re.MULTILINE))
    values = load_yaml_file(CHART_DIR / "values.yaml")
    undocumented = []
    for path in _leaf_paths(values):
        # A @param on a map (e.g. networkPolicy.egress.nats.to) documents everything below.
        parts = path.split(".")
        if not any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)):
            undocumented.append(path)
    assert undocumented == []
    stale = [p for p in documented if not _has_path(values, p.split("."))]
    assert stale == []


def _has_path(values: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True
