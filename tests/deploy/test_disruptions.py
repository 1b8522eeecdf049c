"""Rolling updates and node drains (issue 10, defects 2 and 3): the pod's grace period covers the
lame-duck delay and the shutdown grace, lifecycle hooks are configurable and checked, and a
PodDisruptionBudget never blocks the eviction of a pod that is not ready anyway."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from .chart import (
    SERVICES,
    Manifest,
    declared_min_kube_version,
    render,
    validate,
    validation_kube_versions,
)

# A hook valid on every Kubernetes version the chart supports (the `sleep` action needs 1.30).
EXEC_PRE_STOP = {"preStop": {"exec": {"command": ["/bin/true"]}}}


def _deployments(objects: list[Manifest]) -> list[Manifest]:
    return [m for m in objects if m["kind"] == "Deployment"]


def _config(objects: list[Manifest], service: str) -> dict[str, Any]:
    config_map = next(
        m
        for m in objects
        if m["kind"] == "ConfigMap" and m["metadata"]["name"] == f"zhike-{service}"
    )
    data: dict[str, Any] = config_map["data"]
    return data


def test_every_budget_lets_a_pod_that_is_not_ready_be_evicted(
    profile_objects: list[Manifest],
) -> None:
    # Unready pods (a database outage, a pod that never started) must not hold a node drain:
    # with the default policy they count against the budget and cannot be evicted.
    budgets = [m for m in profile_objects if m["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == len(SERVICES)
    for budget in budgets:
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        for version in validation_kube_versions():
            validate(budget, version)


def test_the_grace_period_covers_the_lame_duck_delay_the_shutdown_grace_and_a_margin(
    default_objects: list[Manifest],
) -> None:
    for service in SERVICES:
        assert _config(default_objects, service)["ZHIKE_LAME_DUCK_SECONDS"] == "5"
        assert _config(default_objects, service)["ZHIKE_SHUTDOWN_GRACE_SECONDS"] == "20"
    for deployment in _deployments(default_objects):
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 35


def test_a_longer_lame_duck_delay_lengthens_the_grace_period() -> None:
    objects = render({"config": {"lameDuckSeconds": 15, "shutdownGraceSeconds": 30}})
    assert _config(objects, "offers")["ZHIKE_LAME_DUCK_SECONDS"] == "15"
    for deployment in _deployments(objects):
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 55


def test_no_lifecycle_hooks_by_default(profile_objects: list[Manifest]) -> None:
    for deployment in _deployments(profile_objects):
        assert "lifecycle" not in deployment["spec"]["template"]["spec"]["containers"][0]


def test_lifecycle_hooks_reach_every_service_container() -> None:
    objects = render({"lifecycleHooks": EXEC_PRE_STOP})
    deployments = _deployments(objects)
    assert len(deployments) == len(SERVICES)
    for deployment in deployments:
        assert deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"] == (
            EXEC_PRE_STOP
        )
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 35
        validate(deployment, declared_min_kube_version())


def test_a_pre_stop_sleep_is_added_to_the_grace_period() -> None:
    # The kubelet sends SIGTERM only after preStop returns; the hook's time comes out of the
    # grace period, so the chart adds it rather than let the kubelet kill a draining pod.
    hooks = {"preStop": {"sleep": {"seconds": 7}}}
    objects = render({"lifecycleHooks": hooks})
    for deployment in _deployments(objects):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["containers"][0]["lifecycle"] == hooks
        assert spec["terminationGracePeriodSeconds"] == 42
        validate(deployment, validation_kube_versions()[1])


@pytest.mark.parametrize(
    "values",
    [
        {"lifecycleHooks": {"onStop": {"exec": {"command": ["/bin/true"]}}}},
        {"lifecycleHooks": {"preStop": {}}},
        {"lifecycleHooks": {"preStop": {"sleep": {"seconds": 5}, "exec": {"command": ["x"]}}}},
        {"lifecycleHooks": {"preStop": {"sleep": {"seconds": "5"}}}},
        {"config": {"lameDuckSeconds": -1}},
        {"config": {"lameDuckSeconds": "5"}},
    ],
    ids=[
        "unknown hook",
        "hook without a handler",
        "hook with two handlers",
        "sleep seconds as a string",
        "negative lame duck",
        "lame duck as a string",
    ],
)
def test_malformed_hooks_or_delays_do_not_render(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render(values)
