"""Every pod the chart can start (Deployments, migration Jobs, the helm test Pod) meets the
restricted Pod Security Standard and has requests and limits; service pods have native gRPC
probes (S10, R13)."""

from __future__ import annotations

import copy

from .chart import Manifest, pod_spec, render
from .posture import probe_violations, resource_violations, restricted_violations


def _pods(objects: list[Manifest]) -> list[Manifest]:
    pods = [m for m in objects if pod_spec(m) is not None]
    assert {m["kind"] for m in pods} == {"Deployment", "Job", "Pod"}
    return pods


def test_every_pod_meets_the_restricted_profile(profile_objects: list[Manifest]) -> None:
    assert [v for m in _pods(profile_objects) for v in restricted_violations(m)] == []


def test_every_container_has_requests_and_limits(profile_objects: list[Manifest]) -> None:
    assert [v for m in _pods(profile_objects) for v in resource_violations(m)] == []


def test_every_service_has_startup_readiness_and_liveness_grpc_probes(
    profile_objects: list[Manifest],
) -> None:
    assert [v for m in profile_objects for v in probe_violations(m)] == []


def _first_deployment(objects: list[Manifest]) -> Manifest:
    return copy.deepcopy(next(m for m in objects if m["kind"] == "Deployment"))


def test_restricted_check_flags_a_weakened_pod(default_objects: list[Manifest]) -> None:
    broken = _first_deployment(default_objects)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["allowPrivilegeEscalation"] = True
    container["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    del broken["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
    found = restricted_violations(broken)
    assert any("allowPrivilegeEscalation" in v for v in found)
    assert any("drop ALL" in v for v in found)
    assert any("pod seccompProfile" in v for v in found)


def test_resource_check_flags_a_container_without_limits(
    default_objects: list[Manifest],
) -> None:
    broken = _first_deployment(default_objects)
    del broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert len(resource_violations(broken)) == 2


def test_probe_check_flags_a_missing_probe_and_a_liveness_that_follows_dependencies(
    default_objects: list[Manifest],
) -> None:
    broken = _first_deployment(default_objects)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    del container["startupProbe"]
    container["livenessProbe"]["grpc"]["service"] = ""
    found = probe_violations(broken)
    assert any("no startupProbe" in v for v in found)
    assert any("livenessProbe asks ''" in v for v in found)


def test_pods_roll_when_their_configuration_changes() -> None:
    def checksums(objects: list[Manifest]) -> dict[str, str]:
        return {
            m["metadata"]["name"]: m["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
            for m in objects
            if m["kind"] == "Deployment"
        }

    before = checksums(render())
    after = checksums(render({"services": {"offers": {"extraEnv": {"ZHIKE_X": "1"}}}}))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"zhike-offers"}
