"""E-mail unsubscribe links (pure): `{public base URL}/unsubscribe/{token}`, where the token is the
notification id with an HMAC-SHA256 over it, so that whoever holds a link can unsubscribe from
what that one e-mail was sent for, and nobody can make a link for another notification.

    token = base64url(notification id) "." base64url(HMAC-SHA256(secret, PURPOSE + id))

(base64url without padding: the token needs no escaping in a URL path.) The id is readable in the
token; it is an opaque identifier, not personal data. The purpose prefix keeps a MAC made here
from ever standing for one made with the same secret for something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

PURPOSE = b"zhike.notifications.unsubscribe.v1\x00"
# The name of the key derived from the blind-index key when no link key is configured.
SIGNING_KEY_PURPOSE = "notifications.unsubscribe_link"
MAX_NOTIFICATION_ID_LENGTH = 200
# base64url of the longest id in UTF-8 (4 bytes a character at most), a dot, the 43 characters
# of a SHA-256 MAC.
MAX_TOKEN_LENGTH = 4 * -(-4 * MAX_NOTIFICATION_ID_LENGTH // 3) + 1 + 43
_TOKEN = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})")


def unsubscribe_token(secret: bytes, notification_id: str) -> str:
    _check_secret(secret)
    if not notification_id or len(notification_id) > MAX_NOTIFICATION_ID_LENGTH:
        raise ValueError(
            f"a notification id has 1 to {MAX_NOTIFICATION_ID_LENGTH} characters to be linked"
        )
    raw_id = notification_id.encode("utf-8")
    return f"{_b64(raw_id)}.{_b64(_mac(secret, raw_id))}"


def notification_of(secret: bytes, token: str) -> str | None:
    """The notification id the token was made for, or None when it was not made with `secret`
    (tampered, truncated, another secret, not a token at all)."""
    _check_secret(secret)
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    try:
        raw_id = _unb64(match.group(1))
        mac = _unb64(match.group(2))
    except (binascii.Error, ValueError):
        return None
    # Compared before the id is decoded, in constant time: nothing is learnt from a forgery.
    if not hmac.compare_digest(mac, _mac(secret, raw_id)):
        return None
    try:
        notification_id = raw_id.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not notification_id or len(notification_id) > MAX_NOTIFICATION_ID_LENGTH:
        return None
    return notification_id


def unsubscribe_url(public_base_url: str, secret: bytes, notification_id: str) -> str:
    """The link an e-mail carries (in its body and in `List-Unsubscribe`)."""
    return f"{public_base_url.rstrip('/')}/unsubscribe/{unsubscribe_token(secret, notification_id)}"


def _mac(secret: bytes, raw_id: bytes) -> bytes:
    return hmac.new(secret, PURPOSE + raw_id, hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    # An empty key would let anyone compute the MAC.
    if not secret:
        raise ValueError("the unsubscribe link secret is empty")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # One bytes value has one encoding: a token with other trailing bits is not ours.
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data
