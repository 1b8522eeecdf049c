"""Load a service's own settings class from the environment the chart renders for one of its
pods, as the process in that pod would: the ConfigMaps it takes whole (`envFrom`), then its
`env` (plain values, and Secret keys resolved from a table of stand-in Secret contents), with
the files its Secret volumes mount (certificates, CAs, NKey seeds) written under a temporary
directory and the variables that name them pointed there (`pod_settings`).

A render that would stop the process at start (`invalid configuration`, exit code 2) raises the
settings' ValidationError here, naming the variable: a variable naming a file the pod does not
mount names a file that does not exist."""

from __future__ import annotations

import base64
import importlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from zhike_runtime.settings import ServiceSettings

from .chart import Manifest, pod_spec

SETTINGS_CLASSES = {
    "identity": ("zhike_identity.settings", "IdentitySettings"),
    "profile": ("zhike_profile.settings", "ProfileSettings"),
    "offers": ("zhike_offers.settings", "OffersSettings"),
    "notifications": ("zhike_notifications.settings", "NotificationsSettings"),
}


def _key(label: str) -> str:
    """A stand-in 32-byte key (base64), different per label."""
    return base64.b64encode(label.encode().ljust(32, b".")[:32]).decode()


# The providers the tests' installation values name in the notifications failover orders
# (tests/deploy/chart.py, INSTALLATION_VALUES): the providers Secret's stand-in defines them.
STAND_IN_PROVIDERS = [
    {"name": "bank_sms", "channel": "sms", "url": "https://sms.bank.example/api"},
    {"name": "bank_push", "channel": "push", "url": "https://push.bank.example/api"},
    {"name": "bank_mail", "channel": "email", "url": "smtps://smtp.bank.example:465"},
]

# (Secret name, key) -> what the Secret would hold, for the Secrets tests/deploy/chart.py's
# installation values name.
STAND_IN_SECRETS: dict[tuple[str, str], str] = {
    **{
        (f"zhike-{service}-db", "url"): f"postgresql+asyncpg://zhike_{service}@pg.db:5432/{service}"
        for service in SETTINGS_CLASSES
    },
    ("zhike-field-keys", "data-keys"): json.dumps({"k1": _key("data key 1")}),
    ("zhike-field-keys", "data-key-id"): "k1",
    ("zhike-field-keys", "blind-index-key"): _key("blind index"),
    ("zhike-page-tokens", "page-token-key"): "stand-in page-token key",
    ("zhike-notifications-links", "unsubscribe-link-key"): "stand-in link key",
    ("zhike-notifications-providers", "providers.json"): json.dumps(STAND_IN_PROVIDERS),
}


def settings_class(service: str) -> type[ServiceSettings]:
    module, name = SETTINGS_CLASSES[service]
    cls: type[ServiceSettings] = getattr(importlib.import_module(module), name)
    return cls


def pod_environment(
    manifest: Manifest,
    objects: list[Manifest],
    secrets: Mapping[tuple[str, str], str] = STAND_IN_SECRETS,
) -> dict[str, str]:
    """The environment of the pod's first container, as the kubelet builds it (`env` wins over
    `envFrom`)."""
    spec = pod_spec(manifest)
    assert spec is not None, manifest["kind"]
    container = spec["containers"][0]
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" not in source:
            raise AssertionError(f"no stand-in for {source}")
        name = source["configMapRef"]["name"]
        config = next(
            m for m in objects if m["kind"] == "ConfigMap" and m["metadata"]["name"] == name
        )
        environment |= {f"{source.get('prefix', '')}{k}": v for k, v in config["data"].items()}
    for entry in container.get("env", []):
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        environment[entry["name"]] = secrets[(ref["name"], ref["key"])]
    return environment


@contextmanager
def _environ(environment: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith(("ZHIKE_", "OTEL_")):
                del os.environ[name]
        os.environ.update(environment)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def pod_files(
    manifest: Manifest, secrets: Mapping[tuple[str, str], str] = STAND_IN_SECRETS
) -> dict[str, str]:
    """Every file a Secret volume puts in the pod's first container: path -> its content (the
    stand-in's, or a line naming the Secret and key)."""
    spec = pod_spec(manifest)
    assert spec is not None, manifest["kind"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files: dict[str, str] = {}
    for mount in spec["containers"][0].get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        name = secret["secretName"]
        for item in secret["items"]:
            path = str(PurePosixPath(mount["mountPath"]) / item["path"])
            files[path] = secrets.get((name, item["key"]), f"stand-in {name}/{item['key']}\n")
    return files


def load_settings(
    service: str, environment: Mapping[str, str], files: Mapping[str, str] | None = None
) -> Any:
    """The service's settings built from exactly this environment (ZHIKE_*/OTEL_* of the test
    process set aside meanwhile), with `files` (absolute path -> content) written under a
    temporary directory and every variable naming one of them pointed at its copy."""
    with tempfile.TemporaryDirectory(prefix="zhike-pod-files-") as scratch:
        root = Path(scratch)
        for path, content in (files or {}).items():
            copy = root / path.lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(content, encoding="utf-8")
        rebased = {
            name: str(root / value.lstrip("/")) if value in (files or {}) else value
            for name, value in environment.items()
        }
        with _environ(rebased):
            return settings_class(service)()


def pod_settings(service: str, manifest: Manifest, objects: list[Manifest]) -> Any:
    """The settings the process of this Deployment's (or migration Job's) pod would start with,
    its mounted Secret files in place."""
    return load_settings(service, pod_environment(manifest, objects), pod_files(manifest))
