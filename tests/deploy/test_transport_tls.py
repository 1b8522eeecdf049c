"""S1 in the chart: gRPC TLS (and mTLS) and PostgreSQL verify-full, with every certificate and CA
mounted from an existing Secret, the probes on the plaintext health port, and every rendered
object valid."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from .chart import (
    CRD_KINDS,
    SERVICES,
    Manifest,
    merge_values,
    name_of,
    pod_spec,
    render,
    validate,
    validation_kube_versions,
)

TLS_VALUES: dict[str, Any] = {
    "grpcTls": {
        "enabled": True,
        "clientCA": {"existingSecret": "zhike-client-ca"},
        "allowedClientNames": ["teller-gateway.bank.internal", "spiffe://bank/ns/channels/sa/app"],
        "helmTest": {"existingSecret": "zhike-helm-test-tls"},
    },
    "databaseTls": {"sslMode": "verify-full", "rootCA": {"existingSecret": "zhike-postgres-ca"}},
    # Notifications calls identity and the profile: it verifies them and, under mTLS, shows its
    # own client certificate.
    "services": {
        "notifications": {
            "directory": {
                "tls": {
                    "existingSecret": "zhike-notifications-client-tls",
                    "clientCertificate": True,
                }
            }
        }
    },
}
# TLS on the service port, without mTLS: notifications needs the CA only (and helm test has no
# certificate of its own).
TLS_ONLY_VALUES: dict[str, Any] = {
    "grpcTls": {"enabled": True, "helmTest": {"existingSecret": ""}},
    "services": {
        "notifications": {"directory": {"tls": {"existingSecret": "zhike-notifications-ca"}}}
    },
}


@pytest.fixture(scope="module")
def tls_objects() -> list[Manifest]:
    return render(TLS_VALUES)


def _one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    return next(m for m in objects if m["kind"] == kind and m["metadata"]["name"] == name)


def _container(manifest: Manifest) -> dict[str, Any]:
    spec = pod_spec(manifest)
    assert spec is not None
    container: dict[str, Any] = spec["containers"][0]
    return container


def _env(manifest: Manifest) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in _container(manifest).get("env", [])}


def _volumes(manifest: Manifest) -> dict[str, dict[str, Any]]:
    spec = pod_spec(manifest)
    assert spec is not None
    return {v["name"]: v for v in spec["volumes"]}


def _mounts(manifest: Manifest) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in _container(manifest)["volumeMounts"]}


@pytest.mark.parametrize("kube_version", validation_kube_versions())
def test_every_object_rendered_with_tls_is_valid_kubernetes(
    tls_objects: list[Manifest], kube_version: str
) -> None:
    invalid: list[str] = []
    for manifest in tls_objects:
        if manifest["kind"] in CRD_KINDS:
            continue
        try:
            validate(manifest, kube_version)
        except kubernetes_validate.ValidationError as error:
            invalid.append(f"{name_of(manifest)}: {error.message}")
    assert invalid == []


def test_each_service_serves_grpc_with_its_own_certificate_and_the_client_ca(
    tls_objects: list[Manifest],
) -> None:
    for service in SERVICES:
        deployment = _one(tls_objects, "Deployment", f"zhike-{service}")
        env = _env(deployment)
        assert env["ZHIKE_TLS_CERT_FILE"] == "/etc/zhike/grpc-tls/tls.crt"
        assert env["ZHIKE_TLS_KEY_FILE"] == "/etc/zhike/grpc-tls/tls.key"
        assert env["ZHIKE_TLS_CLIENT_CA_FILE"] == "/etc/zhike/grpc-client-ca/ca.crt"
        assert json.loads(env["ZHIKE_TLS_ALLOWED_CLIENT_NAMES"]) == [
            "teller-gateway.bank.internal",
            "spiffe://bank/ns/channels/sa/app",
        ]
        volumes = _volumes(deployment)
        assert volumes["grpc-tls"]["secret"]["secretName"] == f"zhike-{service}-grpc-tls"
        assert volumes["grpc-client-ca"]["secret"]["secretName"] == "zhike-client-ca"
        mounts = _mounts(deployment)
        for name, path in (
            ("grpc-tls", "/etc/zhike/grpc-tls"),
            ("grpc-client-ca", "/etc/zhike/grpc-client-ca"),
        ):
            assert mounts[name]["mountPath"] == path
            assert mounts[name]["readOnly"] is True
            # A subPath mount would never see a renewed Secret; the service reloads the files.
            assert "subPath" not in mounts[name]


def test_notifications_calls_identity_and_the_profile_over_mtls(
    tls_objects: list[Manifest],
) -> None:
    deployment = _one(tls_objects, "Deployment", "zhike-notifications")
    env = _env(deployment)
    assert env["ZHIKE_DIRECTORY_TLS_CA_FILE"] == "/etc/zhike/directory-tls/ca.crt"
    assert env["ZHIKE_DIRECTORY_TLS_CERT_FILE"] == "/etc/zhike/directory-tls/tls.crt"
    assert env["ZHIKE_DIRECTORY_TLS_KEY_FILE"] == "/etc/zhike/directory-tls/tls.key"
    volume = _volumes(deployment)["directory-tls"]["secret"]
    assert volume["secretName"] == "zhike-notifications-client-tls"
    assert [item["key"] for item in volume["items"]] == ["ca.crt", "tls.crt", "tls.key"]
    mount = _mounts(deployment)["directory-tls"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/zhike/directory-tls", True)
    assert "subPath" not in mount
    # The migrations call no one: the Job's settings must not point at files it lacks.
    job = _one(tls_objects, "Job", "zhike-notifications-migrate")
    assert "directory-tls" not in _volumes(job)
    assert not [n for n in _env(job) if n.startswith("ZHIKE_DIRECTORY_TLS_")]


def test_probes_stay_on_the_plaintext_health_port(tls_objects: list[Manifest]) -> None:
    for service in SERVICES:
        container = _container(_one(tls_objects, "Deployment", f"zhike-{service}"))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == ports["health"] != ports["grpc"]


def test_postgres_verify_full_reaches_services_and_migrations(
    tls_objects: list[Manifest],
) -> None:
    for service in SERVICES:
        config = _one(tls_objects, "ConfigMap", f"zhike-{service}")["data"]
        assert config["ZHIKE_DATABASE_SSL_MODE"] == "verify-full"
        assert config["ZHIKE_DATABASE_SSL_ROOT_CERT"] == "/etc/zhike/database-ca/ca.crt"
        for workload in (
            _one(tls_objects, "Deployment", f"zhike-{service}"),
            _one(tls_objects, "Job", f"zhike-{service}-migrate"),
        ):
            assert _volumes(workload)["database-ca"]["secret"]["secretName"] == "zhike-postgres-ca"
            assert _mounts(workload)["database-ca"]["mountPath"] == "/etc/zhike/database-ca"
        job = _one(tls_objects, "Job", f"zhike-{service}-migrate")
        assert _env(job)["ZHIKE_DATABASE_SSL_MODE"] == "verify-full"
        # The migrations serve nothing: no server certificate in the Job.
        assert "grpc-tls" not in _volumes(job)
        assert "ZHIKE_TLS_CERT_FILE" not in _env(job)


def test_helm_test_checks_each_service_over_mtls(tls_objects: list[Manifest]) -> None:
    pod = _one(tls_objects, "Pod", "zhike-test-health")
    for container in pod["spec"]["containers"]:
        command = container["command"]
        assert command[command.index("--target") + 1].endswith(":50051")
        assert command[command.index("--ca-file") + 1] == "/etc/zhike/test-tls/ca.crt"
        assert command[command.index("--cert-file") + 1] == "/etc/zhike/test-tls/tls.crt"
    volume = _volumes(pod)["test-tls"]
    assert volume["secret"]["secretName"] == "zhike-helm-test-tls"


def test_without_a_helm_test_certificate_helm_test_uses_the_health_port() -> None:
    objects = render(TLS_ONLY_VALUES)
    pod = _one(objects, "Pod", "zhike-test-health")
    targets = sorted(c["command"][3] for c in pod["spec"]["containers"])
    assert targets == sorted(f"zhike-{s}:8086" for s in SERVICES)
    assert "test-tls" not in _volumes(pod)


# gRPC in plaintext and PostgreSQL as the URL says: rendered only when allowInsecure accepts both
# (tests/deploy/test_transport_security.py).
PLAINTEXT_VALUES: dict[str, Any] = {
    "allowInsecure": {"plaintextGrpc": True, "unverifiedDatabase": True},
    "grpcTls": {"enabled": False, "helmTest": {"existingSecret": ""}},
    "databaseTls": {"sslMode": "", "rootCA": {"existingSecret": ""}},
    "services": {"notifications": {"directory": {"tls": {"existingSecret": ""}}}},
}


def test_tls_is_off_unless_configured() -> None:
    for manifest in render(PLAINTEXT_VALUES):
        if pod_spec(manifest) is None:
            continue
        assert not {"grpc-tls", "grpc-client-ca", "database-ca"} & set(_volumes(manifest))
        assert not [n for n in _env(manifest) if n.startswith(("ZHIKE_TLS_", "ZHIKE_DATABASE_SSL"))]


# (case, values, error, what the refusal names: "" for the schema's refusals)
BAD_TLS_VALUES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (
        "allow-list without a client CA",
        merge_values(TLS_ONLY_VALUES, {"grpcTls": {"allowedClientNames": ["a.bank"]}}),
        helm.HelmError,
        "grpcTls.allowedClientNames needs grpcTls.clientCA.existingSecret",
    ),
    (
        "client CA with TLS off",
        merge_values(
            PLAINTEXT_VALUES, {"grpcTls": {"clientCA": {"existingSecret": "zhike-client-ca"}}}
        ),
        helm.HelmError,
        "grpcTls.clientCA and grpcTls.allowedClientNames need grpcTls.enabled=true",
    ),
    (
        "a service without its server Secret",
        merge_values(TLS_ONLY_VALUES, {"grpcTls": {"serverSecrets": {"offers": ""}}}),
        helm.HelmValuesError,
        "",
    ),
    (
        "a server Secret for an unknown service",
        {"grpcTls": {"serverSecrets": {"payments": "x"}}},
        helm.HelmValuesError,
        "",
    ),
    (
        "TLS without the CA notifications verifies identity and the profile with",
        {
            "grpcTls": {"enabled": True},
            "services": {"notifications": {"directory": {"tls": {"existingSecret": ""}}}},
        },
        helm.HelmError,
        "services.notifications.directory.tls.existingSecret: required with grpcTls.enabled",
    ),
    (
        "mTLS without a client certificate for notifications",
        {
            "grpcTls": {"enabled": True, "clientCA": {"existingSecret": "zhike-client-ca"}},
            "services": {"notifications": {"directory": {"tls": {"existingSecret": "ca"}}}},
        },
        helm.HelmError,
        "services.notifications.directory.tls.clientCertificate: required with grpcTls.clientCA",
    ),
    (
        "verify-full without a CA",
        {"databaseTls": {"sslMode": "verify-full", "rootCA": {"existingSecret": ""}}},
        helm.HelmError,
        "databaseTls.sslMode=verify-full needs databaseTls.rootCA.existingSecret",
    ),
    ("unknown sslmode", {"databaseTls": {"sslMode": "verify"}}, helm.HelmValuesError, ""),
    (
        "a CA the sslmode ignores",
        {
            "allowInsecure": {"unverifiedDatabase": True},
            "databaseTls": {"sslMode": "require", "rootCA": {"existingSecret": "ca"}},
        },
        helm.HelmError,
        "databaseTls.rootCA is used only with databaseTls.sslMode verify-ca or verify-full",
    ),
]


@pytest.mark.parametrize(
    ("case", "values", "error", "named"),
    BAD_TLS_VALUES,
    ids=[case for case, _, _, _ in BAD_TLS_VALUES],
)
def test_inconsistent_tls_values_do_not_render(
    case: str, values: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=re.escape(named) if named else None):
        render(values)
