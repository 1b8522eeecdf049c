"""The assessments' configuration files: shipped defaults in this folder, each replaceable.

`load_assessment_config(directory)` reads `fx_rates`, `tiers`, `value_model` and `segments`
(`<name>.yaml`, or `<name>.json`) from `directory` (the ZHIKE_ASSESSMENT_CONFIG_DIR setting; in
Kubernetes a mounted ConfigMap) and takes any file it lacks from the defaults here, so a bank
can replace only its FX rates. Everything is validated before the service starts: a bad file
stops it with every problem named (file, place, and for a segment rule its name and the line and
column in its condition).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from zhike_profile.domain.assessment.config import (
    DOCUMENTS,
    AssessmentConfig,
    AssessmentConfigError,
    ConfigProblem,
    parse_config,
)

DEFAULT_DIRECTORY = Path(__file__).resolve().parent


def config_files(directory: Path | None = None) -> dict[str, Path]:
    """Which file each document comes from: `directory`'s own, else the shipped default."""
    chosen: dict[str, Path] = {}
    for name in DOCUMENTS:
        chosen[name] = DEFAULT_DIRECTORY / f"{name}.yaml"
        if directory is not None:
            for suffix in (".yaml", ".yml", ".json"):
                candidate = directory / f"{name}{suffix}"
                if candidate.is_file():
                    chosen[name] = candidate
                    break
    return chosen


def load_assessment_config(directory: Path | None = None) -> AssessmentConfig:
    if directory is not None and not directory.is_dir():
        raise AssessmentConfigError(
            [ConfigProblem(str(directory), "(directory)", "not a directory")]
        )
    files = config_files(directory)
    documents: dict[str, object] = {}
    problems: list[ConfigProblem] = []
    for name, path in files.items():
        try:
            # JSON is YAML too; safe_load builds plain values only, never objects.
            documents[name] = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            problems.append(ConfigProblem(str(path), "(file)", str(error)))
    if problems:
        raise AssessmentConfigError(problems)
    try:
        return parse_config(documents)
    except AssessmentConfigError as error:
        # Name the file each problem is in, not just the document.
        raise AssessmentConfigError(
            [
                dataclasses.replace(problem, document=str(files[problem.document]))
                for problem in error.problems
            ]
        ) from None
