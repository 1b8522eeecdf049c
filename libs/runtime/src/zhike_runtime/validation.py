"""Input checks shared by every service's domain validation (pure, no I/O).

A validator collects every violation of a request before raising, so a caller learns about all
offending fields in one round trip.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from zhike_runtime.errors import FieldViolation, InvalidArgument


def iana_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone `name`; None when it names none: unknown, malformed, a folder of
    the zone database such as "Asia", for which ZoneInfo raises IsADirectoryError, or a file
    there that is no zone of the database's own (`localtime` is the host's setting, `posix/`
    and `right/` are other builds of it): what they mean changes from one host to the next."""
    if name in _HOST_FILES or name.startswith(_OTHER_BUILDS):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


_HOST_FILES = frozenset({"localtime", "posixrules", "Factory"})
_OTHER_BUILDS = ("posix/", "right/")


# Format characters that can disguise text (zero-width, bidi overrides) are refused with controls.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
_SUBJECT_SAFE = re.compile(r"[A-Za-z0-9_-]+")


class Violations:
    """Collects field violations; `raise_if_any` raises one InvalidArgument naming them all."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(list(self._items))

    def text(self, field: str, value: str, *, required: bool = False, max_length: int = 200) -> str:
        """Checks free text; returns it NFC-normalised and stripped (empty when refused).

        The length limit applies to the normalised text, which is what gets stored.
        """
        if len(value) > 4 * max_length:  # refuse huge inputs before any work on them
            self.add(field, f"must be at most {max_length} characters, got {len(value)}")
            return ""
        bad = sorted(
            {f"U+{ord(c):04X}" for c in value if unicodedata.category(c) in _FORBIDDEN_CATEGORIES}
        )
        if bad:
            self.add(field, f"contains control or invisible characters: {', '.join(bad[:5])}")
            return ""
        cleaned = unicodedata.normalize("NFC", value).strip()
        if len(cleaned) > max_length:
            self.add(field, f"must be at most {max_length} characters, got {len(cleaned)}")
            return ""
        if required and not cleaned:
            self.add(field, "is required")
        return cleaned

    def token(self, field: str, value: str, *, required: bool = True, max_length: int = 64) -> str:
        """Checks a code that may end up in a NATS subject or a key: letters, digits, - and _."""
        if not value:
            if required:
                self.add(field, "is required")
            return ""
        if len(value) > max_length:
            self.add(field, f"must be at most {max_length} characters, got {len(value)}")
            return ""
        if not _SUBJECT_SAFE.fullmatch(value):
            self.add(field, "may hold only letters, digits, '-' and '_'")
            return ""
        return value

    def uuid(self, field: str, value: str) -> str:
        """Checks an id this platform issued (a canonical lower-case UUID)."""
        if not value:
            self.add(field, "is required")
            return ""
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            self.add(field, "must be a UUID")
            return ""
        if str(parsed) != value:
            self.add(field, "must be a UUID in canonical lower-case form")
            return ""
        return value
