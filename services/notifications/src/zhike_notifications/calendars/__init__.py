"""The shipped working-day calendar: `cn.yaml` in this folder (China, from the State Council's
yearly notices). `load_calendar(path)` reads it, or another file in the same format that replaces
it (a settings-provided path); a bad file stops the service with every problem named. The format
and its rules are `zhike_notifications.domain.calendar`'s.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from zhike_notifications.domain.calendar import CalendarError, WorkingCalendar, parse_calendar
from zhike_runtime.errors import FieldViolation

DEFAULT_FILE = Path(__file__).resolve().parent / "cn.yaml"


def load_calendar(path: Path | None = None) -> WorkingCalendar:
    source = DEFAULT_FILE if path is None else path
    try:
        # safe_load builds plain values only (ISO dates become datetime.date), never objects.
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CalendarError([FieldViolation(str(source), f"cannot be read: {error}")]) from None
    try:
        return parse_calendar(document)
    except CalendarError as error:
        # Name the file in each problem: the operator may have several.
        raise CalendarError(
            [FieldViolation(f"{source}: {v.field}", v.description) for v in error.violations]
        ) from None
