"""The service images: one Dockerfile per service, all of the same shape; multi-stage with
a pinned base, lock-first layers, code generation inside the build, no dev tools at run time,
a numeric non-root user and an exec-form ENTRYPOINT."""

from __future__ import annotations

import json
import re

import pytest

from .chart import REPO_ROOT, SERVICES


def _dockerfile(service: str) -> str:
    return (REPO_ROOT / "services" / service / "Dockerfile").read_text(encoding="utf-8")


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


def _stages(text: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _generic(text: str, service: str) -> str:
    """The Dockerfile with its own service name abstracted (the block copying every
    workspace member's pyproject.toml legitimately names all four)."""
    return "\n".join(
        line
        if re.match(r"COPY services/\w+/pyproject\.toml ", line)
        else line.replace(service, "SERVICE")
        for line in text.splitlines()
    )


def test_the_four_dockerfiles_differ_only_by_service_name() -> None:
    reference = _generic(_dockerfile("identity"), "identity")
    for service in SERVICES:
        assert _generic(_dockerfile(service), service) == reference, service


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_is_multi_stage_with_an_exactly_pinned_base(service: str) -> None:
    stages = _stages(_dockerfile(service))
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image)


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_come_from_the_lock_before_sources(service: str) -> None:
    build = _stages(_dockerfile(service))[0]
    steps = [f"{keyword} {args}" for keyword, args in build]
    first_sync = next(i for i, s in enumerate(steps) if "uv sync" in s)
    assert "--frozen" in steps[first_sync]
    assert "--no-install-workspace" in steps[first_sync]
    assert f"--package zhike-{service}" in steps[first_sync]
    lock_copy = next(i for i, s in enumerate(steps) if s.startswith("COPY") and "uv.lock" in s)
    source_copies = [
        i
        for i, s in enumerate(steps)
        if s.startswith("COPY")
        and re.search(r"(libs|services)/\S*/? ", s)
        and "pyproject.toml" not in s
    ]
    assert lock_copy < first_sync < min(source_copies)
    generate = next(i for i, s in enumerate(steps) if "gen_contracts.py" in s and "RUN" in s)
    final_sync = max(i for i, s in enumerate(steps) if "uv sync" in s)
    assert generate < final_sync
    # No dev or bench group (test tools, Splink) in an image.
    assert "--no-default-groups" in steps[final_sync]


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_has_no_build_tools_and_runs_as_numeric_non_root(service: str) -> None:
    final = _stages(_dockerfile(service))[-1]
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


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_exec_form_and_runs_the_service_module(service: str) -> None:
    final = _stages(_dockerfile(service))[-1]
    entrypoint = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert len(entrypoint) == 1
    assert json.loads(entrypoint[0]) == ["python", "-m", f"zhike_{service}"]
    healthcheck = next(args for keyword, args in final if keyword == "HEALTHCHECK")
    assert '["zhike", "health"' in healthcheck


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
