"""Masking of personal data in anything a caller without the `*.read_pii` permission, a log or
an event sees. One pattern for the platform, after JR/T 0171-2020 Annex A style de-identification:

| data | kept | example |
|---|---|---|
| ID number | first 3 and last 2 characters | `110*************2X` |
| phone | country code, first 3 and last 4 digits | `+86138****5678` |
| e-mail | first letter and the domain | `z***@example.com` |
| address | the leading administrative part (at most 6 characters, at most a third) | `北京市朝阳区****` |
| account number or reference | the last 4 characters | `****6789` |

Names are not masked: every channel greets the customer by name.
"""

from __future__ import annotations

_HIDDEN = "****"


def mask_id_number(value: str) -> str:
    if len(value) <= 5:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]


def mask_phone(value: str) -> str:
    digits = value.removeprefix("+86")
    prefix = value[: len(value) - len(digits)]
    if len(digits) <= 7:
        return prefix + "*" * len(digits)
    return prefix + digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    if not domain:
        return "*" * len(value)
    return f"{local[:1]}***@{domain}"


def mask_address(value: str) -> str:
    """Keeps where, roughly (province, city, district), never the street or the door."""
    text = value.strip()
    if not text:
        return ""
    kept = min(6, len(text) // 3)
    return text[:kept] + _HIDDEN


def mask_account_id(value: str) -> str:
    """Account numbers and references: enough to tell a customer's accounts apart, no more."""
    if len(value) <= 4:
        return "*" * len(value)
    return _HIDDEN + value[-4:]
