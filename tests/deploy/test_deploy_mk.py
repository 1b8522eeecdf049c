"""deploy/deploy.mk: documented targets, and every kind target stops at once, naming the
missing tools, on a machine without them."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .chart import REPO_ROOT

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
