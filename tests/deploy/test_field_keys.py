"""The chart gives every service its field-encryption keys from an existing Secret, and refuses
to render an identity or notifications service that could not start without them (issue 9,
encryption at rest)."""

from __future__ import annotations

import pytest

from .chart import SERVICES, Manifest, render


def key_env(objects: list[Manifest], kind: str, service: str) -> dict[str, tuple[str, str]]:
    workload = next(
        o
        for o in objects
        if o["kind"] == kind and o["metadata"]["name"].startswith(f"zhike-{service}")
    )
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if e["name"] in {"ZHIKE_DATA_KEYS", "ZHIKE_DATA_KEY_ID", "ZHIKE_BLIND_INDEX_KEY"}
    }


def test_every_deployment_and_migration_job_reads_the_keys_from_the_secret(
    default_objects: list[Manifest],
) -> None:
    expected = {
        "ZHIKE_DATA_KEYS": ("zhike-field-keys", "data-keys"),
        "ZHIKE_DATA_KEY_ID": ("zhike-field-keys", "data-key-id"),
        "ZHIKE_BLIND_INDEX_KEY": ("zhike-field-keys", "blind-index-key"),
    }
    for service in SERVICES:
        assert key_env(default_objects, "Deployment", service) == expected
    assert key_env(default_objects, "Job", "identity") == expected
    assert key_env(default_objects, "Job", "notifications") == expected


def test_the_chart_refuses_to_render_identity_without_its_field_keys() -> None:
    with pytest.raises(Exception, match=r"fieldKeys.existingSecret: required"):
        render({"fieldKeys": {"existingSecret": ""}})
