"""Production values that would break quietly (issue 10, defect 6): the chart refuses them, or
gives the operator the hooks (extraEnvFrom, extraVolumes, extraVolumeMounts) and the rollout
(checksum annotation) a production install needs."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
from helm_python.errors import HelmRenderError

from .chart import SERVICES, Manifest, render, validate, validation_kube_versions

# Every service on one replica, and no page-token Secret: what a single-pod install may run.
ONE_REPLICA_NO_PAGE_KEY: dict[str, Any] = {
    "pageTokens": {"existingSecret": ""},
    "services": {s: {"replicaCount": 1} for s in SERVICES},
}
# No Secret a shared page-token key could come from: only profile and offers, which store no
# field-encrypted data (and never get the field keys), can run so.
NO_SHARED_KEY: dict[str, Any] = ONE_REPLICA_NO_PAGE_KEY | {
    "fieldKeys": {"existingSecret": ""},
    "services": {s: {"replicaCount": 1, "enabled": s in ("profile", "offers")} for s in SERVICES},
}


def _workload(objects: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    manifest = next(m for m in objects if m["kind"] == kind and m["metadata"]["name"] == name)
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def _with(base: dict[str, Any], service: str, values: dict[str, Any]) -> dict[str, Any]:
    services = {s: dict(v) for s, v in base["services"].items()}
    services[service] |= values
    return base | {"services": services}


# --- Page tokens: every replica must sign with the same key ---


def test_a_single_replica_renders_without_a_page_token_secret() -> None:
    deployments = [m for m in render(ONE_REPLICA_NO_PAGE_KEY) if m["kind"] == "Deployment"]
    assert len(deployments) == len(SERVICES)


@pytest.mark.parametrize("service", ["identity", "notifications"])
def test_more_than_one_replica_with_the_field_keys_alone_renders_where_they_are_read(
    service: str,
) -> None:
    # Every pod of identity or notifications derives the same page-token key from the
    # blind-index key; profile and offers never get the field keys (test_field_keys.py).
    values = _with(ONE_REPLICA_NO_PAGE_KEY, service, {"replicaCount": 2})
    deployment = next(
        m
        for m in render(values)
        if m["kind"] == "Deployment" and m["metadata"]["name"] == f"zhike-{service}"
    )
    assert deployment["spec"]["replicas"] == 2


@pytest.mark.parametrize("service", ["profile", "offers"])
def test_more_than_one_replica_of_profile_or_offers_needs_the_page_token_secret(
    service: str,
) -> None:
    values = _with(ONE_REPLICA_NO_PAGE_KEY, service, {"replicaCount": 2})
    with pytest.raises(HelmRenderError, match=rf"services\.{service}.*pageTokens\.existingSecret"):
        render(values)


def test_more_than_one_replica_without_a_page_token_or_field_key_secret_does_not_render() -> None:
    values = _with(NO_SHARED_KEY, "profile", {"replicaCount": 2})
    with pytest.raises(HelmRenderError, match=r"services\.profile.*pageTokens\.existingSecret"):
        render(values)


def test_autoscaling_without_a_page_token_or_field_key_secret_does_not_render() -> None:
    values = _with(NO_SHARED_KEY, "offers", {"autoscaling": {"enabled": True}})
    with pytest.raises(HelmRenderError, match=r"services\.offers.*pageTokens\.existingSecret"):
        render(values)


def test_a_disabled_service_needs_no_page_token_secret() -> None:
    values = _with(NO_SHARED_KEY, "offers", {"replicaCount": 3, "enabled": False})
    assert not [m for m in render(values) if "offers" in m["metadata"]["name"]]


# --- extraEnvFrom, extraVolumes, extraVolumeMounts: global and per service ---

EXTRAS: dict[str, Any] = {
    "extraEnvFrom": [{"secretRef": {"name": "bank-proxy-env"}}],
    "extraVolumes": [{"name": "bank-ca", "configMap": {"name": "bank-root-ca"}}],
    "extraVolumeMounts": [{"name": "bank-ca", "mountPath": "/etc/bank-ca", "readOnly": True}],
    "services": {
        "identity": {
            "extraEnvFrom": [{"configMapRef": {"name": "identity-tuning"}, "prefix": "ZHIKE_"}],
            "extraVolumes": [{"name": "watchlist", "secret": {"secretName": "sanctions-list"}}],
            "extraVolumeMounts": [
                {"name": "watchlist", "mountPath": "/etc/watchlist", "readOnly": True}
            ],
        }
    },
}


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "zhike-identity"), ("Job", "zhike-identity-migrate")]
)
def test_extra_env_from_volumes_and_mounts_reach_the_service_and_its_migration(
    kind: str, name: str
) -> None:
    spec = _workload(render(EXTRAS), kind, name)
    container = spec["containers"][0]
    # Global first, then the service's own; the chart's own configuration (the ConfigMap last
    # in the Deployment, `env` in the Job) wins for a name in both.
    extras = [
        {"secretRef": {"name": "bank-proxy-env"}},
        {"configMapRef": {"name": "identity-tuning"}, "prefix": "ZHIKE_"},
    ]
    chart_config = [{"configMapRef": {"name": "zhike-identity"}}] if kind == "Deployment" else []
    assert container["envFrom"] == extras + chart_config
    assert [v["name"] for v in spec["volumes"]][-2:] == ["bank-ca", "watchlist"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["bank-ca"] == "/etc/bank-ca"
    assert mounts["watchlist"] == "/etc/watchlist"


def test_workloads_with_extras_are_valid_kubernetes() -> None:
    for manifest in render(EXTRAS):
        if manifest["kind"] in {"Deployment", "Job"}:
            for version in validation_kube_versions():
                validate(manifest, version)


def test_a_service_gets_only_its_own_extras_and_the_global_ones() -> None:
    spec = _workload(render(EXTRAS), "Deployment", "zhike-offers")
    container = spec["containers"][0]
    assert {"secretRef": {"name": "bank-proxy-env"}} in container["envFrom"]
    assert {"configMapRef": {"name": "identity-tuning"}, "prefix": "ZHIKE_"} not in container[
        "envFrom"
    ]
    names = [v["name"] for v in spec["volumes"]]
    assert "bank-ca" in names
    assert "watchlist" not in names


def test_without_extras_nothing_is_added(default_objects: list[Manifest]) -> None:
    deployment = _workload(default_objects, "Deployment", "zhike-profile")
    assert deployment["containers"][0]["envFrom"] == [{"configMapRef": {"name": "zhike-profile"}}]
    job = _workload(default_objects, "Job", "zhike-profile-migrate")
    assert "envFrom" not in job["containers"][0]
    # The chart's own volumes only: /tmp, and the NATS, gRPC and PostgreSQL TLS files.
    assert [v["name"] for v in deployment["volumes"]] == [
        "tmp",
        "nats-nkey",
        "nats-tls",
        "grpc-tls",
        "database-ca",
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"extraEnvFrom": [{"secretRef": {"nme": "typo"}}]},
        {"extraEnvFrom": [{"secretRef": {"name": "x"}, "configMapRef": {"name": "y"}}]},
        {"extraVolumeMounts": [{"name": "no-path"}]},
        {"extraVolumes": [{"configMap": {"name": "unnamed"}}]},
        {"services": {"offers": {"extraEnvFrom": {"secretRef": {"name": "not-a-list"}}}}},
    ],
)
def test_malformed_extras_do_not_render(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render(values)


# --- A changed ConfigMap rolls the pods ---


def _pod_annotations(objects: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["annotations"]
        for m in objects
        if m["kind"] == "Deployment"
    }


def test_changed_auth_roles_roll_every_service() -> None:
    # The roles file is read once at start: a new roles.json reaches a pod only by a restart.
    before = _pod_annotations(render({"auth": {"roles": {"teller": ["identity.read"]}}}))
    after = _pod_annotations(
        render({"auth": {"roles": {"teller": ["identity.read", "profile.read"]}}})
    )
    for name in before:
        assert before[name]["checksum/config"] != after[name]["checksum/config"], name


def test_unchanged_configuration_keeps_the_pods(default_objects: list[Manifest]) -> None:
    assert _pod_annotations(render()) == _pod_annotations(default_objects)
