"""Masking of identifiers in anything a channel or a log sees (JR/T 0171 style).

ID numbers keep their first 3 and last 2 characters, phones their country code, first 3 and last
4 digits, e-mails their first letter and domain. Names are not masked: channels need them.
"""

from __future__ import annotations


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
