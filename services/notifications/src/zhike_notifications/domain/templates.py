"""Message templates: Jinja2 in a sandbox, checked when saved, masked by default (pure).

A template has a body in zh-CN and in en (and a subject for e-mail), and declares every field it
may use: its kind (which decides how the value is masked), whether it is safe to show in full, and
a sample value. `compile_template` refuses a template — `TemplateRefused`, an `InvalidArgument`
naming each problem's field and line — when it does not parse, uses an undeclared field, asks
`|unmasked` of a field not declared safe, or fails to render with the sample values. So a
template fails when it is saved, never when a message is sent.

Values are masked by default: `{{ phone }}` renders `+86138****5678`, `{{ amount }}` renders
`****`. `{{ product|unmasked }}` shows the value itself, and only for a field declared `safe`.
Every marketing message carries its opt-out: on SMS "回复TD退订" ("Reply TD to unsubscribe" in
en) is appended when the rendered text lacks it; an e-mail gets an unsubscribe link — the
`{{ unsubscribe_url }}` placeholder, filled per message when it is sent — appended to its body
when the template does not place it itself.

SMS length is counted as Chinese gateways bill it: UTF-16 code units (a character outside the BMP,
an emoji, counts two), 70 in a single message, 67 per part of a concatenated one, whatever the
script.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from zhike_notifications.domain.model import Category, Channel
from zhike_runtime import masking
from zhike_runtime.errors import DomainError, InvalidArgument
from zhike_runtime.validation import Violations

LANGUAGES = ("zh-CN", "en")
UNSUBSCRIBE_URL = "unsubscribe_url"  # the reserved placeholder for e-mail's unsubscribe link
SAMPLE_UNSUBSCRIBE_URL = "https://unsubscribe.invalid/sample"
MAX_SOURCE_LENGTH = 10_000
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
TOPIC = re.compile(r"[a-z][a-z0-9_]{0,39}")

SMS_OPT_OUT = MappingProxyType({"zh-CN": "回复TD退订", "en": "Reply TD to unsubscribe"})
EMAIL_OPT_OUT = MappingProxyType(
    {
        "zh-CN": "\n\n如不想再收到此类邮件，请点击退订：{{ unsubscribe_url }}",
        "en": "\n\nTo stop receiving these e-mails, unsubscribe: {{ unsubscribe_url }}",
    }
)
SMS_SINGLE = 70  # UCS-2 characters in a single SMS
SMS_PART = 67  # per part of a concatenated SMS (the rest is the concatenation header)


class FieldKind(enum.StrEnum):
    """What a field holds: decides its masked form."""

    TEXT = "text"  # ****
    NAME = "name"  # 刘**
    PHONE = "phone"  # +86138****5678
    EMAIL = "email"  # z***@example.com
    ID_NUMBER = "id_number"  # 110*************2X
    ACCOUNT = "account"  # ****6789
    ADDRESS = "address"  # 北京市朝阳区****
    AMOUNT = "amount"  # ****
    DATE = "date"  # ****
    CODE = "code"  # a one-time passcode: ****


def _mask_name(value: str) -> str:
    return value[:1] + "*" * max(len(value) - 1, 1) if value else ""


def _mask_all(value: str) -> str:
    return "****" if value else ""


MASKS: Mapping[FieldKind, Callable[[str], str]] = MappingProxyType(
    {
        FieldKind.TEXT: _mask_all,
        FieldKind.NAME: _mask_name,
        FieldKind.PHONE: masking.mask_phone,
        FieldKind.EMAIL: masking.mask_email,
        FieldKind.ID_NUMBER: masking.mask_id_number,
        FieldKind.ACCOUNT: masking.mask_account_id,
        FieldKind.ADDRESS: masking.mask_address,
        FieldKind.AMOUNT: _mask_all,
        FieldKind.DATE: _mask_all,
        FieldKind.CODE: _mask_all,
    }
)


@dataclass(frozen=True)
class FieldSpec:
    sample: str  # a realistic value, rendered when the template is saved
    kind: FieldKind = FieldKind.TEXT
    safe: bool = False  # may be shown in full with |unmasked


@dataclass(frozen=True)
class TemplateDraft:
    template_id: str
    channel: Channel
    category: Category
    bodies: Mapping[str, str]  # language → Jinja2 source
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    subjects: Mapping[str, str] = field(default_factory=dict)  # e-mail only
    # The type of message ("wealth", "fx", "cards"): what a marketing SMS consent must state.
    topic: str = ""


@dataclass(frozen=True)
class SmsLength:
    characters: int  # UTF-16 code units, signature included
    segments: int
    per_segment: int  # 70 for a single message, 67 for each part of a longer one


@dataclass(frozen=True)
class Rendered:
    language: str
    body: str
    subject: str = ""
    sms: SmsLength | None = None
    opt_out_appended: bool = False


class TemplateRefused(InvalidArgument):
    """The template cannot be saved; each violation names the field and, for the source, the
    line: `bodies.zh-CN` — "line 3: 'balance' is not a declared field"."""


class RenderFailed(DomainError):
    """A saved template failed to render a message (names the template and line, never a
    value)."""

    def __init__(
        self, template_id: str, part: str, language: str, line: int | None, reason: str
    ) -> None:
        self.template_id = template_id
        self.part = part  # "bodies" or "subjects"
        self.language = language
        self.line = line
        self.reason = reason
        where = f" line {line}" if line else ""
        super().__init__(f"template {template_id} {part}.{language}{where}: {reason}")


def sms_length(text: str, signature: str = "") -> SmsLength:
    """How a Chinese gateway counts `signature` + `text` (e.g. "【知客银行】")."""
    characters = len((signature + text).encode("utf-16-le")) // 2
    if characters <= SMS_SINGLE:
        return SmsLength(characters, 1 if characters else 0, SMS_SINGLE)
    return SmsLength(characters, math.ceil(characters / SMS_PART), SMS_PART)


class _Value:
    """A field's value inside a template: renders masked; `|unmasked` gives the value itself
    when the field is declared safe. Underscored attributes are out of the sandbox's reach."""

    __slots__ = ("_masked", "_name", "_raw", "_safe")

    def __init__(self, name: str, raw: str, spec: FieldSpec) -> None:
        self._name = name
        self._raw = raw
        self._masked = MASKS[spec.kind](raw)
        self._safe = spec.safe

    def __str__(self) -> str:
        return self._masked

    def __repr__(self) -> str:
        return self._masked

    def __bool__(self) -> bool:
        return bool(self._raw)


def _unmasked(value: object) -> str:
    if isinstance(value, _Value):
        if value._safe:
            return value._raw
        raise SecurityError(f"field {value._name!r} is not declared safe: |unmasked is refused")
    raise SecurityError("|unmasked applies to a declared field only")


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    # No globals (range, dict, lipsum, …): a template only formats its declared fields.
    environment.globals.clear()
    # A render must be the same at save and at send.
    environment.filters.pop("random", None)
    environment.filters["unmasked"] = _unmasked
    return environment


class CompiledTemplate:
    """A template that rendered with its sample values in every language."""

    def __init__(
        self,
        draft: TemplateDraft,
        bodies: Mapping[str, Template],
        subjects: Mapping[str, Template],
    ) -> None:
        self.draft = draft
        self._bodies = dict(bodies)
        self._subjects = dict(subjects)
        # Each language rendered with the sample values (compile_template fills it).
        self.samples: Mapping[str, Rendered] = MappingProxyType({})

    @property
    def template_id(self) -> str:
        return self.draft.template_id

    def render(
        self,
        language: str,
        values: Mapping[str, str],
        *,
        unsubscribe_url: str = "",
        sms_signature: str = "",
    ) -> Rendered:
        """The message in `language` (zh-CN when the template has not that one). Every declared
        field needs a value; a marketing e-mail needs its `unsubscribe_url`. A failure names the
        template, part and line, and only the class of the error: its text could quote a value."""
        return self._render(language, values, unsubscribe_url, sms_signature, explain=False)

    def _render(
        self,
        language: str,
        values: Mapping[str, str],
        unsubscribe_url: str,
        sms_signature: str,
        *,
        explain: bool,
    ) -> Rendered:
        if language not in self._bodies:
            language = LANGUAGES[0]
        violations = Violations()
        for name in sorted(set(values) - set(self.draft.fields)):
            violations.add(f"values.{name}", f"is not a field of template {self.template_id}")
        for name in sorted(self.draft.fields):
            # Present but blank is as missing: an SMS saying "your code is , valid 5 minutes".
            if not values.get(name, "").strip():
                violations.add(f"values.{name}", "is required")
        if template_needs_unsubscribe(self.draft) and not unsubscribe_url:
            violations.add("unsubscribe_url", "a marketing e-mail needs its unsubscribe link")
        violations.raise_if_any()
        context: dict[str, object] = {
            name: _Value(name, values[name], spec) for name, spec in self.draft.fields.items()
        }
        context[UNSUBSCRIBE_URL] = unsubscribe_url
        body = self._run(self._bodies[language], "bodies", language, context, explain)
        subject = ""
        if language in self._subjects:
            subject = self._run(self._subjects[language], "subjects", language, context, explain)
        appended = False
        channel = self.draft.channel
        if channel is Channel.SMS and self.draft.category is Category.MARKETING:
            body, appended = _with_sms_opt_out(body, language)
        sms = sms_length(body, sms_signature) if channel is Channel.SMS else None
        return Rendered(language, body, subject, sms, appended)

    def _run(
        self,
        template: Template,
        part: str,
        language: str,
        context: Mapping[str, object],
        explain: bool,
    ) -> str:
        try:
            return template.render(context).strip()
        except Exception as error:  # noqa: BLE001 - any error of a sandboxed render is reported
            line = _template_line(error.__traceback__)
            # The error's own words only for the sample values (when saving).
            reason = _reason(error) if explain else type(error).__name__
            raise RenderFailed(self.template_id, part, language, line, reason) from None


def compile_template(draft: TemplateDraft) -> CompiledTemplate:
    """Checks and compiles a template, rendering it with the sample values in every language;
    raises `TemplateRefused` naming every problem."""
    violations = Violations()
    violations.token("template_id", draft.template_id, max_length=64)
    if draft.category is Category.MARKETING and not TOPIC.fullmatch(draft.topic):
        violations.add("topic", "a marketing template states its type of message: a-z, 0-9 and '_'")
    elif draft.topic and not TOPIC.fullmatch(draft.topic):
        violations.add("topic", "a-z, 0-9 and '_', starting with a letter")
    for name, spec in sorted(draft.fields.items()):
        if not FIELD_NAME.fullmatch(name) or name == UNSUBSCRIBE_URL:
            violations.add(
                f"fields.{name}",
                f"a field name is a-z, 0-9 and '_' starting with a letter, not {UNSUBSCRIBE_URL}",
            )
        if not spec.sample:
            violations.add(f"fields.{name}.sample", "is required: it is rendered when saved")
    _languages(violations, "bodies", draft.bodies, required=True)
    if draft.channel is Channel.EMAIL:
        _languages(violations, "subjects", draft.subjects, required=True)
    elif draft.subjects:
        violations.add(
            "subjects", f"only e-mail templates have a subject, not {draft.channel.value}"
        )
    _raise(violations)

    bodies: dict[str, Template] = {}
    subjects: dict[str, Template] = {}
    for language in LANGUAGES:
        source = draft.bodies[language]
        if template_needs_unsubscribe(draft) and not _mentions(source, UNSUBSCRIBE_URL):
            source = source.rstrip() + EMAIL_OPT_OUT[language]
        compiled = _compile(violations, f"bodies.{language}", source, draft)
        if compiled is not None:
            bodies[language] = compiled
        if draft.channel is Channel.EMAIL:
            compiled = _compile(violations, f"subjects.{language}", draft.subjects[language], draft)
            if compiled is not None:
                subjects[language] = compiled
    _raise(violations)

    template = CompiledTemplate(draft, bodies, subjects)
    samples: dict[str, Rendered] = {}
    sample_values = {name: spec.sample for name, spec in draft.fields.items()}
    for language in LANGUAGES:
        try:
            rendered = template._render(
                language, sample_values, SAMPLE_UNSUBSCRIBE_URL, "", explain=True
            )
        except RenderFailed as error:
            where = f"line {error.line}: " if error.line else ""
            violations.add(
                f"{error.part}.{language}", f"{where}fails with the sample values: {error.reason}"
            )
            continue
        if not rendered.body:
            violations.add(f"bodies.{language}", "renders empty with the sample values")
        if draft.channel is Channel.EMAIL and (not rendered.subject or "\n" in rendered.subject):
            violations.add(f"subjects.{language}", "must render to one non-empty line")
        samples[language] = rendered
    _raise(violations)
    template.samples = MappingProxyType(samples)
    return template


def _raise(violations: Violations) -> None:
    try:
        violations.raise_if_any()
    except InvalidArgument as error:
        raise TemplateRefused(list(error.violations)) from None


def _languages(
    violations: Violations, name: str, sources: Mapping[str, str], *, required: bool
) -> None:
    for language in sorted(set(sources) - set(LANGUAGES)):
        violations.add(f"{name}.{language}", f"languages are {', '.join(LANGUAGES)}")
    for language in LANGUAGES:
        source = sources.get(language, "")
        if required and not source.strip():
            violations.add(f"{name}.{language}", "is required")
        elif len(source) > MAX_SOURCE_LENGTH:
            violations.add(f"{name}.{language}", f"must be at most {MAX_SOURCE_LENGTH} characters")


def _compile(
    violations: Violations, where: str, source: str, draft: TemplateDraft
) -> Template | None:
    environment = _environment()
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        violations.add(where, f"line {error.lineno}: {error.message}")
        return None
    problems = 0
    declared = set(draft.fields) | {UNSUBSCRIBE_URL}
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in declared and name.name not in assigned:
            violations.add(where, f"line {name.lineno}: {name.name!r} is not a declared field")
            problems += 1
    for used in tree.find_all(nodes.Filter):
        if used.name != "unmasked":
            continue
        target = used.node
        spec = draft.fields.get(target.name) if isinstance(target, nodes.Name) else None
        if spec is None or not spec.safe:
            subject = f"{target.name!r}" if isinstance(target, nodes.Name) else "an expression"
            violations.add(
                where,
                f"line {used.lineno}: |unmasked on {subject}: only a field declared safe may be "
                "shown unmasked",
            )
            problems += 1
    if problems:
        return None
    return environment.from_string(tree)


def template_needs_unsubscribe(draft: TemplateDraft) -> bool:
    """A marketing e-mail carries an unsubscribe link."""
    return draft.channel is Channel.EMAIL and draft.category is Category.MARKETING


def _mentions(source: str, name: str) -> bool:
    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError:
        return False  # reported when it is compiled
    return any(n.name == name for n in tree.find_all(nodes.Name))


def _with_sms_opt_out(body: str, language: str) -> tuple[str, bool]:
    if SMS_OPT_OUT["zh-CN"] in body or SMS_OPT_OUT[language].lower() in body.lower():
        return body, False
    separator = " " if language == "en" else ""
    return f"{body}{separator}{SMS_OPT_OUT[language]}", True


def _template_line(trace: TracebackType | None) -> int | None:
    """The template line an error was raised at: Jinja2 rewrites the traceback so that the
    template's frames carry its own line numbers, under the file name "<template>"."""
    line = None
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == "<template>":
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _reason(error: BaseException) -> str:
    # The exception's own words ('x' is undefined, unsupported operand…), for the sample values.
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
