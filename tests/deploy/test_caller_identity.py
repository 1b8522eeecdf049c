"""The chart configures caller identity (issue 9): every service verifies tokens from the bank's
identity provider, refuses to render without one, and takes its roles from a ConfigMap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .chart import SERVICES, Manifest, render


def config_maps(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}


def service_config(objects: list[Manifest], service: str) -> dict[str, Any]:
    return config_maps(objects)[f"zhike-{service}"]


def deployment(objects: list[Manifest], service: str) -> Manifest:
    return next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == f"zhike-{service}"
    )


def test_every_service_verifies_tokens_from_the_configured_provider_in_production(
    default_objects: list[Manifest],
) -> None:
    for service in SERVICES:
        config = service_config(default_objects, service)
        assert config["ZHIKE_PROFILE"] == "production"
        assert config["ZHIKE_AUTH_ISSUER"] == "https://idp.bank.example/realms/zhike"
        assert config["ZHIKE_AUTH_JWKS_URL"].startswith("https://idp.bank.example/")
        assert "ZHIKE_AUTH_JWKS_FILE" not in config
        assert config["ZHIKE_AUDIT_RETENTION_DAYS"] == "1098"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"issuer": ""}, "auth.issuer: required"),
        ({"jwksUrl": ""}, "set exactly one of auth.jwksUrl and auth.jwksConfigMap.name"),
        (
            {"jwksConfigMap": {"name": "bank-jwks"}},
            "set exactly one of auth.jwksUrl and auth.jwksConfigMap.name",
        ),
    ],
)
def test_the_chart_refuses_to_render_without_exactly_one_key_set_and_an_issuer(
    auth: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        render({"auth": auth})


def test_a_key_set_from_a_config_map_is_mounted_read_only_and_named_in_the_env() -> None:
    objects = render({"auth": {"jwksUrl": "", "jwksConfigMap": {"name": "bank-jwks"}}})
    for service in SERVICES:
        assert service_config(objects, service)["ZHIKE_AUTH_JWKS_FILE"] == (
            "/etc/zhike/auth/jwks/jwks.json"
        )
        pod = deployment(objects, service)["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "auth-jwks")
        assert volume["configMap"]["name"] == "bank-jwks"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "auth-jwks")
        assert (mount["mountPath"], mount["readOnly"]) == ("/etc/zhike/auth/jwks", True)
        assert "subPath" not in mount  # a rotated key set reaches the running pod


def test_configured_roles_reach_every_service_through_one_config_map() -> None:
    roles = {"branch_teller": ["identity.party.read", "profile.read"]}
    objects = render({"auth": {"roles": roles}})
    assert json.loads(config_maps(objects)["zhike-auth-roles"]["roles.json"]) == roles
    for service in SERVICES:
        assert service_config(objects, service)["ZHIKE_AUTH_ROLES_FILE"] == (
            "/etc/zhike/auth/roles/roles.json"
        )
        pod = deployment(objects, service)["spec"]["template"]["spec"]
        assert {"name": "auth-roles", "configMap": {"name": "zhike-auth-roles"}} in pod["volumes"]


def test_kind_trusts_the_development_issuer_from_the_zhike_jwks_config_map(
    kind_objects: list[Manifest],
) -> None:
    config = service_config(kind_objects, "identity")
    assert config["ZHIKE_AUTH_ISSUER"] == "https://zhike.invalid/development-issuer"
    assert config["ZHIKE_AUTH_JWKS_FILE"] == "/etc/zhike/auth/jwks/jwks.json"
