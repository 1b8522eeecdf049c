"""helm lint --strict and render for both profiles, and every rendered object valid against
the Kubernetes schemas of the declared minimum kubeVersion and of the newest one shipped."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from .chart import (
    CRD_KINDS,
    SERVICES,
    Manifest,
    declared_min_kube_version,
    lint_problems,
    name_of,
    notes,
    validate,
    validation_kube_versions,
)


def test_helm_lint_strict_passes_with_default_values() -> None:
    assert lint_problems() == []


def test_helm_lint_strict_passes_with_kind_values(kind_values: dict[str, Any]) -> None:
    # As `make deploy` installs them: the kind values alone over the chart's defaults.
    assert lint_problems(kind_values, installation_values=False) == []


def test_helm_lint_reports_values_that_break_the_schema() -> None:
    assert lint_problems({"nats": {"streamReplicas": "three"}}) != []


def test_chart_declares_kube_version_lower_bound() -> None:
    assert declared_min_kube_version() == "1.27.0"


@pytest.mark.parametrize("kube_version", validation_kube_versions())
def test_every_rendered_object_is_valid_kubernetes(
    profile_objects: list[Manifest], kube_version: str
) -> None:
    invalid: list[str] = []
    for manifest in profile_objects:
        if manifest["kind"] in CRD_KINDS:
            continue
        try:
            validate(manifest, kube_version)
        except kubernetes_validate.ValidationError as error:
            invalid.append(f"{name_of(manifest)}: {error.message}")
    assert invalid == []


def test_schema_validation_catches_an_unknown_field(default_objects: list[Manifest]) -> None:
    deployment = next(m for m in default_objects if m["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, declared_min_kube_version())


def test_each_service_renders_its_full_set_of_objects(profile_objects: list[Manifest]) -> None:
    by_kind_component: set[tuple[str, str]] = {
        (m["kind"], m["metadata"]["labels"].get("app.kubernetes.io/component", ""))
        for m in profile_objects
    }
    for service in SERVICES:
        for kind in (
            "Deployment",
            "Service",
            "ServiceAccount",
            "ConfigMap",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ):
            assert (kind, service) in by_kind_component, f"{kind} missing for {service}"
        assert ("Job", f"{service}-migrate") in by_kind_component


def test_every_object_carries_the_standard_labels(profile_objects: list[Manifest]) -> None:
    required = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/part-of",
        "helm.sh/chart",
    }
    for manifest in profile_objects:
        missing = required - set(manifest["metadata"].get("labels", {}))
        assert not missing, f"{name_of(manifest)} lacks {missing}"


def test_services_expose_grpc_with_app_protocol(profile_objects: list[Manifest]) -> None:
    # The gRPC port, and notifications' webhook port (tests/deploy/test_network_and_availability.py
    # says when others join).
    services = [m for m in profile_objects if m["kind"] == "Service"]
    assert len(services) == len(SERVICES)
    grpc = {
        "name": "grpc",
        "port": 50051,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    webhooks = {
        "name": "webhooks",
        "port": 8026,
        "targetPort": "webhooks",
        "protocol": "TCP",
        "appProtocol": "http",
    }
    for service in services:
        expected = (
            [grpc, webhooks] if service["metadata"]["name"] == "zhike-notifications" else [grpc]
        )
        assert service["spec"]["ports"] == expected


def test_service_accounts_mount_no_token(profile_objects: list[Manifest]) -> None:
    accounts = [m for m in profile_objects if m["kind"] == "ServiceAccount"]
    assert accounts
    assert all(a["automountServiceAccountToken"] is False for a in accounts)


def test_notes_name_every_service_and_explain_grpcurl_without_reflection() -> None:
    text = notes()
    for service in SERVICES:
        assert f"zhike-{service}.zhike.svc:50051" in text
    assert "reflection is OFF" in text
    assert "-import-path proto" in text


def test_notes_offer_grpcurl_list_when_reflection_is_on() -> None:
    assert "grpcurl -plaintext localhost:50051 list" in notes({"config": {"grpcReflection": True}})
