"""The shipped message templates: one YAML file per template in this folder, named
`<template_id>.yaml`.

`load_templates(directory)` reads them (or every `*.yaml` and `*.yml` file of another directory,
which then replaces the shipped ones: a bank's wording is its own) and compiles each with
`zhike_notifications.domain.templates.compile_template` before the service starts, so a template
fails at start-up, never when a message is sent. A bad file stops the service with every problem
of every file named (file, template, field and why); two files with one template id are refused.

A file holds:

    template_id: otp_sms_v1          # the file's name without .yaml
    channel: sms                     # sms | email | push | inbox
    category: transactional          # marketing | service | transactional
    topic: wealth                    # the type of message; required for marketing
    fields:                          # every value the template may use
      code: {kind: code, safe: true, sample: "482916"}
    subjects: {zh-CN: …, en: …}      # e-mail only
    bodies: {zh-CN: …, en: …}

A field's `kind` (default `text`) decides how its value is masked; `safe: true` allows
`|unmasked`; `sample` (text, required) is rendered when the template is compiled.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from zhike_notifications.domain.model import Category, Channel
from zhike_notifications.domain.templates import (
    CompiledTemplate,
    FieldKind,
    FieldSpec,
    TemplateDraft,
    TemplateRefused,
    compile_template,
)
from zhike_runtime.errors import FieldViolation, InvalidArgument

DEFAULT_DIRECTORY = Path(__file__).resolve().parent
SUFFIXES = (".yaml", ".yml")
KEYS = frozenset({"template_id", "channel", "category", "topic", "fields", "subjects", "bodies"})
FIELD_KEYS = frozenset({"kind", "safe", "sample"})

# Records a problem of the file being read: (field, message).
_Problem = Callable[[str, str], None]
_Enum = TypeVar("_Enum", bound=enum.StrEnum)


@dataclass(frozen=True)
class TemplateProblem:
    source: str  # the file
    template_id: str  # "" when the file has no usable id
    field: str  # "bodies.zh-CN", "fields.code.kind", "(file)"
    message: str

    def __str__(self) -> str:
        template = f" template {self.template_id!r}" if self.template_id else ""
        return f"{self.source}:{template} {self.field}: {self.message}"

    def violation(self) -> FieldViolation:
        return FieldViolation(f"{self.source}: {self.field}", self.message)


class TemplatesError(InvalidArgument):
    """Template files that cannot be loaded; every problem of every file named."""

    def __init__(self, problems: Sequence[TemplateProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__([problem.violation() for problem in self.problems])
        self.args = ("; ".join(str(problem) for problem in self.problems),)


def template_files(directory: Path | None = None) -> list[Path]:
    folder = DEFAULT_DIRECTORY if directory is None else directory
    return sorted(path for path in folder.iterdir() if path.suffix in SUFFIXES and path.is_file())


def load_templates(directory: Path | None = None) -> dict[str, CompiledTemplate]:
    """Every template of `directory` (the shipped ones when None), compiled, by template id."""
    if directory is not None and not directory.is_dir():
        raise TemplatesError(
            [TemplateProblem(str(directory), "", "(directory)", "not a directory")]
        )
    files = template_files(directory)
    if not files:
        folder = str(DEFAULT_DIRECTORY if directory is None else directory)
        raise TemplatesError([TemplateProblem(folder, "", "(directory)", "holds no .yaml file")])
    problems: list[TemplateProblem] = []
    templates: dict[str, CompiledTemplate] = {}
    first_file: dict[str, Path] = {}
    for path in files:
        template_id, compiled = _load_file(path, problems)
        # Checked whether or not the file compiled, so a second file does not hide behind the
        # first one's problems; a misnamed file is refused for its name and claims no id.
        if template_id != path.stem:
            continue
        if template_id in first_file:
            problems.append(
                TemplateProblem(
                    str(path),
                    template_id,
                    "template_id",
                    f"already defined in {first_file[template_id].name}",
                )
            )
            continue
        first_file[template_id] = path
        if compiled is not None:
            templates[template_id] = compiled
    if problems:
        raise TemplatesError(problems)
    return dict(sorted(templates.items()))


def _load_file(path: Path, problems: list[TemplateProblem]) -> tuple[str, CompiledTemplate | None]:
    """The file's template id ("" when it has none) and, when it has no problem, the compiled
    template."""
    source = str(path)
    try:
        # safe_load builds plain values only, never objects.
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        problems.append(TemplateProblem(source, "", "(file)", f"cannot be read: {error}"))
        return "", None
    found: list[TemplateProblem] = []
    draft = _draft(source, document, path.stem, found)
    template_id = document.get("template_id") if isinstance(document, dict) else None
    template_id = template_id if isinstance(template_id, str) else ""
    compiled = None
    if draft is not None and not found:
        try:
            compiled = compile_template(draft)
        except TemplateRefused as refused:
            found.extend(
                TemplateProblem(source, draft.template_id, v.field, v.description)
                for v in refused.violations
            )
    problems.extend(found)
    return template_id, compiled


def _draft(
    source: str, document: object, stem: str, problems: list[TemplateProblem]
) -> TemplateDraft | None:
    if not isinstance(document, dict):
        problems.append(TemplateProblem(source, "", "(document)", "must be a mapping of fields"))
        return None
    raw_id = document.get("template_id")
    template_id = raw_id if isinstance(raw_id, str) else ""

    def problem(field: str, message: str) -> None:
        problems.append(TemplateProblem(source, template_id, field, message))

    for key in sorted(set(map(str, document)) - KEYS):
        problem(key, f"is not a template field; the fields are {', '.join(sorted(KEYS))}")
    if not template_id:
        problem("template_id", "is required (text)")
    elif template_id != stem:
        problem("template_id", f"the file must be named {template_id}.yaml")
    channel = _choice(document, "channel", Channel, problem)
    category = _choice(document, "category", Category, problem)
    topic = document.get("topic", "")
    if not isinstance(topic, str):
        problem("topic", "must be text")
        topic = ""
    bodies = _languages(document, "bodies", problem)
    subjects = _languages(document, "subjects", problem)
    fields = _fields(document.get("fields", {}), problem)
    if channel is None or category is None:
        return None
    return TemplateDraft(template_id, channel, category, bodies, fields, subjects, topic)


def _choice(
    document: Mapping[str, object],
    key: str,
    kind: type[_Enum],
    problem: _Problem,
    prefix: str = "",
) -> _Enum | None:
    value = document.get(key)
    allowed = ", ".join(member.value for member in kind)
    if value is None:
        problem(f"{prefix}{key}", f"is required: one of {allowed}")
        return None
    for member in kind:
        if member.value == value:
            return member
    problem(f"{prefix}{key}", f"{value!r} is not one of {allowed}")
    return None


def _languages(document: Mapping[str, object], key: str, problem: _Problem) -> dict[str, str]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        problem(key, "must be a mapping of language to text (zh-CN, en)")
        return {}
    texts: dict[str, str] = {}
    for language, text in value.items():
        if not isinstance(text, str):
            problem(f"{key}.{language}", "must be text")
            continue
        texts[str(language)] = text
    return texts


def _fields(value: object, problem: _Problem) -> dict[str, FieldSpec]:
    if not isinstance(value, dict):
        problem("fields", "must be a mapping of field name to {kind, safe, sample}")
        return {}
    specs: dict[str, FieldSpec] = {}
    for name, raw in value.items():
        where = f"fields.{name}"
        if not isinstance(raw, dict):
            problem(where, "must be a mapping: {kind, safe, sample}")
            continue
        for key in sorted(set(map(str, raw)) - FIELD_KEYS):
            problem(f"{where}.{key}", "is not a field setting; they are kind, safe and sample")
        kind: FieldKind | None = FieldKind.TEXT
        if "kind" in raw:
            kind = _choice(raw, "kind", FieldKind, problem, prefix=f"{where}.")
        safe = raw.get("safe", False)
        if not isinstance(safe, bool):
            problem(f"{where}.safe", "must be true or false")
            safe = False
        sample = raw.get("sample")
        if not isinstance(sample, str):
            # A number would be re-formatted by YAML (5000.00 → 5000.0): the sample is quoted text.
            problem(f"{where}.sample", "is required, as quoted text")
            sample = ""
        if kind is not None:
            specs[str(name)] = FieldSpec(sample=sample, kind=kind, safe=safe)
    return specs
