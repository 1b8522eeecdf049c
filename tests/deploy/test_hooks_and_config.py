"""Migration hook Jobs, the helm test Pod, the service configuration contract and images."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from .chart import CHART_DIR, SERVICES, Manifest, render

DIGEST = "sha256:" + "ab" * 32


def _by_name(objects: list[Manifest], kind: str, name: str) -> Manifest:
    return next(m for m in objects if m["kind"] == kind and m["metadata"]["name"] == name)


def test_each_service_migrates_in_a_pre_install_and_pre_upgrade_hook(
    profile_objects: list[Manifest],
) -> None:
    jobs = [m for m in profile_objects if m["kind"] == "Job"]
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(
        f"zhike-{s}-migrate" for s in SERVICES
    )
    for job in jobs:
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["migrate"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    account = _by_name(profile_objects, "ServiceAccount", "zhike-migrations")
    assert account["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"
    assert all(
        j["spec"]["template"]["spec"]["serviceAccountName"] == "zhike-migrations" for j in jobs
    )


def test_migration_jobs_see_the_same_configuration_as_the_service(
    default_objects: list[Manifest],
) -> None:
    config = _by_name(default_objects, "ConfigMap", "zhike-profile")["data"]
    job = _by_name(default_objects, "Job", "zhike-profile-migrate")
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert {k: env[k] for k in config} == config


def test_helm_test_pod_health_checks_every_service_over_grpc(
    profile_objects: list[Manifest],
) -> None:
    pod = _by_name(profile_objects, "Pod", "zhike-test-health")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    commands = sorted(c["command"] for c in pod["spec"]["containers"])
    # Over TLS, verifying the service, where the services serve TLS (the production profile).
    identity = _by_name(profile_objects, "Deployment", "zhike-identity")
    env = identity["spec"]["template"]["spec"]["containers"][0]["env"]
    tls = ["--ca-file", "/etc/zhike/test-tls/ca.crt"] if "ZHIKE_TLS_CERT_FILE" in str(env) else []
    assert commands == sorted(
        ["zhike", "health", "--target", f"zhike-{s}:50051", *tls] for s in SERVICES
    )


def test_a_disabled_service_is_not_rendered_nor_tested() -> None:
    objects = render({"services": {"notifications": {"enabled": False}}})
    assert not [m for m in objects if "notifications" in m["metadata"]["name"]]
    pod = _by_name(objects, "Pod", "zhike-test-health")
    assert len(pod["spec"]["containers"]) == 3


def test_configuration_contract(default_objects: list[Manifest]) -> None:
    for service in SERVICES:
        data: dict[str, Any] = _by_name(default_objects, "ConfigMap", f"zhike-{service}")["data"]
        assert data["ZHIKE_GRPC_PORT"] == "50051"
        assert data["ZHIKE_HEALTH_PORT"] == "8086"
        assert data["ZHIKE_RUN_MIGRATIONS"] == "false"
        assert data["ZHIKE_NATS_URL"].startswith("tls://")
        assert data["ZHIKE_SHUTDOWN_GRACE_SECONDS"] == "20"
        assert data["OTEL_SERVICE_NAME"] == f"zhike-{service}"
        assert data["OTEL_TRACES_EXPORTER"] == "otlp"
        assert data["OTEL_METRICS_EXPORTER"] == "otlp"
        assert data["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
        assert "ZHIKE_NATS_CREDS_FILE" not in data
        deployment = _by_name(default_objects, "Deployment", f"zhike-{service}")
        spec = deployment["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > 20
        assert spec["containers"][0]["envFrom"] == [{"configMapRef": {"name": f"zhike-{service}"}}]


def test_images_use_registry_tag_and_digest() -> None:
    objects = render(
        {
            "image": {"registry": "registry.bank.example", "tag": "1.4.2"},
            "services": {"offers": {"image": {"digest": DIGEST}}},
        }
    )
    images = {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]["containers"][0]["image"]
        for m in objects
        if m["kind"] == "Deployment"
    }
    assert images["zhike-identity"] == "registry.bank.example/zhike/identity:1.4.2"
    assert images["zhike-offers"] == f"registry.bank.example/zhike/offers:1.4.2@{DIGEST}"


def test_default_image_tag_is_the_app_version(default_objects: list[Manifest]) -> None:
    deployment = _by_name(default_objects, "Deployment", "zhike-identity")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "zhike/identity:0.1.0"
    )


def test_monitoring_objects_need_the_prometheus_operator_api() -> None:
    # Offline rendering has no monitoring.coreos.com/v1 API, so even when enabled the
    # ServiceMonitor and PrometheusRule stay out, while the metrics port appears.
    objects = render(
        {
            "metrics": {
                "enabled": True,
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
            }
        }
    )
    assert not [m for m in objects if m["kind"] in {"ServiceMonitor", "PrometheusRule"}]
    service = _by_name(objects, "Service", "zhike-offers")
    assert "metrics" in [p["name"] for p in service["spec"]["ports"]]
    config = _by_name(objects, "ConfigMap", "zhike-offers")["data"]
    assert config["OTEL_METRICS_EXPORTER"] == "prometheus"


def test_monitoring_objects_render_where_the_operator_api_exists(tmp_path: Path) -> None:
    # helm-python-sdk cannot declare extra API versions for an offline render, so the
    # capability gate is switched on in a copy of the chart.
    chart = tmp_path / "zhike"
    shutil.copytree(CHART_DIR, chart)
    gate = '(.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")'
    for template in ("servicemonitor.yaml", "prometheusrule.yaml"):
        path = chart / "templates" / template
        text = path.read_text(encoding="utf-8")
        assert gate in text, template
        path.write_text(text.replace(gate, "true"), encoding="utf-8")
    values = {
        "metrics": {
            "enabled": True,
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        }
    }
    objects = render(values, chart_dir=chart)
    monitor = _by_name(objects, "ServiceMonitor", "zhike")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    rules = _by_name(objects, "PrometheusRule", "zhike")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "ZhikeServiceUnavailable",
        "ZhikeRPCErrorRateHigh",
        "ZhikeRPCLatencyHigh",
        "ZhikeOutboxBacklogOld",
        "ZhikeConsumerLagging",
        "ZhikeEventsDeadLettered",
        "ZhikeNATSDisconnected",
        "ZhikeStreamNearlyFull",
        "ZhikeTargetDown",
        "ZhikeTargetAbsent",
    }
    # Without metrics.enabled there is no port to scrape, so no ServiceMonitor either.
    values["metrics"]["enabled"] = False
    assert not [m for m in render(values, chart_dir=chart) if m["kind"] == "ServiceMonitor"]


def test_the_migration_network_policy_is_a_hook_created_before_the_jobs(
    profile_objects: list[Manifest],
) -> None:
    # Pre-install hooks run before any normal resource exists: under a platform default-deny
    # the first install's migration Jobs reach DNS and PostgreSQL only if their policy is a
    # hook too, created first (lower weight) and kept until the Jobs have run.
    policy = _by_name(profile_objects, "NetworkPolicy", "zhike-migrations")
    annotations = policy["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    for job in (m for m in profile_objects if m["kind"] == "Job"):
        job_annotations = job["metadata"]["annotations"]
        assert int(annotations["helm.sh/hook-weight"]) < int(job_annotations["helm.sh/hook-weight"])


def test_migration_jobs_carry_the_lock_and_statement_timeouts() -> None:
    def job_env(objects: list[Manifest]) -> dict[str, Any]:
        job = _by_name(objects, "Job", "zhike-offers-migrate")
        return {
            e["name"]: e.get("value")
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        }

    defaults = job_env(render())
    assert defaults["ZHIKE_MIGRATION_LOCK_TIMEOUT_SECONDS"] == "5"
    assert defaults["ZHIKE_MIGRATION_STATEMENT_TIMEOUT_SECONDS"] == "300"
    tuned = job_env(
        render({"migrations": {"lockTimeoutSeconds": 2, "statementTimeoutSeconds": 900}})
    )
    assert tuned["ZHIKE_MIGRATION_LOCK_TIMEOUT_SECONDS"] == "2"
    assert tuned["ZHIKE_MIGRATION_STATEMENT_TIMEOUT_SECONDS"] == "900"


# --- Hooks run before the release's own objects exist ---

ROLES = {"branch_teller": ["identity.party.read", "profile.read"]}


def _references(manifest: Manifest) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap, Secret and ServiceAccount a pod template uses."""
    spec = manifest["spec"]["template"]["spec"]
    found = {("ServiceAccount", spec.get("serviceAccountName", "default"))}
    volumes = list(spec.get("volumes", []))
    for volume in volumes:
        for source in volume.get("projected", {}).get("sources", []):
            volumes.append(source)
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            found.add(("Secret", volume["secret"].get("secretName") or volume["secret"]["name"]))
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                found.add(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                found.add(("Secret", source["secretRef"]["name"]))
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                found.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
            if "secretKeyRef" in ref:
                found.add(("Secret", ref["secretKeyRef"]["name"]))
    return found


@pytest.mark.parametrize(
    "values",
    [
        {"auth": {"roles": ROLES}},
        {"auth": {"roles": ROLES, "jwksUrl": "", "jwksConfigMap": {"name": "bank-jwks"}}},
    ],
    ids=["roles", "roles and a key-set ConfigMap"],
)
def test_migration_jobs_use_nothing_the_release_creates_after_the_hooks(
    values: dict[str, Any],
) -> None:
    # Pre-install hooks run before any ordinary object of the release exists: a Job mounting
    # one waits in ContainerCreating until its deadline, and the install hangs.
    objects = render(values)
    ordinary = {
        (m["kind"], m["metadata"]["name"])
        for m in objects
        if m["kind"] in {"ConfigMap", "Secret", "ServiceAccount"}
        and "helm.sh/hook" not in m["metadata"].get("annotations", {})
    }
    assert ("ConfigMap", "zhike-auth-roles") in ordinary
    jobs = [m for m in objects if m["kind"] == "Job"]
    assert len(jobs) == len(SERVICES)
    for job in jobs:
        assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
        assert _references(job) & ordinary == set(), job["metadata"]["name"]


def test_the_roles_file_reaches_the_services_but_not_the_migrations() -> None:
    # `migrate` never reads the roles: the Jobs neither mount the file nor name it.
    objects = render({"auth": {"roles": ROLES}})
    for service in SERVICES:
        for kind, name in (("Deployment", f"zhike-{service}"), ("Job", f"zhike-{service}-migrate")):
            spec = _by_name(objects, kind, name)["spec"]["template"]["spec"]
            volumes = [v["name"] for v in spec["volumes"]]
            mounts = [m["mountPath"] for m in spec["containers"][0]["volumeMounts"]]
            env = {e["name"] for e in spec["containers"][0].get("env", [])}
            if kind == "Deployment":
                assert "auth-roles" in volumes
                assert "/etc/zhike/auth/roles" in mounts
            else:
                assert "auth-roles" not in volumes
                assert "/etc/zhike/auth/roles" not in mounts
                assert "ZHIKE_AUTH_ROLES_FILE" not in env


# --- helm test borrows an enabled service's image and ServiceAccount ---

WITHOUT_IDENTITY: dict[str, Any] = {
    "services": {
        "identity": {"enabled": False},
        "notifications": {"directory": {"identityAddress": "identity.core:443"}},
    }
}
WITHOUT_IDENTITY_AND_PROFILE: dict[str, Any] = {
    "tests": {"imageFrom": "profile"},
    "services": {
        "identity": {"enabled": False},
        "profile": {"enabled": False},
        "notifications": {
            "directory": {
                "identityAddress": "identity.core:443",
                "profileAddress": "profile.core:443",
            }
        },
    },
}


@pytest.mark.parametrize(
    ("values", "checked"),
    [(WITHOUT_IDENTITY, 3), (WITHOUT_IDENTITY_AND_PROFILE, 2)],
    ids=["default imageFrom disabled", "imageFrom set to a disabled service"],
)
def test_helm_test_falls_back_to_an_enabled_service_when_image_from_is_disabled(
    values: dict[str, Any], checked: int
) -> None:
    # The disabled service has no ServiceAccount: the Pod would never be admitted.
    objects = render(values)
    pod = _by_name(objects, "Pod", "zhike-test-health")
    accounts = {m["metadata"]["name"] for m in objects if m["kind"] == "ServiceAccount"}
    assert pod["spec"]["serviceAccountName"] in accounts
    # The first enabled service by name, notifications: its image and its ServiceAccount.
    assert pod["spec"]["serviceAccountName"] == "zhike-notifications"
    assert {c["image"] for c in pod["spec"]["containers"]} == {"zhike/notifications:0.1.0"}
    assert len(pod["spec"]["containers"]) == checked


def test_helm_test_uses_the_image_from_service_while_it_is_enabled() -> None:
    pod = _by_name(render({"tests": {"imageFrom": "offers"}}), "Pod", "zhike-test-health")
    assert pod["spec"]["serviceAccountName"] == "zhike-offers"
    assert {c["image"] for c in pod["spec"]["containers"]} == {"zhike/offers:0.1.0"}
