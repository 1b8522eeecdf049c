"""The gates' configuration as data: the consent texts the bank shows customers
(`consent_texts.yaml` in this folder, or a settings-provided file that replaces it) and the
parsers of the settings' caps, rate limit, windows and quiet hours.

`load_consent_texts(path)` reads the texts into the domain's `ConsentText`s; `load_gate_policy`
combines them with the caps, dedup window, marketing window and defaults into a `GatePolicy`.
A bad file stops the service with every problem named (file, field, why): `PolicyError`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeGuard

import yaml

from zhike_notifications.domain.gates import CapWindow, ConsentText, Frequency, GatePolicy
from zhike_notifications.domain.quiet_hours import QuietHours, SendWindowPolicy
from zhike_notifications.domain.rate_limit import MAX_LIMIT, MAX_WINDOW, RateWindow
from zhike_notifications.domain.templates import LANGUAGES, TOPIC
from zhike_runtime.errors import FieldViolation, InvalidArgument

DEFAULT_CONSENT_TEXTS = Path(__file__).resolve().parent / "consent_texts.yaml"
# As profile stores it (ConsentEvidence.text_version, at most 32 characters): "CT-2024.2".
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
TEXT_KEYS = frozenset({"version", "message_types", "frequency", "wording"})
MAX_DAYS = 366

_CAP_WINDOW = re.compile(r"(\d{1,3})d?:(\d{1,4})")
_RATE_WINDOW = re.compile(r"(\d{1,5})([smh]):(\d{1,5})")
_RATE_UNITS = {"s": 1, "m": 60, "h": 3600}
_WALL_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
DEFAULT_QUIET_HOURS: QuietHours | None = QuietHours(dt.time(21, 0), dt.time(8, 0))


class PolicyError(InvalidArgument):
    """A consent-texts file that cannot be used; every problem named ("<file>: texts[1].version")."""


# --- consent texts ---------------------------------------------------------------------------


def load_consent_texts(path: Path | None = None) -> dict[str, ConsentText]:
    """The consent texts of `path` (the shipped file when None), by version."""
    source = DEFAULT_CONSENT_TEXTS if path is None else path
    try:
        # safe_load builds plain values only, never objects.
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise PolicyError([FieldViolation(str(source), f"cannot be read: {error}")]) from None
    try:
        return parse_consent_texts(document)
    except InvalidArgument as error:
        # Name the file in each problem: the operator may have several.
        raise PolicyError(
            [FieldViolation(f"{source}: {v.field}", v.description) for v in error.violations]
        ) from None


def parse_consent_texts(document: object) -> dict[str, ConsentText]:
    """`{texts: [{version, message_types, frequency, wording}, …]}` → ConsentText by version;
    raises InvalidArgument naming every problem."""
    entries = document.get("texts") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument([FieldViolation("texts", "is required: a list of consent texts")])
    problems: list[FieldViolation] = []
    texts: dict[str, ConsentText] = {}
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"texts[{index}]"
        found: list[FieldViolation] = []
        text = _consent_text(found, where, entry)
        problems.extend(found)
        if text is None or not text.version:
            continue
        # Checked whatever else is wrong with either entry: both would be fixed at once.
        if text.version in seen:
            problems.append(FieldViolation(f"{where}.version", f"{text.version!r} is listed twice"))
            continue
        seen.add(text.version)
        if not found:
            texts[text.version] = text
    if problems:
        raise InvalidArgument(problems)
    return texts


def _consent_text(problems: list[FieldViolation], where: str, entry: object) -> ConsentText | None:
    def problem(field: str, description: str) -> None:
        problems.append(FieldViolation(f"{where}{field}", description))

    if not isinstance(entry, dict):
        problem("", "must be a mapping: version, message_types, frequency, wording")
        return None
    for key in sorted(set(map(str, entry)) - TEXT_KEYS):
        problem(f".{key}", f"is not a field; the fields are {', '.join(sorted(TEXT_KEYS))}")
    version = entry.get("version")
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        problem(".version", "is required: letters, digits, '.', '-' and '_', at most 32 characters")
        version = ""
    types = entry.get("message_types")
    if not isinstance(types, list) or not types:
        problem(".message_types", "is required: a list of message types (templates' topics)")
        types = []
    topics: set[str] = set()
    for i, topic in enumerate(types):
        if isinstance(topic, str) and TOPIC.fullmatch(topic):
            topics.add(topic)
        else:
            problem(f".message_types[{i}]", "a type is a-z, 0-9 and '_', starting with a letter")
    if "frequency" not in entry:
        # Said explicitly, so that a forgotten frequency is not read as "states none".
        problem(".frequency", "is required: {limit, days}, or null when the text states none")
    frequency = _frequency(problem, entry.get("frequency"))
    wording = entry.get("wording", {})
    if not isinstance(wording, dict) or any(
        language not in LANGUAGES or not isinstance(text, str) for language, text in wording.items()
    ):
        problem(".wording", f"must map a language ({', '.join(LANGUAGES)}) to its text")
    return ConsentText(version, frozenset(topics), frequency)


def _frequency(problem: Callable[[str, str], None], value: object) -> Frequency | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"limit", "days"}:
        problem(".frequency", "must be {limit, days}, or null when the text states none")
        return None
    limit, days = value["limit"], value["days"]
    if not _whole(limit, 1, 1000):
        problem(".frequency.limit", "must be a whole number from 1 to 1000")
    if not _whole(days, 1, MAX_DAYS):
        problem(".frequency.days", f"must be a whole number from 1 to {MAX_DAYS}")
    if not _whole(limit, 1, 1000) or not _whole(days, 1, MAX_DAYS):
        return None
    return Frequency(limit, days)


def _whole(value: object, low: int, high: int) -> TypeGuard[int]:
    # bool is an int to Python, not to the reader of the file.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# --- settings values -------------------------------------------------------------------------


def parse_frequency_cap(text: str) -> tuple[CapWindow, ...]:
    """ "7:2,30:6" → at most 2 marketing messages in any 7 days and 6 in any 30, rolling, across
    all channels ("7d:2,30d:6", the offers' contact-budget spelling, is read the same)."""
    windows: list[CapWindow] = []
    for part in text.split(","):
        found = _CAP_WINDOW.fullmatch(part.strip())
        if found is None:
            raise ValueError(f"{part.strip()!r}: each window is <days>:<limit>, e.g. 7:2,30:6")
        days, limit = int(found.group(1)), int(found.group(2))
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"{part.strip()!r}: days must be from 1 to {MAX_DAYS}")
        windows.append(CapWindow(days, limit))
    if len({window.days for window in windows}) != len(windows):
        raise ValueError("a window's days are listed twice")
    return tuple(sorted(windows, key=lambda window: window.days))


def parse_rate_limit(text: str) -> tuple[RateWindow, ...]:
    """ "1m:10,1h:60" → at most 10 SendNotification requests per party in any minute and 60 in
    any hour, rolling. A window is a whole number of seconds (s), minutes (m) or hours (h), the
    unit always written (a bare number could be read either way), from 1s to 24h; a limit is
    from 1 to 10000."""
    windows: list[RateWindow] = []
    for part in text.split(","):
        found = _RATE_WINDOW.fullmatch(part.strip())
        if found is None:
            raise ValueError(
                f"{part.strip()!r}: each window is <number><s|m|h>:<limit>, e.g. 1m:10,1h:60"
            )
        length = dt.timedelta(seconds=int(found.group(1)) * _RATE_UNITS[found.group(2)])
        limit = int(found.group(3))
        if not dt.timedelta(seconds=1) <= length <= MAX_WINDOW:
            raise ValueError(f"{part.strip()!r}: a window is from 1s to 24h")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"{part.strip()!r}: a limit is from 1 to {MAX_LIMIT}")
        windows.append(RateWindow(length, limit))
    if len({window.length for window in windows}) != len(windows):
        raise ValueError("a window's length is listed twice (60s and 1m are the same)")
    return tuple(sorted(windows, key=lambda window: window.length))


def parse_wall_time(text: str) -> dt.time:
    """ "09:00" → 09:00 local wall time (00:00 to 23:59)."""
    found = _WALL_TIME.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r}: a time of day is HH:MM, 00:00 to 23:59")
    return dt.time(int(found.group(1)), int(found.group(2)))


def parse_quiet_hours(text: str) -> QuietHours | None:
    """ "21:00-08:00" → quiet from 21:00 to 08:00 (across midnight); "none" → no quiet hours."""
    if text.strip().lower() == "none":
        return None
    start, dash, end = text.partition("-")
    if not dash:
        raise ValueError(f"{text!r}: quiet hours are HH:MM-HH:MM, e.g. 21:00-08:00, or none")
    return QuietHours(parse_wall_time(start), parse_wall_time(end))


def load_gate_policy(
    *,
    consent_texts_file: Path | None = None,
    frequency_cap: Sequence[CapWindow] = (CapWindow(7, 2), CapWindow(30, 6)),
    dedup_days: int = 7,
    send_window: SendWindowPolicy | None = None,
    default_quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS,
    default_time_zone: str = "Asia/Shanghai",
    default_language: str = "zh-CN",
) -> GatePolicy:
    """The gates' policy: the consent texts of `consent_texts_file` (the shipped ones when None)
    with the given caps, windows and defaults (`NotificationsSettings.gate_policy()` passes its
    own)."""
    return GatePolicy(
        frequency_cap=tuple(frequency_cap),
        dedup_days=dedup_days,
        consent_texts=load_consent_texts(consent_texts_file),
        send_window=SendWindowPolicy() if send_window is None else send_window,
        default_time_zone=default_time_zone,
        default_quiet_hours=default_quiet_hours,
        default_language=default_language,
    )
