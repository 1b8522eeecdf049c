"""Transport security of the production profile (RELIABILITY S1, S9): the chart refuses to render
a service without its own NATS identity, NATS without TLS, gRPC without TLS, or PostgreSQL
short of verify-full, naming the value to set and the one `allowInsecure` flag that accepts its
absence; every flag relaxes its own check only. A secure render carries each into the pods that
use it, and every service's settings start from it. The kind cluster accepts only what it
really lacks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pytest
from helm_python.errors import HelmRenderError

from .chart import (
    KIND_DIR,
    KIND_VALUES,
    REPO_ROOT,
    SERVICES,
    Manifest,
    load_yaml_file,
    merge_values,
    notes,
    pod_spec,
    render,
)
from .service_settings import pod_environment, pod_settings

RUNBOOK = REPO_ROOT / "docs" / "operations.md"
POD_KINDS = ("Deployment", "Job")


@dataclass(frozen=True)
class Relaxation:
    """One value the production profile requires and the allowInsecure flag that waives it."""

    flag: str
    # Layered over the tests' installation values: the production values without it.
    without: dict[str, Any]
    # What the refusal names as the value to set.
    named: str
    # The variable the secure value sets, the Secret (`{service}` filled in) holding the file it
    # names, and the pods that get it (the migration Jobs serve no gRPC).
    variable: str
    secret: str
    kinds: tuple[str, ...] = POD_KINDS
    # Further variables the secure value sets, with their values.
    plain: dict[str, str] = field(default_factory=dict)


RELAXATIONS = [
    Relaxation(
        flag="anonymousNats",
        without={"services": {s: {"natsNkeySeed": {"existingSecret": ""}} for s in SERVICES}},
        named="services.identity.natsNkeySeed.existingSecret",
        variable="ZHIKE_NATS_NKEY_SEED_FILE",
        secret="zhike-nats-{service}",
    ),
    Relaxation(
        flag="plaintextNats",
        without={
            "nats": {"url": "nats://nats.nats.svc.cluster.local:4222"},
            "natsTls": {"enabled": False, "existingSecret": ""},
        },
        named="natsTls.enabled",
        variable="ZHIKE_NATS_TLS_CA_FILE",
        secret="zhike-nats-tls",
        plain={"ZHIKE_NATS_URL": "tls://nats.nats.svc.cluster.local:4222"},
    ),
    Relaxation(
        flag="plaintextGrpc",
        without={
            "grpcTls": {"enabled": False},
            "services": {"notifications": {"directory": {"tls": {"existingSecret": ""}}}},
        },
        named="grpcTls.enabled",
        variable="ZHIKE_TLS_CERT_FILE",
        secret="zhike-{service}-grpc-tls",
        kinds=("Deployment",),
    ),
    Relaxation(
        flag="unverifiedDatabase",
        without={"databaseTls": {"sslMode": "", "rootCA": {"existingSecret": ""}}},
        named="databaseTls.sslMode",
        variable="ZHIKE_DATABASE_SSL_ROOT_CERT",
        secret="zhike-postgres-ca",
        plain={"ZHIKE_DATABASE_SSL_MODE": "verify-full"},
    ),
]
FLAGS = [r.flag for r in RELAXATIONS]


def _allowing(values: dict[str, Any], *flags: str) -> dict[str, Any]:
    return merge_values(values, {"allowInsecure": dict.fromkeys(flags, True)})


def _pods(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(service, manifest) of every Deployment and migration Job."""
    return [
        (m["metadata"]["name"].removeprefix("zhike-").removesuffix("-migrate"), m)
        for m in objects
        if m["kind"] in POD_KINDS
    ]


def _mounted_secret(manifest: Manifest, path: str) -> tuple[str, bool]:
    """The Secret whose volume puts this file in the first container, and whether read-only."""
    spec = pod_spec(manifest)
    assert spec is not None
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in spec["containers"][0]["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        for item in secret["items"]:
            if str(PurePosixPath(mount["mountPath"]) / item["path"]) == path:
                assert "subPath" not in mount
                return secret["secretName"], bool(mount.get("readOnly"))
    raise AssertionError(f"{path} is not mounted in {manifest['metadata']['name']}")


@pytest.mark.parametrize("relaxation", RELAXATIONS, ids=FLAGS)
def test_without_it_the_production_profile_does_not_render(relaxation: Relaxation) -> None:
    with pytest.raises(HelmRenderError) as refused:
        render(relaxation.without)
    message = str(refused.value)
    assert relaxation.named in message
    assert f"allowInsecure.{relaxation.flag}=true" in message
    assert re.search(r'docs/operations\.md, \\?"Transport security', message), message


@pytest.mark.parametrize("relaxation", RELAXATIONS, ids=FLAGS)
def test_the_other_escapes_do_not_waive_it(relaxation: Relaxation) -> None:
    others = [flag for flag in FLAGS if flag != relaxation.flag]
    with pytest.raises(HelmRenderError, match=re.escape(f"allowInsecure.{relaxation.flag}=true")):
        render(_allowing(relaxation.without, *others))


@pytest.mark.parametrize("relaxation", RELAXATIONS, ids=FLAGS)
def test_with_its_escape_it_renders_without_it(relaxation: Relaxation) -> None:
    objects = render(_allowing(relaxation.without, relaxation.flag))
    pods = _pods(objects)
    assert len(pods) == 2 * len(SERVICES)
    for service, pod in pods:
        environment = pod_environment(pod, objects)
        assert relaxation.variable not in environment, (service, pod["kind"])
        for variable, value in relaxation.plain.items():
            assert environment.get(variable) != value, (service, pod["kind"], variable)


@pytest.mark.parametrize("relaxation", RELAXATIONS, ids=FLAGS)
def test_the_secure_value_reaches_every_pod_that_uses_it(
    default_objects: list[Manifest], relaxation: Relaxation
) -> None:
    pods = _pods(default_objects)
    assert len(pods) == 2 * len(SERVICES)
    for service, pod in pods:
        environment = pod_environment(pod, default_objects)
        if pod["kind"] not in relaxation.kinds:
            assert relaxation.variable not in environment, (service, pod["kind"])
            continue
        secret = relaxation.secret.format(service=service)
        assert _mounted_secret(pod, environment[relaxation.variable]) == (secret, True)
        for variable, value in relaxation.plain.items():
            assert environment[variable] == value, (service, pod["kind"], variable)


def test_the_secure_values_are_in_the_config_and_the_pods(default_objects: list[Manifest]) -> None:
    # The evidence of the review: a grep over the rendered ConfigMaps and Deployments for these
    # names found nothing.
    text = str([m for m in default_objects if m["kind"] in ("ConfigMap", "Deployment")])
    for name in ("NATS_NKEY", "NATS_TLS", "DATABASE_SSL", "ZHIKE_TLS"):
        assert name in text, name


@pytest.mark.parametrize("kind", POD_KINDS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_service_starts_with_the_secure_values(
    default_objects: list[Manifest], service: str, kind: str
) -> None:
    name = f"zhike-{service}" if kind == "Deployment" else f"zhike-{service}-migrate"
    workload = next(
        m for m in default_objects if m["kind"] == kind and m["metadata"]["name"] == name
    )
    settings = pod_settings(service, workload, default_objects)
    assert settings.nats_nkey_seed_file is not None
    assert settings.nats_creds_file is None
    assert settings.nats_url == "tls://nats.nats.svc.cluster.local:4222"
    assert settings.nats_tls_ca_file is not None
    assert settings.database_ssl_mode == "verify-full"
    assert settings.database_ssl_root_cert is not None
    if kind == "Deployment":
        assert (settings.tls_cert_file, settings.tls_key_file) != (None, None)
    else:
        # The migrations serve nothing.
        assert settings.tls_cert_file is None
    if service == "notifications" and kind == "Deployment":
        # It verifies identity and the profile before it sends them its dispatcher token.
        assert settings.directory_tls_ca_file is not None


def test_a_nats_creds_file_is_an_identity_too() -> None:
    objects = render(
        {
            "services": {
                "offers": {
                    "natsNkeySeed": {"existingSecret": ""},
                    "natsCredentials": {"existingSecret": "zhike-nats-offers-creds"},
                }
            }
        }
    )
    for service, pod in _pods(objects):
        if service == "offers":
            environment = pod_environment(pod, objects)
            secret = _mounted_secret(pod, environment["ZHIKE_NATS_CREDS_FILE"])
            assert secret == ("zhike-nats-offers-creds", True)
            assert "ZHIKE_NATS_NKEY_SEED_FILE" not in environment


def test_one_service_without_a_nats_identity_is_refused_by_name() -> None:
    with pytest.raises(
        HelmRenderError, match=re.escape("services.offers.natsNkeySeed.existingSecret")
    ):
        render({"services": {"offers": {"natsNkeySeed": {"existingSecret": ""}}}})


def test_a_disabled_service_needs_no_nats_identity() -> None:
    objects = render(
        {"services": {"offers": {"enabled": False, "natsNkeySeed": {"existingSecret": ""}}}}
    )
    assert {service for service, _ in _pods(objects)} == set(SERVICES) - {"offers"}


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca"])
def test_postgres_short_of_verify_full_is_refused(mode: str) -> None:
    # verify-ca proves only that some server the CA certified answers, not that it is the
    # database of the URL: under a bank CA that certifies many hosts, any of them could.
    root_ca = "zhike-postgres-ca" if mode == "verify-ca" else ""
    values = {"databaseTls": {"sslMode": mode, "rootCA": {"existingSecret": root_ca}}}
    with pytest.raises(HelmRenderError, match=r"databaseTls\.sslMode.*verify-full"):
        render(values)
    # The escape accepts it, as set.
    objects = render(_allowing(values, "unverifiedDatabase"))
    config = next(
        m for m in objects if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "zhike-offers"
    )
    assert config["data"]["ZHIKE_DATABASE_SSL_MODE"] == mode


# --- The kind cluster: local, and it says why it accepts each one ---


def test_kind_accepts_only_what_the_local_cluster_lacks(kind_values: dict[str, Any]) -> None:
    # Each service has its NKey user there (make deploy): no anonymous NATS.
    assert kind_values["allowInsecure"] == {
        "plaintextNats": True,
        "plaintextGrpc": True,
        "unverifiedDatabase": True,
    }
    # Its NATS serves no TLS, the chart gets no gRPC certificates and no PostgreSQL CA there.
    nats = load_yaml_file(KIND_DIR / "nats-values.yaml")
    assert "tls" not in nats["config"]
    assert "natsTls" not in kind_values
    assert "grpcTls" not in kind_values
    assert "databaseTls" not in kind_values


def test_each_kind_escape_says_why(kind_values: dict[str, Any]) -> None:
    lines = KIND_VALUES.read_text(encoding="utf-8").splitlines()
    block = lines[lines.index("allowInsecure:") + 1 :]
    for flag in kind_values["allowInsecure"]:
        at = next(i for i, line in enumerate(block) if line.strip().startswith(f"{flag}:"))
        assert block[at - 1].strip().startswith("#"), flag


def test_kind_renders_with_its_nkey_users_and_no_tls(kind_objects: list[Manifest]) -> None:
    for service, pod in _pods(kind_objects):
        environment = pod_environment(pod, kind_objects)
        assert "ZHIKE_NATS_NKEY_SEED_FILE" in environment, service
        assert not {"ZHIKE_NATS_TLS_CA_FILE", "ZHIKE_TLS_CERT_FILE"} & set(environment)
        assert "ZHIKE_DATABASE_SSL_MODE" not in environment


def test_the_runbook_explains_every_escape() -> None:
    runbook = RUNBOOK.read_text(encoding="utf-8")
    assert "## Transport security" in runbook
    section = runbook[runbook.index("## Transport security") :]
    section = section[: section.index("\n## ", 1)]
    for flag in FLAGS:
        assert f"`allowInsecure.{flag}`" in section, flag


def test_the_install_notes_name_the_escapes_in_force() -> None:
    assert "allowInsecure" not in notes()
    grpc = next(r for r in RELAXATIONS if r.flag == "plaintextGrpc")
    text = notes(_allowing(grpc.without, grpc.flag))
    assert "WARNING" in text
    assert "allowInsecure.plaintextGrpc: true" in text
    for other in FLAGS:
        if other != grpc.flag:
            assert f"allowInsecure.{other}" not in text
