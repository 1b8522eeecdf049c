"""The chart gives the field-encryption keys, from an existing Secret, to the services that seal
personal data with them (identity and notifications) and to no other, refuses to render those
two without them (issue 9, encryption at rest), and still gives every service what it needs to
start: each one's own settings class loads from the environment rendered for its pods."""

from __future__ import annotations

import pytest
from helm_python.errors import HelmRenderError

from .chart import SERVICES, Manifest, render
from .service_settings import pod_environment, pod_settings

FIELD_KEY_VARIABLES = {"ZHIKE_DATA_KEYS", "ZHIKE_DATA_KEY_ID", "ZHIKE_BLIND_INDEX_KEY"}
# What reads them (services/*/src: IdentitySettings and NotificationsSettings make them
# required); profile and offers never did, but for deriving a page-token key.
KEY_HOLDERS = ("identity", "notifications")


def _workload(objects: list[Manifest], kind: str, service: str) -> Manifest:
    name = f"zhike-{service}-migrate" if kind == "Job" else f"zhike-{service}"
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def key_env(objects: list[Manifest], kind: str, service: str) -> dict[str, tuple[str, str]]:
    container = _workload(objects, kind, service)["spec"]["template"]["spec"]["containers"][0]
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if e["name"] in FIELD_KEY_VARIABLES
    }


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_identity_and_notifications_read_the_keys_from_the_secret(
    default_objects: list[Manifest], kind: str
) -> None:
    expected = {
        "ZHIKE_DATA_KEYS": ("zhike-field-keys", "data-keys"),
        "ZHIKE_DATA_KEY_ID": ("zhike-field-keys", "data-key-id"),
        "ZHIKE_BLIND_INDEX_KEY": ("zhike-field-keys", "blind-index-key"),
    }
    for service in KEY_HOLDERS:
        assert key_env(default_objects, kind, service) == expected


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
@pytest.mark.parametrize("service", ["profile", "offers"])
def test_profile_and_offers_never_receive_the_field_keys(
    profile_objects: list[Manifest], kind: str, service: str
) -> None:
    # They seal nothing: holding identity's data keys would only widen who can read its
    # ID numbers, phones and e-mails.
    assert key_env(profile_objects, kind, service) == {}
    assert not FIELD_KEY_VARIABLES & set(
        pod_environment(_workload(profile_objects, kind, service), profile_objects)
    )


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
@pytest.mark.parametrize("service", SERVICES)
def test_every_service_starts_from_its_rendered_environment(
    default_objects: list[Manifest], kind: str, service: str
) -> None:
    workload = _workload(default_objects, kind, service)
    settings = pod_settings(service, workload, default_objects)
    if service in KEY_HOLDERS:
        assert settings.data_keys is not None
    else:
        assert settings.data_keys is None
        assert settings.blind_index_key is None
    if kind == "Deployment":
        # Two replicas each: they sign page tokens with one shared key, from its own Secret.
        assert settings.page_token_key is not None


def test_the_chart_refuses_to_render_identity_without_its_field_keys() -> None:
    with pytest.raises(Exception, match=r"fieldKeys.existingSecret: required"):
        render({"fieldKeys": {"existingSecret": ""}})


@pytest.mark.parametrize("service", ["profile", "offers"])
def test_replicas_of_profile_or_offers_need_the_page_token_secret_even_with_field_keys(
    service: str,
) -> None:
    # Identity and notifications derive a shared page-token key from the blind-index key they
    # hold; profile and offers do not hold it, so only pageTokens.existingSecret gives theirs.
    single = {s: {"replicaCount": 1} for s in SERVICES if s != service}
    with pytest.raises(
        HelmRenderError,
        match=rf"services\.{service}: replicaCount is 2, so pageTokens\.existingSecret",
    ):
        render({"pageTokens": {"existingSecret": ""}, "services": single})
