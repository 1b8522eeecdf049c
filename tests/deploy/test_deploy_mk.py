"""deploy/deploy.mk: documented targets, and every kind target stops at once, naming the
missing tools, on a machine without them."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .chart import KIND_DIR, REPO_ROOT, SERVICES

DEPLOY_MK = REPO_ROOT / "deploy" / "deploy.mk"
KIND_TARGETS = ("kind-up", "images", "kind-load", "deploy", "deploy-test", "kind-down")


def test_targets_are_documented_for_make_help() -> None:
    text = DEPLOY_MK.read_text(encoding="utf-8")
    documented = set(re.findall(r"^([a-z][a-z-]*):[^=\n]*## \S", text, flags=re.MULTILINE))
    assert set(KIND_TARGETS) | {"scan"} <= documented


def test_kind_targets_check_the_tools_first() -> None:
    text = DEPLOY_MK.read_text(encoding="utf-8")
    for target in KIND_TARGETS:
        match = re.search(rf"^{target}:([^#\n]*)", text, flags=re.MULTILINE)
        assert match is not None, target
        assert match.group(1).split()[0] == "deploy-tools-check", target


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
@pytest.mark.parametrize("target", KIND_TARGETS)
def test_kind_targets_fail_early_naming_the_missing_tools(target: str, tmp_path: object) -> None:
    make = shutil.which("make")
    assert make is not None
    result = subprocess.run(
        [make, "--no-print-directory", "-f", str(DEPLOY_MK), target],
        cwd=REPO_ROOT,
        env={"PATH": str(tmp_path)},  # an empty directory: no docker, kind, helm or kubectl
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "required tool(s) not found on PATH: docker kind helm kubectl" in result.stderr
    assert result.stdout == ""


def _postgres_objects() -> tuple[list[str], list[str]]:
    """Names of the CloudNativePG Database objects and managed roles of the kind cluster."""
    documents = list(yaml.safe_load_all((KIND_DIR / "postgres.yaml").read_text(encoding="utf-8")))
    cluster = next(d for d in documents if d["kind"] == "Cluster")
    roles = [role["name"] for role in cluster["spec"]["managed"]["roles"]]
    databases = [d["metadata"]["name"] for d in documents if d["kind"] == "Database"]
    return databases, roles


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_deploy_waits_for_the_databases_and_roles_before_installing_zhike() -> None:
    # The migration hooks connect as the service's role to its database at once: both must be
    # reconciled by CloudNativePG first, not merely submitted. `make -n` prints the recipe as
    # it would run, variables expanded.
    make = shutil.which("make")
    assert make is not None
    result = subprocess.run(
        [make, "-n", "--no-print-directory", "-f", str(DEPLOY_MK), "deploy"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    recipe = result.stdout
    applied = recipe.index("kubectl apply -f deploy/kind/postgres.yaml")
    install = recipe.index("helm upgrade --install 'zhike' deploy/helm/zhike")
    between = recipe[applied:install].replace("\\\n", " ")  # continuation lines joined
    databases, roles = _postgres_objects()
    assert sorted(databases) == sorted(f"zhike-{s}" for s in SERVICES)
    database_wait = next(
        line
        for line in between.splitlines()
        if "wait --for=jsonpath='{.status.applied}'=true" in line
    )
    assert "--timeout=" in database_wait
    for database in databases:
        assert f" database/{database}" in database_wait, database
    assert sorted(roles) == sorted(f"zhike_{s}" for s in SERVICES)
    role_wait = next(line for line in between.splitlines() if "managedRolesStatus" in line)
    # One wait per role, in a loop over the services: each role must be reported reconciled.
    assert 'reconciled[?(@==\\"zhike_$svc\\")]}=zhike_$svc' in role_wait, role_wait
    assert "for svc in identity profile offers notifications; do" in between
