"""Render, lint and validate the Helm chart offline, through Helm's own Go SDK.

Helm is driven by the `helm-python-sdk` package (module `helm_python`), which binds to
`libhelm_c` (Helm v4's Go SDK behind a C ABI): no `helm` binary, no cluster, no network.
Rendered objects are validated with `kubernetes-validate` against the Kubernetes JSON
schemas of the chart's declared minimum `kubeVersion` and of the newest version it ships.

Also a command line, used by `make scan` to hand rendered manifests to checkov:

    python -m tests.deploy.chart --out DIR [--values FILE ...]

Without --values it renders the production defaults with INSTALLATION_VALUES; with them, the
files alone over the chart's defaults, as `helm install -f FILE` would (e.g. the kind values).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "zhike"
KIND_DIR = REPO_ROOT / "deploy" / "kind"
KIND_VALUES = KIND_DIR / "zhike-values.yaml"
SERVICES = ("identity", "profile", "offers", "notifications")
RELEASE = "zhike"
NAMESPACE = "zhike"

# Kinds that come from CRDs; kubernetes-validate ships no schema for them.
CRD_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
POD_OWNER_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})

Manifest = dict[str, Any]
Values = dict[str, Any]


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> Values:
    """Deep-merge two values trees the way `helm -f a -f b` does (maps merge, rest replaces)."""
    merged: Values = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_values(current, value)
        else:
            merged[key] = value
    return merged


# Transport security, which the chart refuses to render a production install without unless
# allowInsecure accepts its absence, value by value (docs/operations.md, "Transport security"):
# each service's own NATS identity (an NKey seed), TLS to NATS (tls:// URLs, the servers' CA),
# TLS on every gRPC port (with the CA notifications verifies identity and the profile with, and
# the certificate `helm test` verifies them with), and PostgreSQL verify-full with the servers' CA.
SECURE_TRANSPORT_VALUES: Values = {
    "nats": {"url": "tls://nats.nats.svc.cluster.local:4222"},
    "natsTls": {"enabled": True, "existingSecret": "zhike-nats-tls"},
    "grpcTls": {"enabled": True, "helmTest": {"existingSecret": "zhike-helm-test-tls"}},
    "databaseTls": {"sslMode": "verify-full", "rootCA": {"existingSecret": "zhike-postgres-ca"}},
    "services": merge_values(
        {s: {"natsNkeySeed": {"existingSecret": f"zhike-nats-{s}"}} for s in SERVICES},
        {"notifications": {"directory": {"tls": {"existingSecret": "zhike-grpc-ca"}}}},
    ),
}

# What every installation must add to the production defaults (the chart refuses to render
# without it): its identity provider (and, under the default NetworkPolicies, the egress to its
# key set), the Secret of its field-encryption keys, the notifications service's providers
# with their failover orders, public URL and dispatcher token, and the transport security
# above. Renders in these tests layer it under the values given.
INSTALLATION_VALUES: Values = merge_values(
    SECURE_TRANSPORT_VALUES,
    {
        "fieldKeys": {"existingSecret": "zhike-field-keys"},
        # The production defaults run 2 replicas per service, which need a shared page-token
        # key (and notifications a shared unsubscribe-link key).
        "pageTokens": {"existingSecret": "zhike-page-tokens"},
        "auth": {
            "issuer": "https://idp.bank.example/realms/zhike",
            "jwksUrl": "https://idp.bank.example/realms/zhike/protocol/openid-connect/certs",
        },
        "networkPolicy": {
            "egress": {"identityProvider": {"to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}]}}
        },
        "services": {
            "notifications": {
                "directory": {"serviceToken": {"existingSecret": "zhike-notifications-token"}},
                # The names the providers Secret defines (tests/deploy/service_settings.py).
                "providers": {
                    "existingSecret": "zhike-notifications-providers",
                    "sms": ["bank_sms"],
                    "email": ["bank_mail"],
                    "push": ["bank_push"],
                },
                "webhooks": {
                    "publicUrl": "https://notify.bank.example",
                    "unsubscribeLinkKey": {"existingSecret": "zhike-notifications-links"},
                },
            }
        },
    },
)


def installed(values: Values | None, installation_values: bool = True) -> Values:
    """The values a render uses: the given ones over INSTALLATION_VALUES, or, with
    installation_values=False, the given ones alone over the chart's defaults (as `helm -f` takes
    a complete values file such as deploy/kind/zhike-values.yaml)."""
    if not installation_values:
        return dict(values or {})
    return merge_values(INSTALLATION_VALUES, values or {})


def load_yaml_file(path: Path) -> Values:
    """Load one YAML mapping (a values file)."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} does not hold a YAML mapping")
    return loaded


def render_documents(
    values: Values | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart_dir: Path = CHART_DIR,
    installation_values: bool = True,
) -> dict[str, str]:
    """Render every template (hooks and tests included); template path -> YAML text.

    Raises helm_python.HelmValuesError when the values break values.schema.json.
    """
    with helm.Chart.load(chart_dir) as chart:
        rendered = chart.render(
            installed(values, installation_values),
            name=release,
            namespace=namespace,
            is_install=True,
        )
    return {path: text for path, text in rendered.items() if path.endswith((".yaml", ".yml"))}


def render(
    values: Values | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart_dir: Path = CHART_DIR,
    installation_values: bool = True,
) -> list[Manifest]:
    """Render the chart and parse every Kubernetes object it produces."""
    objects: list[Manifest] = []
    for text in render_documents(
        values,
        release=release,
        namespace=namespace,
        chart_dir=chart_dir,
        installation_values=installation_values,
    ).values():
        for document in yaml.safe_load_all(text):
            if document is None:
                continue
            if not isinstance(document, dict):
                raise ValueError(f"rendered document is not an object: {document!r}")
            objects.append(document)
    return objects


def notes(values: Values | None = None, *, installation_values: bool = True) -> str:
    """The rendered NOTES.txt."""
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(
            installed(values, installation_values),
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=True,
        )
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def lint_problems(values: Values | None = None, *, installation_values: bool = True) -> list[str]:
    """`helm lint --strict`: every finding of warning severity or worse (info is ignored)."""
    report = helm.lint(
        CHART_DIR, installed(values, installation_values), strict=True, namespace=NAMESPACE
    )
    problems = [
        f"{message['path']}: {message['error']}"
        for message in report["messages"]
        if int(message["severity"]) >= 2
    ]
    problems.extend(str(error) for error in report["errors"])
    return problems


def declared_min_kube_version() -> str:
    """The lower bound of `kubeVersion` in Chart.yaml, e.g. '1.27.0'."""
    metadata = load_yaml_file(CHART_DIR / "Chart.yaml")
    match = re.search(r">=\s*v?(\d+\.\d+\.\d+)", str(metadata.get("kubeVersion", "")))
    if match is None:
        raise ValueError("Chart.yaml declares no `kubeVersion: >=X.Y.Z` lower bound")
    return match.group(1)


def validation_kube_versions() -> tuple[str, str]:
    """The declared minimum and the newest version kubernetes-validate ships."""
    return declared_min_kube_version(), kubernetes_validate.latest_version()


def validate(manifest: Manifest, kube_version: str) -> None:
    """Validate one object strictly (unknown fields fail) against a Kubernetes version."""
    kubernetes_validate.validate(manifest, kube_version, strict=True)


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    """The pod spec of a Pod or of a workload's pod template; None for other kinds."""
    if manifest["kind"] == "Pod":
        spec: dict[str, Any] = manifest["spec"]
        return spec
    if manifest["kind"] in POD_OWNER_KINDS:
        template_spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
        return template_spec
    return None


def all_containers(spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Init containers and containers of a pod spec."""
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def name_of(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def write_rendered(
    out_dir: Path, values: Values | None, *, installation_values: bool = True
) -> list[Path]:
    """Write every rendered object to its own file under out_dir (for scanners)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.yaml"):
        stale.unlink()
    written: list[Path] = []
    for index, manifest in enumerate(render(values, installation_values=installation_values)):
        slug = re.sub(r"[^a-z0-9-]+", "-", name_of(manifest).lower())
        path = out_dir / f"{index:03d}-{slug}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="directory for the manifests")
    parser.add_argument(
        "--values", type=Path, action="append", default=[], help="values file (repeatable)"
    )
    args = parser.parse_args(argv)
    values: Values = {}
    for path in args.values:
        values = merge_values(values, load_yaml_file(path))
    # Values files are rendered as `helm -f` would install them; without any, the production
    # defaults with the tests' INSTALLATION_VALUES (the defaults alone refuse to render).
    written = write_rendered(args.out, values or None, installation_values=not args.values)
    sys.stdout.write(f"rendered {len(written)} objects into {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
