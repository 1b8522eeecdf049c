"""Posture rules checked over rendered objects. Each returns the list of violations it finds
(empty = compliant), so a test can both assert a clean render and prove the rule bites on a
deliberately broken object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .chart import Manifest, all_containers, name_of, pod_spec

HEALTH_PORT = 8086


def restricted_violations(manifest: Manifest) -> list[str]:
    """Pod Security Standard "restricted", checked at pod and container level."""
    spec = pod_spec(manifest)
    if spec is None:
        return []
    where = name_of(manifest)
    problems: list[str] = []
    pod_ctx: Mapping[str, Any] = spec.get("securityContext") or {}
    if pod_ctx.get("runAsNonRoot") is not True:
        problems.append(f"{where}: pod runAsNonRoot is not true")
    if not isinstance(pod_ctx.get("runAsUser"), int) or pod_ctx["runAsUser"] == 0:
        problems.append(f"{where}: pod runAsUser is not a non-zero number")
    if (pod_ctx.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append(f"{where}: pod shares a host namespace")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: pod mounts a service account token")
    for volume in spec.get("volumes", []):
        if "hostPath" in volume:
            problems.append(f"{where}: hostPath volume {volume['name']}")
    for container in all_containers(spec):
        cname = f"{where}/{container['name']}"
        ctx: Mapping[str, Any] = container.get("securityContext") or {}
        if ctx.get("runAsNonRoot") is not True:
            problems.append(f"{cname}: runAsNonRoot is not true")
        if not isinstance(ctx.get("runAsUser"), int) or ctx["runAsUser"] == 0:
            problems.append(f"{cname}: runAsUser is not a non-zero number")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cname}: allowPrivilegeEscalation is not false")
        if ctx.get("privileged"):
            problems.append(f"{cname}: privileged")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cname}: root filesystem is writable")
        capabilities: Mapping[str, Any] = ctx.get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{cname}: capabilities do not drop ALL")
        if capabilities.get("add"):
            problems.append(f"{cname}: adds capabilities {capabilities['add']}")
        if (ctx.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{cname}: seccompProfile is not RuntimeDefault")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        tmp_volume = next(
            (v for v in spec.get("volumes", []) if v["name"] == mounts.get("/tmp")), None
        )
        if tmp_volume is None or "emptyDir" not in tmp_volume:
            problems.append(f"{cname}: no emptyDir mounted at /tmp")
    return problems


def resource_violations(manifest: Manifest) -> list[str]:
    """Every container has CPU and memory requests and limits."""
    spec = pod_spec(manifest)
    if spec is None:
        return []
    problems: list[str] = []
    for container in all_containers(spec):
        resources: Mapping[str, Any] = container.get("resources") or {}
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(section) or {}).get(resource):
                    problems.append(
                        f"{name_of(manifest)}/{container['name']}: no {section}.{resource}"
                    )
    return problems


def probe_violations(manifest: Manifest) -> list[str]:
    """Service Deployments: native gRPC startup, readiness and liveness probes on the health
    port; readiness asks "" (dependencies), liveness and startup ask "liveness" (R13); the
    three probes have distinct failure thresholds."""
    if manifest["kind"] != "Deployment":
        return []
    problems: list[str] = []
    expected_service = {
        "startupProbe": "liveness",
        "readinessProbe": "",
        "livenessProbe": "liveness",
    }
    for container in manifest["spec"]["template"]["spec"]["containers"]:
        cname = f"{name_of(manifest)}/{container['name']}"
        thresholds: list[int] = []
        for probe_name, service in expected_service.items():
            probe = container.get(probe_name)
            if probe is None:
                problems.append(f"{cname}: no {probe_name}")
                continue
            grpc = probe.get("grpc")
            if grpc is None:
                problems.append(f"{cname}: {probe_name} is not a native gRPC probe")
                continue
            if grpc.get("port") != HEALTH_PORT:
                problems.append(f"{cname}: {probe_name} is not on port {HEALTH_PORT}")
            if grpc.get("service", "") != service:
                problems.append(f"{cname}: {probe_name} asks {grpc.get('service')!r}")
            thresholds.append(int(probe.get("failureThreshold", 3)))
        if len(set(thresholds)) != len(thresholds):
            problems.append(f"{cname}: probes share a failureThreshold {thresholds}")
    return problems
