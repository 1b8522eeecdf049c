"""Opaque, signed page tokens (RELIABILITY.md §12): a client cannot forge or alter a position.

A token is base64url(JSON payload + HMAC-SHA256). It carries the query it belongs to, so a token
from one listing is refused by another. Replicas share the key: `ZHIKE_PAGE_TOKEN_KEY`, or one
derived from the blind-index key (`app.page_token_key`); a service with neither signs with a
random key per process, and its page tokens work only against the replica that issued them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets

from zhike_runtime.validation import Violations

_MAC_BYTES = 16
DEFAULT_PAGE_SIZE = 50


def page_size(
    v: Violations, field: str, requested: int, *, maximum: int, refuse_above: bool = False
) -> int:
    """How many items a page holds (RELIABILITY.md S11, bad-input class 12): 0 — proto3's
    "not set" — gives the default, anything above `maximum` is clamped to it (a client asking
    for a million rows gets a full page and a next token, not an error or a million rows), or,
    with `refuse_above` (where the contract says so), is a violation naming `field`; a negative
    size is a violation naming `field`."""
    if requested < 0:
        v.add(field, "must not be negative")
        return 0
    if refuse_above and requested > maximum:
        v.add(field, f"must be at most {maximum}, got {requested}")
        return 0
    if requested == 0:
        return min(DEFAULT_PAGE_SIZE, maximum)
    return min(requested, maximum)


class PageTokens:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def issue(self, query: str, position: list[str]) -> str:
        payload = json.dumps({"q": query, "p": position}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def read(self, v: Violations, field: str, query: str, token: str) -> list[str] | None:
        """The position in a token this service issued for `query`; a violation otherwise."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            v.add(field, "is not a page token this service issued")
            return None
        data = json.loads(payload)
        if data.get("q") != query or not isinstance(data.get("p"), list):
            v.add(field, "belongs to another listing")
            return None
        return [str(item) for item in data["p"]]
