"""S10: the production defaults carry no literal secret and keep gRPC reflection off; the
database URL only ever comes from an existing Secret."""

from __future__ import annotations

import re
from typing import Any

from .chart import CHART_DIR, Manifest, all_containers, load_yaml_file, pod_spec, render

# user:password@ in a URL, PEM blocks, and keys whose name says they hold a secret.
_CREDENTIAL_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|apikey|api_key|credential)", re.I)


def _literal_secrets(node: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            # A name that *refers* to a Secret (existingSecret, secretKeyRef...) is fine; a
            # non-empty literal under a secret-looking key is not.
            if (
                isinstance(value, str)
                and value
                and _SECRET_NAME.search(str(key))
                and not str(key).lower().startswith("existingsecret")
                and str(key) not in {"secretName", "name", "key"}
            ):
                found.append(where)
            found.extend(_literal_secrets(value, where))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_literal_secrets(value, f"{path}[{index}]"))
    elif isinstance(node, str) and (_CREDENTIAL_URL.search(node) or _PEM.search(node)):
        found.append(path)
    return found


def test_default_values_hold_no_literal_secret() -> None:
    assert _literal_secrets(load_yaml_file(CHART_DIR / "values.yaml")) == []


def test_rendered_defaults_hold_no_literal_secret(default_objects: list[Manifest]) -> None:
    assert [m["kind"] for m in default_objects if m["kind"] == "Secret"] == []
    assert _literal_secrets(default_objects) == []


def test_secret_scan_flags_a_credential_in_a_url() -> None:
    leaked = {"env": [{"name": "X", "value": "postgresql://zhike:hunter2@db:5432/zhike"}]}
    assert _literal_secrets(leaked) == ["env[0].value"]
    assert _literal_secrets({"nats": {"password": "hunter2"}}) == ["nats.password"]


def _env(objects: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["metadata"]["name"], env)
        for m in objects
        if (spec := pod_spec(m)) is not None
        for container in all_containers(spec)
        for env in container.get("env", [])
    ]


def test_database_url_only_comes_from_a_secret_key_ref(profile_objects: list[Manifest]) -> None:
    database_env = [
        (name, e) for name, e in _env(profile_objects) if e["name"] == "ZHIKE_DATABASE_URL"
    ]
    # every Deployment and every migration Job
    assert len(database_env) == 8
    for name, env in database_env:
        assert "value" not in env, name
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["name"].endswith("-db"), name
        assert ref["key"] == "url", name
    configmaps = [m for m in profile_objects if m["kind"] == "ConfigMap"]
    assert all("ZHIKE_DATABASE_URL" not in c["data"] for c in configmaps)


def test_reflection_is_off_in_the_production_profile(default_objects: list[Manifest]) -> None:
    configs = [m["data"] for m in default_objects if m["kind"] == "ConfigMap"]
    assert len(configs) == 4
    assert {c["ZHIKE_GRPC_REFLECTION"] for c in configs} == {"false"}
    job_env = {e["value"] for _, e in _env(default_objects) if e["name"] == "ZHIKE_GRPC_REFLECTION"}
    assert job_env == {"false"}


def test_reflection_switch_reaches_the_services() -> None:
    configs = [
        m["data"] for m in render({"config": {"grpcReflection": True}}) if m["kind"] == "ConfigMap"
    ]
    assert {c["ZHIKE_GRPC_REFLECTION"] for c in configs} == {"true"}


def test_nats_credentials_are_mounted_from_an_existing_secret() -> None:
    values = {
        "services": {
            "offers": {
                "natsNkeySeed": {"existingSecret": ""},
                "natsCredentials": {"existingSecret": "offers-nats"},
            }
        }
    }
    objects = render(values)
    offers = next(
        m for m in objects if m["kind"] == "Deployment" and m["metadata"]["name"] == "zhike-offers"
    )
    spec = offers["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "nats-creds")
    assert volume["secret"]["secretName"] == "offers-nats"
    config = next(
        m["data"]
        for m in objects
        if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "zhike-offers"
    )
    assert config["ZHIKE_NATS_CREDS_FILE"] == "/etc/zhike/nats/nats.creds"
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "nats-creds")
    assert mount["readOnly"] is True


def _page_token_env(objects: list[Manifest]) -> list[dict[str, object]]:
    found = []
    for deployment in (m for m in objects if m["kind"] == "Deployment"):
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        found += [e for e in env if e["name"] == "ZHIKE_PAGE_TOKEN_KEY"]
    return found


def test_the_page_token_key_comes_from_an_existing_secret_on_every_replica() -> None:
    # Off unless configured (possible with one replica per service only: test_production_values).
    single = {s: {"replicaCount": 1} for s in ("identity", "profile", "offers", "notifications")}
    assert _page_token_env(render({"pageTokens": {"existingSecret": ""}, "services": single})) == []
    objects = render({"pageTokens": {"existingSecret": "zhike-page-tokens"}})
    found = _page_token_env(objects)
    assert len(found) == 4
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in found} == {"zhike-page-tokens"}  # type: ignore[index]
