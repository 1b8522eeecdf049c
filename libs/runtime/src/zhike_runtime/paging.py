"""Opaque, sealed page tokens (RELIABILITY.md §12): a client can neither read, forge nor alter
a position, nor use another caller's token.

A token is base64url(nonce + AES-256-GCM(payload)), the payload holding the query it belongs to
(a token from one listing is refused by another), the position and an expiry (a day); the
caller's token subject is its associated data, so a token works only for the caller it was
issued to (`bind_page_token_owner`, which the gRPC server sets for every call). Replicas share
the key: `ZHIKE_PAGE_TOKEN_KEY`, or one derived from the blind-index key (`app.page_token_key`);
a service with neither seals with a random key per process, and its page tokens work only
against the replica that issued them.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from zhike_runtime.validation import Violations

_NONCE_BYTES = 12
# Long enough to page through any listing by hand, short enough that a token found in a log or a
# browser history a week later is worth nothing.
TOKEN_LIFETIME_SECONDS = 24 * 3600
# Far above any token issued here (a position of a few ids): longer is refused unread.
_MAX_TOKEN_LENGTH = 2048
DEFAULT_PAGE_SIZE = 50

# The token subject of the call being served ("" outside one): a token binds to it.
_OWNER: contextvars.ContextVar[str] = contextvars.ContextVar("zhike_page_token_owner", default="")


def bind_page_token_owner(owner: str) -> contextvars.Token[str]:
    """Page tokens issued and read from here on (in this context) belong to `owner`."""
    return _OWNER.set(owner)


def unbind_page_token_owner(token: contextvars.Token[str]) -> None:
    _OWNER.reset(token)


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
    def __init__(self, key: bytes | None = None, *, clock: Callable[[], float] = time.time) -> None:
        secret = key or secrets.token_bytes(32)
        # A key of its own for sealing, whatever `key` is (a passphrase, a derived key).
        self._aead = AESGCM(hmac.new(secret, b"zhike.page_tokens.v2", hashlib.sha256).digest())
        self._clock = clock

    def issue(self, query: str, position: list[str]) -> str:
        expires = int(self._clock()) + TOKEN_LIFETIME_SECONDS
        payload = json.dumps({"q": query, "p": position, "e": expires}, separators=(",", ":"))
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, payload.encode(), _OWNER.get().encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def read(self, v: Violations, field: str, query: str, token: str) -> list[str] | None:
        """The position in a token this service issued to this caller for `query`, not expired;
        a violation otherwise."""
        if not token:
            return None
        payload = self._open(token)
        if payload is None:
            v.add(field, "is not a page token this service issued to this caller")
            return None
        data = json.loads(payload)
        if data.get("q") != query or not isinstance(data.get("p"), list):
            v.add(field, "belongs to another listing")
            return None
        if not isinstance(data.get("e"), int) or data["e"] < self._clock():
            v.add(field, "has expired: start the listing again")
            return None
        return [str(item) for item in data["p"]]

    def _open(self, token: str) -> bytes | None:
        if len(token) > _MAX_TOKEN_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _NONCE_BYTES:
            return None
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _OWNER.get().encode())
        except InvalidTag:
            return None
