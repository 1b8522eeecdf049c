"""The service images: one Dockerfile for the four services, the service chosen by a build
argument; multi-stage with a digest-pinned base, every Python package checked against uv.lock's
hashes, lock-first layers, code generation inside the build, no build tools at run time, a
numeric non-root user and an exec-form ENTRYPOINT. No Docker engine is needed: the tests read
the Dockerfile (and run the one step that writes the entry point)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .chart import REPO_ROOT, SERVICES

DOCKERFILE = REPO_ROOT / "deploy" / "image" / "Dockerfile"
BUILD_REQUIREMENTS = REPO_ROOT / "deploy" / "image" / "build-requirements.txt"
DEPLOY_MK = REPO_ROOT / "deploy" / "deploy.mk"
PINNED_BASE = re.compile(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _steps(stage: list[tuple[str, str]]) -> list[str]:
    return [f"{keyword} {args}" for keyword, args in stage]


def test_there_is_one_dockerfile_for_every_service() -> None:
    assert DOCKERFILE.is_file()
    copies = sorted(str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob("services/*/Dockerfile"))
    assert copies == []


def test_the_service_is_a_build_argument_checked_before_anything_is_installed() -> None:
    build = _steps(_stages()[0])
    assert "ARG SERVICE" in build
    check = next(
        i for i, s in enumerate(build) if 'test -f "services/$SERVICE/pyproject.toml"' in s
    )
    first_sync = next(i for i, s in enumerate(build) if "uv sync" in s)
    assert check < first_sync
    assert "exit 1" in build[check]
    syncs = [s for s in build if "uv sync" in s]
    assert syncs
    assert all('--package "zhike-$SERVICE"' in s for s in syncs)
    assert "COPY services/${SERVICE}/ services/${SERVICE}/" in build


def test_both_stages_use_the_same_base_pinned_by_digest() -> None:
    stages = _stages()
    assert len(stages) >= 2
    bases = {stage[0][1].split()[0] for stage in stages}
    assert len(bases) == 1
    assert PINNED_BASE.fullmatch(bases.pop())


def test_uv_is_installed_from_hashed_requirements() -> None:
    build = _steps(_stages()[0])
    pip = [s for s in build if "pip install" in s and "uv pip install" not in s]
    assert pip == ["RUN pip install --require-hashes --no-deps -r /tmp/build-requirements.txt"]
    assert "COPY deploy/image/build-requirements.txt /tmp/build-requirements.txt" in build
    requirements = [
        line
        for line in BUILD_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line and not line.lstrip().startswith("#")
    ]
    pins = [line for line in requirements if not line.lstrip().startswith("--hash")]
    assert pins == [f"uv=={_makefile_uv_version()} \\"]  # the uv `make setup` uses
    assert len([line for line in requirements if HASH.search(line)]) >= 2


def _makefile_uv_version() -> str:
    match = re.search(
        r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(encoding="utf-8"), re.M
    )
    assert match is not None
    return match.group(1)


def _uv() -> str:
    """The uv that `make setup` installs (.tools/bin/uv), else one on PATH."""
    local = REPO_ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.is_file() else shutil.which("uv")
    assert found is not None, "uv is needed: run `make setup`"
    return found


def test_build_requirements_are_the_current_export_of_uv_lock() -> None:
    # `make lock` writes the file; a lock change that forgot it fails here.
    exported = subprocess.run(
        [
            _uv(),
            "export",
            "--frozen",
            "--hashes",
            "--no-emit-project",
            "--only-group",
            "image-build",
            "--no-header",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    committed = "".join(
        line
        for line in BUILD_REQUIREMENTS.read_text(encoding="utf-8").splitlines(keepends=True)
        if not line.startswith("#")
    )
    assert committed == exported


def test_codegen_tools_are_installed_with_required_hashes() -> None:
    build = _steps(_stages()[0])
    codegen = next(s for s in build if "/opt/codegen" in s and "uv pip install" in s)
    assert "uv export --frozen --hashes" in codegen
    assert "--only-group codegen" in codegen
    assert "uv pip install --require-hashes" in codegen
    assert "--no-hashes" not in "\n".join(build)


def test_dependencies_come_from_the_lock_before_sources() -> None:
    steps = _steps(_stages()[0])
    first_sync = next(i for i, s in enumerate(steps) if "uv sync" in s)
    assert "--frozen" in steps[first_sync]
    assert "--no-install-workspace" in steps[first_sync]
    lock_copy = next(i for i, s in enumerate(steps) if s.startswith("COPY") and "uv.lock" in s)
    source_copies = [
        i
        for i, s in enumerate(steps)
        if s.startswith("COPY")
        and re.search(r"(libs|services)/\S*/? ", s)
        and "pyproject.toml" not in s
    ]
    assert lock_copy < first_sync < min(source_copies)
    # Every workspace member's pyproject.toml is there for the lock to apply.
    for service in SERVICES:
        assert f"COPY services/{service}/pyproject.toml services/{service}/pyproject.toml" in steps
    generate = next(i for i, s in enumerate(steps) if "gen_contracts.py" in s and "RUN" in s)
    final_sync = max(i for i, s in enumerate(steps) if "uv sync" in s)
    assert generate < final_sync
    assert "--frozen" in steps[final_sync]
    # No dev or bench group (test tools, Splink) in an image.
    assert "--no-default-groups" in steps[final_sync]


def test_final_stage_has_no_build_tools_and_runs_as_numeric_non_root() -> None:
    final = _stages()[-1]
    text = "\n".join(f"{keyword} {args}" for keyword, args in final)
    for tool in ("uv", "grpcio-tools", "mypy-protobuf", "gen_contracts", "apt-get install"):
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$|=)", text), tool
    assert "pip uninstall" in text
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    user = [args for keyword, args in final if keyword == "USER"]
    assert len(user) == 1
    uid = user[0].split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 10000


def test_entrypoint_is_exec_form_and_the_healthcheck_uses_the_cli() -> None:
    final = _stages()[-1]
    entrypoint = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert len(entrypoint) == 1
    assert json.loads(entrypoint[0]) == ["zhike-service"]
    healthcheck = next(args for keyword, args in final if keyword == "HEALTHCHECK")
    assert '["zhike", "health"' in healthcheck


def test_the_entry_point_runs_the_chosen_service_module_with_its_arguments(
    tmp_path: Path,
) -> None:
    # Runs the Dockerfile's own step that writes /opt/venv/bin/zhike-service, redirected into
    # tmp_path and to this interpreter, then asks the launcher for `--help`, which the
    # service's argument parser answers under its own name.
    step = next(s for s in _steps(_stages()[0]) if "zhike-service" in s and s.startswith("RUN"))
    script = (
        step.removeprefix("RUN ")
        .replace("/opt/venv/bin/zhike-service", str(tmp_path / "zhike-service"))
        .replace("#!/opt/venv/bin/python", f"#!{sys.executable}")
    )
    subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": os.environ["PATH"], "SERVICE": "profile"},
        check=True,
        timeout=30,
    )
    launched = subprocess.run(
        [str(tmp_path / "zhike-service"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert launched.stdout.startswith("usage: zhike_profile")
    assert "{serve,migrate}" in launched.stdout


def test_images_target_builds_every_service_from_the_one_dockerfile() -> None:
    make = shutil.which("make")
    assert make is not None
    recipe = subprocess.run(
        [make, "-n", "--no-print-directory", "-f", str(DEPLOY_MK), "images"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "for svc in identity profile offers notifications; do" in recipe
    assert "docker build -f deploy/image/Dockerfile --build-arg SERVICE=$svc" in recipe


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "deny everything first, then allow what a build reads"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "uv.lock",
        "proto/",
        "tools/gen_contracts.py",
        "deploy/image/build-requirements.txt",
        "libs/",
        "services/",
    }
    for pattern in (
        "**/.venv",
        "**/__pycache__",
        "**/.env",
        "**/*.creds",
        "libs/contracts/src/zhike",
    ):
        assert pattern in lines
    # Every file the Dockerfile copies from the context is let in.
    for keyword, args in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                source = source.replace("${SERVICE}", SERVICES[0])
                assert any(
                    source == entry or source.startswith(entry.rstrip("/") + "/")
                    for entry in allowed
                ), source
