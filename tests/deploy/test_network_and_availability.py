"""Default-deny NetworkPolicy plus explicit allows, and a PodDisruptionBudget, for every
service (S10)."""

from __future__ import annotations

from typing import Any

import pytest

from .chart import NAMESPACE, SERVICES, Manifest, render


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
def test_service_policy_allows_only_dns_nats_postgres_and_otlp(
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


# --- Lateral movement (issue 10, defect 4): each port admits only the callers it serves. ---

NATS_SERVER_POD = {
    "app.kubernetes.io/name": "nats",
    "app.kubernetes.io/instance": "nats",
    "app.kubernetes.io/component": "nats",
}
NATS_BOX_POD = {
    "app.kubernetes.io/name": "nats",
    "app.kubernetes.io/instance": "nats",
    "app.kubernetes.io/component": "nats-box",
}


def _peer_admits(peer: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    """Whether a NetworkPolicyPeer admits a pod with these labels in this namespace (a policy
    of the release namespace; ipBlocks name no pod)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": namespace}
        if not _selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif namespace != NAMESPACE:
        return False
    return "podSelector" not in peer or _selects(peer["podSelector"], labels)


def _ingress_rule(spec: dict[str, Any], port: int) -> dict[str, Any] | None:
    rules = [r for r in spec.get("ingress", []) if port in [p["port"] for p in r["ports"]]]
    assert len(rules) <= 1
    return rules[0] if rules else None


def _by_name(objects: list[Manifest], kind: str, name: str) -> Manifest:
    return next(m for m in objects if m["kind"] == kind and m["metadata"]["name"] == name)


@pytest.mark.parametrize("service", SERVICES)
def test_the_grpc_port_admits_the_helm_test_pod_but_not_the_other_services(
    default_objects: list[Manifest], service: str
) -> None:
    grpc = _ingress_rule(_service_policy(default_objects, service), 50051)
    assert grpc is not None
    test_pod = _pod_labels(_by_name(default_objects, "Pod", "zhike-test-health"))
    assert any(_peer_admits(peer, test_pod, NAMESPACE) for peer in grpc["from"])
    for workload in (m for m in default_objects if m["kind"] in {"Deployment", "Job"}):
        labels = _pod_labels(workload)
        admitted = [p for p in grpc["from"] if _peer_admits(p, labels, NAMESPACE)]
        assert admitted == [], f"{workload['metadata']['name']} may call {service}"


def test_the_grpc_port_admits_the_configured_channels() -> None:
    objects = render(
        {
            "networkPolicy": {
                "ingress": {
                    "allowedNamespaces": ["channels"],
                    "allowedPodSelectors": [{"app": "branch-gateway"}],
                }
            }
        }
    )
    grpc = _ingress_rule(_service_policy(objects, "profile"), 50051)
    assert grpc is not None
    assert any(_peer_admits(p, {"app": "mobile-bff"}, "channels") for p in grpc["from"])
    assert any(_peer_admits(p, {"app": "branch-gateway"}, NAMESPACE) for p in grpc["from"])
    assert not any(_peer_admits(p, {"app": "mobile-bff"}, NAMESPACE) for p in grpc["from"])
    assert not any(_peer_admits(p, {"app": "x"}, "elsewhere") for p in grpc["from"])


@pytest.mark.parametrize("service", SERVICES)
def test_services_may_not_call_one_another(profile_objects: list[Manifest], service: str) -> None:
    egress_ports = [
        port["port"]
        for rule in _service_policy(profile_objects, service)["egress"]
        for port in rule["ports"]
    ]
    assert 50051 not in egress_ports


def test_an_empty_metrics_allow_list_opens_the_metrics_port_to_no_one() -> None:
    objects = render({"metrics": {"enabled": True, "allowedNamespaces": []}})
    for service in SERVICES:
        spec = _service_policy(objects, service)
        assert _ingress_rule(spec, 9464) is None
        # `from: null` (or an empty list) would admit every source.
        assert all(rule.get("from", "absent") for rule in spec["ingress"])


def test_the_metrics_port_admits_only_the_allowed_namespaces() -> None:
    objects = render({"metrics": {"enabled": True}})
    metrics = _ingress_rule(_service_policy(objects, "identity"), 9464)
    assert metrics is not None
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def _service_ports(objects: list[Manifest]) -> dict[str, list[str]]:
    return {
        m["metadata"]["name"]: [p["name"] for p in m["spec"]["ports"]]
        for m in objects
        if m["kind"] == "Service"
    }


def test_the_service_exposes_only_the_grpc_port(profile_objects: list[Manifest]) -> None:
    assert _service_ports(profile_objects) == {f"zhike-{s}": ["grpc"] for s in SERVICES}


def test_the_service_adds_the_metrics_port_for_the_service_monitor_only_with_metrics() -> None:
    objects = render({"metrics": {"enabled": True}})
    assert _service_ports(objects) == {f"zhike-{s}": ["grpc", "metrics"] for s in SERVICES}


def test_helm_test_without_a_client_certificate_reaches_the_health_port_it_checks() -> None:
    # With TLS on the service port and no certificate for the helm test Pod, the Pod checks
    # the plaintext health port through the Service: then, and only then, it is on the Service
    # and admitted past the probe CIDRs.
    objects = render(
        {
            "grpcTls": {"enabled": True},
            "networkPolicy": {"ingress": {"probeCIDRs": ["10.0.0.0/16"]}},
        }
    )
    assert _service_ports(objects)["zhike-offers"] == ["grpc", "health"]
    test_pod = _pod_labels(_by_name(objects, "Pod", "zhike-test-health"))
    health = _ingress_rule(_service_policy(objects, "offers"), 8086)
    assert health is not None
    assert any(_peer_admits(p, test_pod, NAMESPACE) for p in health["from"])
    assert {"ipBlock": {"cidr": "10.0.0.0/16"}} in health["from"]
    deployment = _pod_labels(_by_name(objects, "Deployment", "zhike-identity"))
    assert not any(_peer_admits(p, deployment, NAMESPACE) for p in health["from"])


@pytest.mark.parametrize("service", SERVICES)
def test_nats_egress_reaches_the_nats_servers_but_not_nats_box(
    profile_objects: list[Manifest], service: str
) -> None:
    spec = _service_policy(profile_objects, service)
    nats = next(r for r in spec["egress"] if r["ports"][0]["port"] == 4222)
    assert any(_peer_admits(p, NATS_SERVER_POD, "nats") for p in nats["to"])
    assert not any(_peer_admits(p, NATS_BOX_POD, "nats") for p in nats["to"])


def test_with_no_caller_configured_the_grpc_port_admits_no_one() -> None:
    objects = render({"tests": {"enabled": False}})
    spec = _service_policy(objects, "identity")
    assert _ingress_rule(spec, 50051) is None
    assert all(rule.get("from", "absent") for rule in spec["ingress"])
