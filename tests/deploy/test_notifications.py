"""The notifications service in the chart: its party directory (addresses, the dispatcher token
from an existing Secret), its providers, its webhook port (container, Service, Ingress) and the
secrets it signs and checks with; values it cannot work without stop the render."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from helm_python.errors import HelmRenderError

from .chart import Manifest, pod_spec, render, validate, validation_kube_versions
from .service_settings import STAND_IN_PROVIDERS, pod_settings


def _one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    return next(m for m in objects if m["kind"] == kind and m["metadata"]["name"] == name)


def _container(manifest: Manifest) -> dict[str, Any]:
    spec = pod_spec(manifest)
    assert spec is not None
    container: dict[str, Any] = spec["containers"][0]
    return container


def _secret_refs(manifest: Manifest) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in _container(manifest).get("env", [])
        if "valueFrom" in e
    }


def _values(manifest: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(manifest).get("env", []) if "value" in e}


def test_the_dispatcher_token_is_a_read_only_file_of_the_named_secret(
    default_objects: list[Manifest],
) -> None:
    deployment = _one(default_objects, "Deployment", "zhike-notifications")
    assert _values(deployment)["ZHIKE_SERVICE_TOKEN_FILE"] == "/etc/zhike/service-token/token"
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}  # type: ignore[index]
    secret = volumes["service-token"]["secret"]
    assert (secret["secretName"], secret["items"]) == (
        "zhike-notifications-token",
        [{"key": "token", "path": "token"}],
    )
    mount = next(m for m in _container(deployment)["volumeMounts"] if m["name"] == "service-token")
    # Mounted whole (no subPath): a rotated token reaches the pod, which re-reads the file.
    assert mount == {
        "name": "service-token",
        "mountPath": "/etc/zhike/service-token",
        "readOnly": True,
    }


def test_webhook_secrets_unsubscribe_key_and_providers_come_from_existing_secrets() -> None:
    objects = render(
        {
            "services": {
                "notifications": {
                    "webhooks": {"secrets": {"existingSecret": "zhike-webhook-secrets"}},
                    "providers": {
                        "sms": ["vendor_a", "vendor_b"],
                        "email": ["mail_a"],
                        "push": ["push_a"],
                    },
                }
            }
        }
    )
    deployment = _one(objects, "Deployment", "zhike-notifications")
    refs = _secret_refs(deployment)
    assert refs["ZHIKE_WEBHOOK_SECRETS"] == ("zhike-webhook-secrets", "webhook-secrets")
    assert refs["ZHIKE_UNSUBSCRIBE_LINK_KEY"] == (
        "zhike-notifications-links",
        "unsubscribe-link-key",
    )
    assert refs["ZHIKE_PROVIDERS"] == ("zhike-notifications-providers", "providers.json")
    config = _one(objects, "ConfigMap", "zhike-notifications")["data"]
    assert "ZHIKE_PROVIDERS" not in config
    assert json.loads(config["ZHIKE_PROVIDERS_SMS"]) == ["vendor_a", "vendor_b"]
    assert json.loads(config["ZHIKE_PROVIDERS_EMAIL"]) == ["mail_a"]
    assert json.loads(config["ZHIKE_PROVIDERS_PUSH"]) == ["push_a"]
    # The migration Job checks the providers (its settings refuse an order naming an unknown
    # one) but calls no one and serves nothing: no token, no webhook secrets.
    job = _one(objects, "Job", "zhike-notifications-migrate")
    assert _secret_refs(job)["ZHIKE_PROVIDERS"] == refs["ZHIKE_PROVIDERS"]
    job_env = {**_values(job), **_secret_refs(job)}
    for name in ("ZHIKE_SERVICE_TOKEN_FILE", "ZHIKE_WEBHOOK_SECRETS", "ZHIKE_UNSUBSCRIBE_LINK_KEY"):
        assert name not in job_env


def test_notifications_finds_identity_and_the_profile_at_the_release_services(
    profile_objects: list[Manifest],
) -> None:
    config = _one(profile_objects, "ConfigMap", "zhike-notifications")["data"]
    assert config["ZHIKE_IDENTITY_ADDRESS"] == "zhike-identity:50051"
    assert config["ZHIKE_PROFILE_ADDRESS"] == "zhike-profile:50051"
    for service in ("zhike-identity", "zhike-profile", "zhike-offers"):
        assert "ZHIKE_IDENTITY_ADDRESS" not in _one(profile_objects, "ConfigMap", service)["data"]


def test_the_webhook_port_is_on_the_container_the_service_and_in_the_settings(
    profile_objects: list[Manifest],
) -> None:
    deployment = _one(profile_objects, "Deployment", "zhike-notifications")
    ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
    assert ports["webhooks"] == 8026
    service = _one(profile_objects, "Service", "zhike-notifications")
    assert {"name": "webhooks", "port": 8026, "targetPort": "webhooks"}.items() <= next(
        p for p in service["spec"]["ports"] if p["name"] == "webhooks"
    ).items()
    config = _one(profile_objects, "ConfigMap", "zhike-notifications")["data"]
    assert config["ZHIKE_WEBHOOK_PORT"] == "8026"
    assert config["ZHIKE_WEBHOOK_PUBLIC_URL"].startswith(("http://", "https://"))
    for other in ("identity", "profile", "offers"):
        other_ports = _container(_one(profile_objects, "Deployment", f"zhike-{other}"))["ports"]
        assert "webhooks" not in [p["name"] for p in other_ports]


def test_kind_lists_providers_in_the_config_map(kind_objects: list[Manifest]) -> None:
    config = _one(kind_objects, "ConfigMap", "zhike-notifications")["data"]
    assert {p["name"] for p in json.loads(config["ZHIKE_PROVIDERS"])} == {
        "local_sms",
        "local_push",
        "local_email",
    }
    deployment = _one(kind_objects, "Deployment", "zhike-notifications")
    assert "ZHIKE_PROVIDERS" not in _secret_refs(deployment)


INGRESS_VALUES: dict[str, Any] = {
    "services": {
        "notifications": {
            "webhooks": {
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "host": "notify.bank.example",
                    "tlsSecret": "notify-tls",
                }
            }
        }
    }
}


def test_the_ingress_routes_only_webhooks_and_unsubscribe_links_to_the_webhook_port() -> None:
    objects = render(INGRESS_VALUES)
    ingresses = [m for m in objects if m["kind"] == "Ingress"]
    assert [i["metadata"]["name"] for i in ingresses] == ["zhike-notifications-webhooks"]
    spec = ingresses[0]["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["notify.bank.example"], "secretName": "notify-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "notify.bank.example"
    assert [(p["path"], p["pathType"], p["backend"]) for p in rule["http"]["paths"]] == [
        (path, "Prefix", {"service": {"name": "zhike-notifications", "port": {"name": "webhooks"}}})
        for path in ("/webhooks/", "/unsubscribe/")
    ]
    for version in validation_kube_versions():
        validate(ingresses[0], version)


def test_no_ingress_by_default(profile_objects: list[Manifest]) -> None:
    assert [m for m in profile_objects if m["kind"] == "Ingress"] == []


def _notifications(values: dict[str, Any]) -> dict[str, Any]:
    return {"services": {"notifications": values}}


# The kind cluster's providers (deploy/kind/zhike-values.yaml), and their failover orders.
LOCAL_PROVIDERS = [
    {"name": "local_sms", "channel": "sms", "url": "http://zhike-local-gateways:8025"},
    {"name": "local_push", "channel": "push", "url": "http://zhike-local-gateways:8025"},
    {"name": "local_email", "channel": "email", "url": "smtp://zhike-local-gateways:1025"},
]
LOCAL_ORDERS = {"sms": ["local_sms"], "email": ["local_email"], "push": ["local_push"]}
NO_ORDERS: dict[str, list[str]] = {"sms": [], "email": [], "push": []}

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "no providers",
        _notifications({"providers": {"existingSecret": ""}}),
        "set exactly one of providers.list and providers.existingSecret",
    ),
    (
        "providers twice",
        _notifications(
            {"providers": {"list": [{"name": "a", "channel": "sms", "url": "https://sms.example"}]}}
        ),
        "set exactly one of providers.list and providers.existingSecret",
    ),
    (
        "a providers Secret and no SMS failover order",
        _notifications({"providers": {"sms": []}}),
        "services.notifications.providers.sms: required",
    ),
    (
        "a providers Secret and no push failover order",
        _notifications({"providers": {"push": []}}),
        "services.notifications.providers.push: required",
    ),
    (
        "a provider list and no failover orders",
        _notifications({"providers": {"existingSecret": "", "list": LOCAL_PROVIDERS, **NO_ORDERS}}),
        "services.notifications.providers.sms: required",
    ),
    (
        "an order naming a provider the list does not define",
        _notifications(
            {
                "providers": {
                    "existingSecret": "",
                    "list": LOCAL_PROVIDERS,
                    **LOCAL_ORDERS,
                    "email": ["local_email", "vendor_mail"],
                }
            }
        ),
        'services.notifications.providers.email: "vendor_mail" is not an email provider in '
        "providers.list",
    ),
    (
        "an order naming a provider of another channel",
        _notifications(
            {
                "providers": {
                    "existingSecret": "",
                    "list": LOCAL_PROVIDERS,
                    **LOCAL_ORDERS,
                    "push": ["local_sms"],
                }
            }
        ),
        'services.notifications.providers.push: "local_sms" is not a push provider in '
        "providers.list",
    ),
    (
        "a provider listed twice",
        _notifications(
            {
                "providers": {
                    "existingSecret": "",
                    "list": [*LOCAL_PROVIDERS, LOCAL_PROVIDERS[0]],
                    **LOCAL_ORDERS,
                }
            }
        ),
        'services.notifications.providers.list: "local_sms" is defined twice',
    ),
    (
        "a provider time-out of half the default lease",
        _notifications(
            {
                "providers": {
                    "existingSecret": "",
                    "list": [{**LOCAL_PROVIDERS[0], "timeout_seconds": 30}, *LOCAL_PROVIDERS[1:]],
                    **LOCAL_ORDERS,
                }
            }
        ),
        'services.notifications.providers.list: "local_sms" has timeout_seconds 30, which must '
        "be under half of the dispatch lease (ZHIKE_DISPATCH_LEASE_SECONDS, 60 s)",
    ),
    (
        "a lease too short for the default provider time-out",
        _notifications(
            {
                "providers": {"existingSecret": "", "list": LOCAL_PROVIDERS, **LOCAL_ORDERS},
                "extraEnv": {"ZHIKE_DISPATCH_LEASE_SECONDS": "20"},
            }
        ),
        '"local_sms" has timeout_seconds 10, which must be under half of the dispatch lease '
        "(ZHIKE_DISPATCH_LEASE_SECONDS, 20 s)",
    ),
    (
        "no public URL",
        _notifications({"webhooks": {"publicUrl": ""}}),
        "services.notifications.webhooks.publicUrl: required",
    ),
    (
        "no dispatcher token",
        _notifications({"directory": {"serviceToken": {"existingSecret": ""}}}),
        "services.notifications.directory.serviceToken.existingSecret: required",
    ),
    (
        "identity not deployed and no address for it",
        {"services": {"identity": {"enabled": False}}},
        "services.notifications.directory.identityAddress: required",
    ),
    (
        "an ingress without a host",
        _notifications({"webhooks": {"ingress": {"enabled": True}}}),
        "services.notifications.webhooks.ingress.host: required",
    ),
    (
        "no field keys",
        {
            "fieldKeys": {"existingSecret": ""},
            "services": {
                "identity": {"enabled": False},
                "notifications": {"directory": {"identityAddress": "identity.core:443"}},
            },
        },
        "notifications seals template values and inbox texts at rest",
    ),
]


@pytest.mark.parametrize(("case", "values", "named"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_notifications_values_it_cannot_work_with_stop_the_render(
    case: str, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(HelmRenderError, match=re.escape(named)):
        render(values)


def test_replicas_without_a_link_key_of_their_own_render_with_none() -> None:
    # The service then derives it from the blind-index key, which every replica holds.
    objects = render(
        _notifications(
            {"replicaCount": 3, "webhooks": {"unsubscribeLinkKey": {"existingSecret": ""}}}
        )
    )
    deployment = _one(objects, "Deployment", "zhike-notifications")
    assert "ZHIKE_UNSUBSCRIBE_LINK_KEY" not in _secret_refs(deployment)


def _notifications_settings(objects: list[Manifest], kind: str) -> Any:
    name = "zhike-notifications-migrate" if kind == "Job" else "zhike-notifications"
    workload = _one(objects, kind, name)
    return pod_settings("notifications", workload, objects)


@pytest.mark.parametrize("kind", ["Job", "Deployment"])
def test_notifications_starts_with_the_providers_of_a_secret_and_their_orders(
    default_objects: list[Manifest], kind: str
) -> None:
    # The migration Job loads the same settings first: a failover order naming a provider the
    # JSON does not define would stop it (exit 2) and fail the whole install.
    settings = _notifications_settings(default_objects, kind)
    assert {p.name for p in settings.providers} == {p["name"] for p in STAND_IN_PROVIDERS}
    assert (settings.providers_sms, settings.providers_email, settings.providers_push) == (
        ["bank_sms"],
        ["bank_mail"],
        ["bank_push"],
    )


def test_notifications_starts_with_an_inline_provider_list_and_its_orders() -> None:
    values = _notifications(
        {"providers": {"existingSecret": "", "list": LOCAL_PROVIDERS, **LOCAL_ORDERS}}
    )
    settings = _notifications_settings(render(values), "Job")
    assert [p.name for p in settings.providers] == [p["name"] for p in LOCAL_PROVIDERS]
    assert settings.providers_email == ["local_email"]


def test_a_provider_time_out_under_half_of_a_longer_lease_starts() -> None:
    # The lease set for every service; the provider's 45 s would not fit the default 60 s.
    values = _notifications(
        {
            "providers": {
                "existingSecret": "",
                "list": [{**LOCAL_PROVIDERS[0], "timeout_seconds": 45}, *LOCAL_PROVIDERS[1:]],
                **LOCAL_ORDERS,
            }
        }
    ) | {"config": {"extraEnv": {"ZHIKE_DISPATCH_LEASE_SECONDS": "120"}}}
    settings = _notifications_settings(render(values), "Deployment")
    assert (settings.dispatch_lease_seconds, settings.providers[0].timeout_seconds) == (120, 45)
