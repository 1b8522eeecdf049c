"""Default-deny NetworkPolicy plus explicit allows, and a PodDisruptionBudget, for every
service (S10)."""

from __future__ import annotations

from typing import Any

import pytest
from helm_python.errors import HelmRenderError

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
def test_service_policy_allows_only_dns_nats_postgres_otlp_the_idp_and_the_party_directory(
    default_objects: list[Manifest], service: str
) -> None:
    spec = _service_policy(default_objects, service)
    egress_ports = sorted(
        (port["protocol"], port["port"]) for rule in spec["egress"] for port in rule["ports"]
    )
    # Notifications also reaches identity's and the profile's gRPC port (one rule each).
    directory = [("TCP", 50051), ("TCP", 50051)] if service == "notifications" else []
    # 443: the identity provider's key set (auth.jwksUrl, set by the installation values).
    assert egress_ports == sorted(
        [
            ("TCP", 53),
            ("TCP", 443),
            ("TCP", 4222),
            ("TCP", 4317),
            ("TCP", 5432),
            ("UDP", 53),
            *directory,
        ]
    )
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


# Who may call each service's gRPC port among the release's own pods: notifications' pods (not
# its migration Job) call identity and the profile for addresses and preferences; no one else.
DIRECTORY_CALLERS = {"identity": {"zhike-notifications"}, "profile": {"zhike-notifications"}}


@pytest.mark.parametrize("service", SERVICES)
def test_the_grpc_port_admits_the_helm_test_pod_and_no_service_but_the_directory_caller(
    default_objects: list[Manifest], service: str
) -> None:
    grpc = _ingress_rule(_service_policy(default_objects, service), 50051)
    assert grpc is not None
    test_pod = _pod_labels(_by_name(default_objects, "Pod", "zhike-test-health"))
    assert any(_peer_admits(peer, test_pod, NAMESPACE) for peer in grpc["from"])
    callers = {
        workload["metadata"]["name"]
        for workload in default_objects
        if workload["kind"] in {"Deployment", "Job"}
        and any(_peer_admits(p, _pod_labels(workload), NAMESPACE) for p in grpc["from"])
    }
    assert callers == DIRECTORY_CALLERS.get(service, set())


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


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "notifications"])
def test_services_may_not_call_one_another(profile_objects: list[Manifest], service: str) -> None:
    egress_ports = [
        port["port"]
        for rule in _service_policy(profile_objects, service)["egress"]
        for port in rule["ports"]
    ]
    assert 50051 not in egress_ports


def test_notifications_reaches_the_grpc_port_of_identity_and_the_profile_only(
    profile_objects: list[Manifest],
) -> None:
    spec = _service_policy(profile_objects, "notifications")
    grpc_rules = [r for r in spec["egress"] if 50051 in [p["port"] for p in r["ports"]]]
    reached = {
        workload["metadata"]["name"]
        for workload in profile_objects
        if workload["kind"] in {"Deployment", "Job"}
        and any(
            _peer_admits(peer, _pod_labels(workload), NAMESPACE)
            for rule in grpc_rules
            for peer in rule["to"]
        )
    }
    assert reached == {"zhike-identity", "zhike-profile"}


def test_a_directory_outside_the_release_opens_no_path_to_its_services() -> None:
    objects = render(
        {
            "services": {
                "notifications": {
                    "directory": {
                        "identityAddress": "identity.core:443",
                        "profileAddress": "profile.core:443",
                    }
                }
            }
        }
    )
    config = _by_name(objects, "ConfigMap", "zhike-notifications")["data"]
    assert config["ZHIKE_IDENTITY_ADDRESS"] == "identity.core:443"
    egress = _service_policy(objects, "notifications")["egress"]
    assert 50051 not in [p["port"] for rule in egress for p in rule["ports"]]
    identity = _ingress_rule(_service_policy(objects, "identity"), 50051)
    assert identity is not None
    notifications = _pod_labels(_by_name(objects, "Deployment", "zhike-notifications"))
    assert not any(_peer_admits(p, notifications, NAMESPACE) for p in identity["from"])


def test_the_webhook_port_admits_only_the_configured_peers() -> None:
    ingress_controller = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
    }
    objects = render(
        {"services": {"notifications": {"webhooks": {"allowedFrom": [ingress_controller]}}}}
    )
    webhooks = _ingress_rule(_service_policy(objects, "notifications"), 8026)
    assert webhooks is not None
    assert webhooks["from"] == [ingress_controller]
    for service in ("identity", "profile", "offers"):
        assert _ingress_rule(_service_policy(objects, service), 8026) is None


def test_with_no_webhook_peer_configured_the_webhook_port_admits_no_one(
    profile_objects: list[Manifest],
) -> None:
    spec = _service_policy(profile_objects, "notifications")
    assert _ingress_rule(spec, 8026) is None
    assert all(rule.get("from", "absent") for rule in spec["ingress"])


def test_provider_egress_rules_are_added_to_notifications_only() -> None:
    providers = {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}
    objects = render({"services": {"notifications": {"providers": {"egress": [providers]}}}})
    assert providers in _service_policy(objects, "notifications")["egress"]
    for service in ("identity", "profile", "offers"):
        assert providers not in _service_policy(objects, service)["egress"]


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


def _extra_ports(service: str) -> list[str]:
    # Notifications' webhooks, for the ingress controller in front of the providers' calls.
    return ["webhooks"] if service == "notifications" else []


def test_the_service_exposes_the_grpc_port_and_notifications_its_webhooks(
    profile_objects: list[Manifest],
) -> None:
    assert _service_ports(profile_objects) == {
        f"zhike-{s}": ["grpc", *_extra_ports(s)] for s in SERVICES
    }


def test_the_service_adds_the_metrics_port_for_the_service_monitor_only_with_metrics() -> None:
    objects = render({"metrics": {"enabled": True}})
    assert _service_ports(objects) == {
        f"zhike-{s}": ["grpc", *_extra_ports(s), "metrics"] for s in SERVICES
    }


def test_helm_test_without_a_client_certificate_reaches_the_health_port_it_checks() -> None:
    # With TLS on the service port and no certificate for the helm test Pod, the Pod checks
    # the plaintext health port through the Service: then, and only then, it is on the Service
    # and admitted past the probe CIDRs.
    objects = render(
        {
            "grpcTls": {"enabled": True, "helmTest": {"existingSecret": ""}},
            "networkPolicy": {"ingress": {"probeCIDRs": ["10.0.0.0/16"]}},
            "services": {"notifications": {"directory": {"tls": {"existingSecret": "zhike-ca"}}}},
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
    spec = _service_policy(objects, "offers")
    assert _ingress_rule(spec, 50051) is None
    assert all(rule.get("from", "absent") for rule in spec["ingress"])
    # Identity: notifications' pods, and no one else.
    identity = _ingress_rule(_service_policy(objects, "identity"), 50051)
    assert identity is not None
    assert identity["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "zhike",
                    "app.kubernetes.io/instance": "zhike",
                    "app.kubernetes.io/component": "notifications",
                }
            }
        }
    ]


# --- The identity provider's key set (auth.jwksUrl): every service fetches it. ---

IDP_PEER = {"ipBlock": {"cidr": "198.51.100.7/32"}}


def _identity_provider(values: dict[str, Any]) -> dict[str, Any]:
    return {"networkPolicy": {"egress": {"identityProvider": values}}}


def test_a_key_set_url_opens_egress_to_the_identity_provider_from_every_service() -> None:
    # Without it the fetch fails, the services hold no key and answer every call
    # UNAUTHENTICATED, while their readiness stays SERVING.
    objects = render(_identity_provider({"port": 8443, "to": [IDP_PEER]}))
    rule = {"ports": [{"protocol": "TCP", "port": 8443}], "to": [IDP_PEER]}
    for service in SERVICES:
        assert rule in _service_policy(objects, service)["egress"], service
    # The migration Jobs and the helm test Pod verify no token.
    others = [
        p
        for p in _policies(objects)
        if p["metadata"]["name"] in ("zhike-migrations", "zhike-tests")
    ]
    assert len(others) == 2
    for policy in others:
        assert IDP_PEER not in [peer for r in policy["spec"]["egress"] for peer in r["to"]]


def test_a_key_set_url_without_an_identity_provider_peer_does_not_render() -> None:
    with pytest.raises(
        HelmRenderError,
        match=r"networkPolicy\.egress\.identityProvider\.to: required with auth\.jwksUrl",
    ):
        render(_identity_provider({"to": []}))


def test_without_network_policies_a_key_set_url_needs_no_identity_provider_peer() -> None:
    values = {"networkPolicy": {"enabled": False, "egress": {"identityProvider": {"to": []}}}}
    objects = render(values)
    assert _policies(objects) == []
    assert any(m["kind"] == "Deployment" for m in objects)


def test_a_key_set_from_a_config_map_needs_no_identity_provider_peer() -> None:
    values = {"auth": {"jwksUrl": "", "jwksConfigMap": {"name": "bank-jwks"}}}
    objects = render(values | _identity_provider({"to": []}))
    for service in SERVICES:
        egress = _service_policy(objects, service)["egress"]
        assert 443 not in [port["port"] for rule in egress for port in rule["ports"]]


def test_kind_trusts_a_key_set_config_map_and_opens_no_identity_provider_egress(
    kind_objects: list[Manifest],
) -> None:
    for service in SERVICES:
        egress = _service_policy(kind_objects, service)["egress"]
        assert 443 not in [port["port"] for rule in egress for port in rule["ports"]]
