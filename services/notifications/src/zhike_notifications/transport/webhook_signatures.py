"""Signed provider webhooks, after the Standard Webhooks scheme (standardwebhooks.com):

    Zhike-Webhook-Id          the delivery's id: unique per delivery, the replay key
    Zhike-Webhook-Timestamp   unix seconds when it was signed
    Zhike-Webhook-Signature   v1=<hex HMAC-SHA256(secret, f"{id}.{timestamp}.".encode() + body)>

The MAC covers the exact bytes of the body, so it is checked before the body is parsed. During a
secret rotation a provider holds several secrets and the header carries several space-separated
signatures: one that matches any of the provider's secrets is enough. Signatures of versions other
than v1 are ignored (a later scheme can be added beside it).

A refusal names the check that failed and never quotes what was sent.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ID_HEADER = "Zhike-Webhook-Id"
TIMESTAMP_HEADER = "Zhike-Webhook-Timestamp"
SIGNATURE_HEADER = "Zhike-Webhook-Signature"
HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
VERSION = "v1"

MAX_ID_LENGTH = 200
MAX_SIGNATURES = 8  # a rotation needs two; the bound keeps a request from costing many MACs
MAX_SIGNATURE_HEADER_LENGTH = 1024
# Printable ASCII without spaces, dots (the id ends at the first dot of the signed content) or
# anything a log or URL would need escaped.
_ID = re.compile(rf"[A-Za-z0-9_:+/=-]{{1,{MAX_ID_LENGTH}}}")
_TIMESTAMP = re.compile(r"[0-9]{1,10}")  # up to the year 2286
_HEX_MAC = re.compile(r"[0-9a-fA-F]{64}")


class SignatureCheck(enum.StrEnum):
    """Which check refused a webhook."""

    UNKNOWN_PROVIDER = "unknown_provider"
    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    TIMESTAMP_OUTSIDE_TOLERANCE = "timestamp_outside_tolerance"
    BAD_SIGNATURE = "bad_signature"


class SignatureRefused(Exception):
    def __init__(self, check: SignatureCheck, detail: str) -> None:
        super().__init__(f"{check.value}: {detail}")
        self.check = check
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    provider: str
    delivery_id: str
    signed_at: dt.datetime


class SignatureVerifier:
    """Verifies webhooks against each provider's secrets (several during a rotation)."""

    def __init__(
        self,
        secrets: Mapping[str, Sequence[bytes]],
        tolerance: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        if tolerance <= dt.timedelta(0):
            raise ValueError("the timestamp tolerance must be positive")
        for provider, keys in secrets.items():
            # An empty key would let anyone compute the MAC.
            if any(not key for key in keys):
                raise ValueError(f"an empty webhook secret for provider {provider!r}")
        self._secrets = {provider: tuple(keys) for provider, keys in secrets.items() if keys}
        self.tolerance = tolerance

    def verify(
        self, provider: str, headers: Mapping[str, str], body: bytes, now: dt.datetime
    ) -> Verified:
        """Raises `SignatureRefused` naming the failed check. `headers` may be any mapping; names
        are matched without regard to case, and a header sent twice is refused as malformed."""
        keys = self._secrets.get(provider)
        if keys is None:
            raise SignatureRefused(
                SignatureCheck.UNKNOWN_PROVIDER, "no webhook secret is configured for this provider"
            )
        values = _headers(headers)
        delivery_id = values[ID_HEADER]
        timestamp = values[TIMESTAMP_HEADER]
        if not _ID.fullmatch(delivery_id):
            raise SignatureRefused(
                SignatureCheck.MALFORMED_HEADER,
                f"{ID_HEADER} must be 1 to {MAX_ID_LENGTH} of A-Z a-z 0-9 _ : + / = -",
            )
        if not _TIMESTAMP.fullmatch(timestamp):
            raise SignatureRefused(
                SignatureCheck.MALFORMED_HEADER, f"{TIMESTAMP_HEADER} must be unix seconds"
            )
        signed_at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
        if abs(now - signed_at) > self.tolerance:
            raise SignatureRefused(
                SignatureCheck.TIMESTAMP_OUTSIDE_TOLERANCE,
                f"{TIMESTAMP_HEADER} is more than {int(self.tolerance.total_seconds())} s "
                "from this server's clock",
            )
        offered = _v1_signatures(values[SIGNATURE_HEADER])
        content = _signed_content(delivery_id, timestamp, body)
        expected = [hmac.new(key, content, hashlib.sha256).digest() for key in keys]
        # Every pair is compared, in constant time each, whatever matched first.
        matched = False
        for signature in offered:
            for mac in expected:
                matched |= hmac.compare_digest(signature, mac)
        if not matched:
            raise SignatureRefused(
                SignatureCheck.BAD_SIGNATURE,
                f"no {VERSION} signature matches this provider's secrets over the exact body",
            )
        return Verified(provider, delivery_id, signed_at)


def sign(secret: bytes, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers for a webhook of `body` (the local gateway and tests send with them)."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    stamp = str(timestamp)
    mac = hmac.new(secret, _signed_content(delivery_id, stamp, body), hashlib.sha256).hexdigest()
    return {
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: f"{VERSION}={mac}",
    }


def _signed_content(delivery_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{delivery_id}.{timestamp}.".encode() + body


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    wanted = {name.lower(): name for name in HEADERS}
    found: dict[str, list[str]] = {name: [] for name in HEADERS}
    # items(), not [name]: Starlette's Headers list a header sent twice twice.
    for name, value in headers.items():
        canonical = wanted.get(name.lower())
        if canonical is not None:
            found[canonical].append(value)
    values: dict[str, str] = {}
    for name in HEADERS:
        if not found[name]:
            raise SignatureRefused(SignatureCheck.MISSING_HEADER, f"{name} is missing")
        if len(found[name]) > 1:
            raise SignatureRefused(
                SignatureCheck.MALFORMED_HEADER, f"{name} is sent more than once"
            )
        values[name] = found[name][0].strip()
    return values


def _v1_signatures(header: str) -> list[bytes]:
    if len(header) > MAX_SIGNATURE_HEADER_LENGTH:
        raise SignatureRefused(
            SignatureCheck.MALFORMED_HEADER,
            f"{SIGNATURE_HEADER} is longer than {MAX_SIGNATURE_HEADER_LENGTH} characters",
        )
    entries = header.split()
    if not entries or len(entries) > MAX_SIGNATURES:
        raise SignatureRefused(
            SignatureCheck.MALFORMED_HEADER,
            f"{SIGNATURE_HEADER} holds 1 to {MAX_SIGNATURES} space-separated signatures",
        )
    signatures: list[bytes] = []
    for entry in entries:
        version, separator, mac = entry.partition("=")
        if not separator:
            raise SignatureRefused(
                SignatureCheck.MALFORMED_HEADER,
                f"each signature in {SIGNATURE_HEADER} is <version>=<hex MAC>",
            )
        if version != VERSION:
            continue
        if not _HEX_MAC.fullmatch(mac):
            raise SignatureRefused(
                SignatureCheck.MALFORMED_HEADER,
                f"a {VERSION} signature is 64 hex digits",
            )
        signatures.append(bytes.fromhex(mac))
    if not signatures:
        raise SignatureRefused(
            SignatureCheck.BAD_SIGNATURE, f"{SIGNATURE_HEADER} holds no {VERSION} signature"
        )
    return signatures
