"""Default-deny NetworkPolicy plus explicit allows, and a PodDisruptionBudget, for every
service (S10)."""

from __future__ import annotations

from typing import Any

import pytest

from .chart import SERVICES, Manifest, render


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and In expressions) selects a label set."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        if expression["operator"] != "In":
            raise AssertionError(f"unexpected operator {expression['operator']}")
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(manifest: Manifest) -> dict[str, str]:
    if manifest["kind"] == "Pod":
        labels: dict[str, str] = manifest["metadata"]["labels"]
        return labels
    template_labels: dict[str, str] = manifest["spec"]["template"]["metadata"]["labels"]
    return template_labels


def _policies(objects: list[Manifest]) -> list[Manifest]:
    return [m for m in objects if m["kind"] == "NetworkPolicy"]


def test_namespace_default_deny_covers_ingress_and_egress(
    profile_objects: list[Manifest],
) -> None:
    deny = [
        p
        for p in _policies(profile_objects)
        if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
    ]
    assert len(deny) == 1
    assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "egress" not in deny[0]["spec"]


def test_every_pod_is_selected_by_an_allow_policy_for_ingress_and_egress(
    profile_objects: list[Manifest],
) -> None:
    allows = [p for p in _policies(profile_objects) if p["spec"]["podSelector"] != {}]
    workloads = [m for m in profile_objects if m["kind"] in {"Deployment", "Job", "Pod"}]
    for workload in workloads:
        labels = _pod_labels(workload)
        selecting = [p for p in allows if _selects(p["spec"]["podSelector"], labels)]
        assert len(selecting) == 1, f"{workload['metadata']['name']}: {len(selecting)} policies"
        assert sorted(selecting[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]


def _service_policy(objects: list[Manifest], service: str) -> dict[str, Any]:
    policy = next(p for p in _policies(objects) if p["metadata"]["name"] == f"zhike-{service}")
    spec: dict[str, Any] = policy["spec"]
    return spec


@pytest.mark.parametrize("service", SERVICES)
def test_service_policy_allows_only_dns_nats_postgres_otlp_and_peers(
    default_objects: list[Manifest], service: str
) -> None:
    spec = _service_policy(default_objects, service)
    egress_ports = sorted(
        (port["protocol"], port["port"]) for rule in spec["egress"] for port in rule["ports"]
    )
    assert egress_ports == [
        ("TCP", 53),
        ("TCP", 4222),
        ("TCP", 4317),
        ("TCP", 5432),
        ("TCP", 50051),
        ("UDP", 53),
    ]
    assert all(rule.get("to") for rule in spec["egress"]), "an egress rule allows any peer"
    dns = next(rule for rule in spec["egress"] if rule["ports"][0]["port"] == 53)
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    ingress_ports = sorted(rule["ports"][0]["port"] for rule in spec["ingress"])
    assert ingress_ports == [8086, 50051]
    grpc = next(rule for rule in spec["ingress"] if rule["ports"][0]["port"] == 50051)
    assert grpc["from"], "the gRPC port must name its callers"


def test_allowed_client_namespaces_reach_the_grpc_port_only() -> None:
    objects = render({"networkPolicy": {"ingress": {"allowedNamespaces": ["channels"]}}})
    spec = _service_policy(objects, "profile")
    grpc = next(rule for rule in spec["ingress"] if rule["ports"][0]["port"] == 50051)
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "channels"}}} in (
        grpc["from"]
    )
    health = next(rule for rule in spec["ingress"] if rule["ports"][0]["port"] == 8086)
    assert "channels" not in str(health)


def test_probe_cidrs_restrict_the_health_port() -> None:
    objects = render({"networkPolicy": {"ingress": {"probeCIDRs": ["10.0.0.0/16"]}}})
    health = next(
        rule
        for rule in _service_policy(objects, "offers")["ingress"]
        if rule["ports"][0]["port"] == 8086
    )
    assert health["from"] == [{"ipBlock": {"cidr": "10.0.0.0/16"}}]


def test_no_otlp_egress_without_an_endpoint(kind_objects: list[Manifest]) -> None:
    spec = _service_policy(kind_objects, "identity")
    assert 4317 not in [port["port"] for rule in spec["egress"] for port in rule["ports"]]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_pod_disruption_budget(
    profile_objects: list[Manifest], service: str
) -> None:
    deployment = next(
        m
        for m in profile_objects
        if m["kind"] == "Deployment" and m["metadata"]["name"] == f"zhike-{service}"
    )
    budgets = [
        m
        for m in profile_objects
        if m["kind"] == "PodDisruptionBudget"
        and _selects(m["spec"]["selector"], _pod_labels(deployment))
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"]["maxUnavailable"] == 1


def test_default_replicas_survive_a_voluntary_disruption(default_objects: list[Manifest]) -> None:
    for deployment in (m for m in default_objects if m["kind"] == "Deployment"):
        assert deployment["spec"]["replicas"] >= 2
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_autoscaling_replaces_fixed_replicas() -> None:
    objects = render({"services": {"notifications": {"autoscaling": {"enabled": True}}}})
    hpas = [m for m in objects if m["kind"] == "HorizontalPodAutoscaler"]
    assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["zhike-notifications"]
    deployment = next(
        m
        for m in objects
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "zhike-notifications"
    )
    assert "replicas" not in deployment["spec"]
