"""Bearer-token verification: an OIDC access token (JWT) checked against the bank's JWKS.

PyJWT does the cryptography; this module only decides what is acceptable:
- the signature, against a key from the JWKS chosen by `kid` (a file, or a URL fetched in a
  worker thread and cached; an unknown `kid` refreshes it, at most once per `refresh_seconds`,
  so a stream of forged kids cannot hammer the identity provider);
- an algorithm allow-list (RS256, ES256, EdDSA). `none` and every HMAC algorithm are refused
  before any key is looked at, which closes the "HS256 signed with the RSA public key" confusion;
  the key's own type must fit the token's algorithm, too;
- `exp` and `nbf` with a bounded leeway, `iss`, `aud`, and a subject.
Verified tokens are cached until they expire: a channel reuses one token for many calls, and an
RS256 verification costs more than the rest of a cheap RPC. A cached token is verified again
once the key set has changed, so a key the bank withdraws (compromised, say) stops admitting
tokens at once; a key set from a URL is fetched again when it is older than `max_age_seconds`,
and kept as it was if the fetch fails then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.exceptions import InvalidTokenError, PyJWKError, PyJWKSetError

ALLOWED_ALGORITHMS = ("RS256", "ES256", "EdDSA")
# Which JWK key types may sign with which algorithm.
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
_CACHE_SIZE = 10_000
# Fetch errors: the identity provider down or unreachable, or an answer that is no key set.
_FETCH_ERRORS = (OSError, ValueError)

log = logging.getLogger(__name__)


class TokenRejected(Exception):
    """The token is not acceptable. The message says why, never echoes the token."""


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    claims: Mapping[str, Any]
    expires_at: float
    key_set_revision: int = 0  # the key set it was verified against


class KeySet:
    """The JWKS: from a file (re-read when it changes) or from a URL (fetched when a kid is
    unknown, rate-limited)."""

    def __init__(
        self,
        *,
        file: Path | None = None,
        url: str | None = None,
        refresh_seconds: float = 30.0,
        fetch_timeout_seconds: float = 5.0,
        max_age_seconds: float = 300.0,
    ) -> None:
        if (file is None) == (url is None):
            raise ValueError("a key set needs exactly one of a file or a URL")
        self._file = file
        self._url = url
        self._refresh_seconds = refresh_seconds
        self._fetch_timeout = fetch_timeout_seconds
        self._max_age = max_age_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self.revision = 0  # grows each time the keys are replaced
        self._fetched_text = ""
        self._loaded_at = float("-inf")
        self._file_stamp: tuple[float, int] | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> int:
        """The keys brought up to date where they may be stale (a file that changed, a URL's
        set older than its maximum age); their revision."""
        if self._file is not None:
            self._reload_file_if_changed()
        elif time.monotonic() - self._loaded_at >= self._max_age:
            await self._refresh_url()
        return self.revision

    async def key(self, kid: str) -> jwt.PyJWK:
        if self._file is not None:
            self._reload_file_if_changed()
        elif kid not in self._keys:
            await self._refresh_url()
        found = self._keys.get(kid)
        if found is None:
            raise TokenRejected("unknown signing key id")
        return found

    def _reload_file_if_changed(self) -> None:
        assert self._file is not None
        stat = self._file.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._file_stamp:
            self._keys = _parse(self._file.read_text())
            self._file_stamp = stamp
            self.revision += 1

    async def _refresh_url(self) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at < self._refresh_seconds:
                return
            self._loaded_at = time.monotonic()
            try:
                text = await asyncio.to_thread(self._fetch)
                fetched = _parse(text)
            except (*_FETCH_ERRORS, TokenRejected) as error:
                # The keys held stay (an outage of the identity provider must not refuse every
                # caller); with none held, a token cannot be checked: its key is unknown.
                log.warning(
                    "key set fetch failed; keeping the keys held",
                    extra={"error": type(error).__name__, "keys": len(self._keys)},
                )
                return
            if text != self._fetched_text:
                self.revision += 1
            self._keys, self._fetched_text = fetched, text

    def _fetch(self) -> str:
        assert self._url is not None
        with urllib.request.urlopen(self._url, timeout=self._fetch_timeout) as response:
            text: str = response.read().decode()
            return text


def _parse(text: str) -> dict[str, jwt.PyJWK]:
    try:
        key_set = jwt.PyJWKSet.from_dict(json.loads(text))
    except (ValueError, PyJWKSetError, PyJWKError) as error:
        raise TokenRejected(f"the configured key set is unusable: {type(error).__name__}") from None
    return {key.key_id: key for key in key_set.keys if key.key_id}


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS,
        leeway_seconds: float = 30.0,
    ) -> None:
        unknown = set(algorithms) - set(ALLOWED_ALGORITHMS)
        if unknown:
            raise ValueError(f"algorithms not allowed: {sorted(unknown)}")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algorithms
        self._leeway = leeway_seconds
        self._cache: OrderedDict[str, VerifiedToken] = OrderedDict()

    async def verify(self, token: str) -> VerifiedToken:
        now = time.time()
        revision = await self._keys.current()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > now and cached.key_set_revision == revision:
                self._cache.move_to_end(token)
                return cached
            del self._cache[token]
        verified = await self._verify(token, revision)
        self._cache[token] = verified
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return verified

    async def _verify(self, token: str, revision: int) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            raise TokenRejected("not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise TokenRejected(f"algorithm {str(algorithm)[:16]!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no signing key id")
        key = await self._keys.key(kid)
        if key.key_type != _KEY_TYPES[algorithm]:
            raise TokenRejected("the signing key does not fit the token's algorithm")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except InvalidTokenError as error:
            raise TokenRejected(_reason(error)) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise TokenRejected("the token has no subject")
        return VerifiedToken(subject, claims, float(claims["exp"]), revision)


def _reason(error: InvalidTokenError) -> str:
    reasons = {
        "ExpiredSignatureError": "the token has expired",
        "ImmatureSignatureError": "the token is not valid yet",
        "InvalidAudienceError": "the token is for another audience",
        "InvalidIssuerError": "the token is from another issuer",
        "InvalidSignatureError": "the token's signature does not verify",
        "MissingRequiredClaimError": "the token lacks a required claim",
    }
    return reasons.get(type(error).__name__, "the token is not valid")
