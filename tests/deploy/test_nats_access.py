"""S9 in the chart and the kind cluster: NATS TLS files and each service's NKey seed come from
existing Secrets only, mounted read-only where the ZHIKE_NATS_* variables point, in every pod that
loads the settings (Deployments and migration Jobs); values that do not hold together stop the
render; the kind cluster runs with the allow-list's users; the runbook's table is the allow-list."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest
from helm_python.errors import HelmRenderError

from zhike_runtime.events import nats_permissions

from .chart import (
    KIND_DIR,
    REPO_ROOT,
    SERVICES,
    Manifest,
    load_yaml_file,
    pod_spec,
    render,
    validate,
    validation_kube_versions,
)

NATS_VALUES: dict[str, Any] = {
    "nats": {"url": "tls://nats-0.nats:4222,tls://nats-1.nats:4222"},
    "natsTls": {
        "enabled": True,
        "existingSecret": "zhike-nats-tls",
        "clientCertificate": True,
        "handshakeFirst": True,
    },
    "services": {
        name: {"natsNkeySeed": {"existingSecret": f"zhike-nats-{name}"}} for name in SERVICES
    },
}
# NATS in plaintext and without an identity: rendered only when allowInsecure accepts both
# (tests/deploy/test_transport_security.py).
PLAINTEXT_ANONYMOUS_NATS: dict[str, Any] = {
    "allowInsecure": {"anonymousNats": True, "plaintextNats": True},
    "nats": {"url": "nats://nats.nats.svc.cluster.local:4222"},
    "natsTls": {"enabled": False, "existingSecret": ""},
    "services": {name: {"natsNkeySeed": {"existingSecret": ""}} for name in SERVICES},
}
NATS_FILES = (
    "ZHIKE_NATS_NKEY_SEED_FILE",
    "ZHIKE_NATS_TLS_CA_FILE",
    "ZHIKE_NATS_TLS_CERT_FILE",
    "ZHIKE_NATS_TLS_KEY_FILE",
)


@pytest.fixture(scope="module")
def objects() -> list[Manifest]:
    return render(NATS_VALUES)


def _environment(manifest: Manifest, objects: list[Manifest]) -> dict[str, str]:
    """A pod's plain environment: its env values and the ConfigMaps it takes whole."""
    spec = pod_spec(manifest)
    assert spec is not None
    container = spec["containers"][0]
    found: dict[str, str] = {
        e["name"]: e["value"] for e in container.get("env", []) if "value" in e
    }
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        config = next(
            m for m in objects if m["kind"] == "ConfigMap" and m["metadata"]["name"] == name
        )
        found |= config["data"]
    return found


def _secret_files(manifest: Manifest) -> dict[str, tuple[str, bool]]:
    """Every file a Secret volume puts in the pod's first container: path -> (Secret, read-only)."""
    spec = pod_spec(manifest)
    assert spec is not None
    volumes = {v["name"]: v for v in spec["volumes"]}
    files: dict[str, tuple[str, bool]] = {}
    for mount in spec["containers"][0].get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        for item in secret["items"]:
            path = str(PurePosixPath(mount["mountPath"]) / item["path"])
            files[path] = (secret["secretName"], bool(mount.get("readOnly")))
    return files


def _service_pods(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(service, manifest) of every Deployment and migration Job."""
    pods = []
    for manifest in objects:
        if manifest["kind"] not in ("Deployment", "Job"):
            continue
        name = manifest["metadata"]["name"].removeprefix("zhike-").removesuffix("-migrate")
        pods.append((name, manifest))
    return pods


def test_with_nats_tls_and_nkeys_the_chart_renders_valid_objects(
    objects: list[Manifest],
) -> None:
    for version in validation_kube_versions():
        for manifest in objects:
            validate(manifest, version)
    assert [m for m in objects if m["kind"] == "Secret"] == []


def test_every_nats_file_is_a_read_only_file_of_the_named_existing_secret(
    objects: list[Manifest],
) -> None:
    pods = _service_pods(objects)
    assert len(pods) == 8  # four Deployments, four migration Jobs (their settings check the files)
    for service, pod in pods:
        environment = _environment(pod, objects)
        files = _secret_files(pod)
        expected = {
            "ZHIKE_NATS_NKEY_SEED_FILE": f"zhike-nats-{service}",
            "ZHIKE_NATS_TLS_CA_FILE": "zhike-nats-tls",
            "ZHIKE_NATS_TLS_CERT_FILE": "zhike-nats-tls",
            "ZHIKE_NATS_TLS_KEY_FILE": "zhike-nats-tls",
        }
        for variable, secret in expected.items():
            assert files[environment[variable]] == (secret, True), (service, variable)
        assert environment["ZHIKE_NATS_TLS_HANDSHAKE_FIRST"] == "true"
        assert environment["ZHIKE_NATS_URL"].startswith("tls://")


def test_without_nats_values_no_nats_file_is_configured() -> None:
    objects = render(PLAINTEXT_ANONYMOUS_NATS)
    for _, pod in _service_pods(objects):
        environment = _environment(pod, objects)
        assert not set(NATS_FILES) & set(environment)
        assert not any("/nats" in path for path in _secret_files(pod))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (
            {
                "services": {
                    "offers": {
                        "natsCredentials": {"existingSecret": "offers-creds"},
                        "natsNkeySeed": {"existingSecret": "offers-nkey"},
                    }
                }
            },
            "services.offers: set natsCredentials or natsNkeySeed, not both",
        ),
        (
            {
                "nats": {"url": "tls://nats:4222"},
                "natsTls": {"enabled": True, "existingSecret": ""},
            },
            "natsTls.enabled needs natsTls.existingSecret",
        ),
        (
            {
                "nats": {"url": "nats://nats:4222"},
                "natsTls": {"enabled": True, "existingSecret": "zhike-nats-tls"},
            },
            "natsTls.enabled needs tls:// URLs in nats.url",
        ),
    ],
)
def test_nats_values_that_do_not_hold_together_stop_the_render(
    values: dict[str, Any], named: str
) -> None:
    with pytest.raises(HelmRenderError, match=re.escape(named)):
        render(values)


def test_kind_services_connect_with_the_seeds_make_deploy_keeps() -> None:
    kind = load_yaml_file(KIND_DIR / "zhike-values.yaml")
    assert {
        name: service["natsNkeySeed"]["existingSecret"]
        for name, service in kind["services"].items()
    } == {grant.user: f"zhike-nats-{grant.user}" for grant in nats_permissions.SERVICES}


def test_make_deploy_gives_the_kind_nats_the_allow_lists_users() -> None:
    recipe = (REPO_ROOT / "deploy" / "deploy.mk").read_text(encoding="utf-8")
    # A Secret per user of the allow-list, named as the kind values expect...
    assert "for user in $$($(ZHIKE_CLI) nats users); do" in recipe
    assert "secret=zhike-nats-$$user" in recipe
    # ...and the server configured from the allow-list with their public keys.
    assert "$(ZHIKE_CLI) nats chart-values $$nkeys > '$(NATS_AUTH_VALUES)'" in recipe
    install = recipe[recipe.index("helm upgrade --install nats nats/nats") :]
    install = install[: install.index("--wait")]
    assert "--values '$(NATS_AUTH_VALUES)'" in install
    assert "dlq-admin" in nats_permissions.users()


def test_the_runbook_table_is_the_allow_list() -> None:
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "## NATS permissions" in runbook
    assert nats_permissions.markdown_table() in runbook
