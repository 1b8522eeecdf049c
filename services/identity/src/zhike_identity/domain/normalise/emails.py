"""E-mail addresses: one comparison form, and the junk that staff type to get past a form."""

from __future__ import annotations

import re

from zhike_identity.domain.normalise.errors import Unusable
from zhike_identity.domain.normalise.text import clean, is_placeholder

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path

# The dot-atom local part (RFC 5322) without quoted strings, and a host name with a letter TLD.
# Internationalised addresses are rare enough in bank records to be rejected rather than guessed.
_EMAIL = re.compile(
    r"(?P<local>[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})"
)
_JUNK_LOCAL_PARTS = frozenset(
    {"test", "none", "noemail", "no-email", "nomail", "no", "null", "na", "nil", "xxx", "abc"}
)
_JUNK_DOMAINS = frozenset(
    {
        "test.com",
        "example.com",
        "example.org",
        "example.net",
        "none.com",
        "noemail.com",
        "nomail.com",
        "no.com",
        "xxx.com",
        "abc.com",
        "email.invalid",
    }
)
_ASCENDING = "01234567890123456789"


def normalise_email(raw: str) -> str:
    """Lower-cased and trimmed, or Unusable for junk such as test@test.com, a@a.com or 无."""
    text = clean(raw)
    if not text:
        raise Unusable("empty")
    if is_placeholder(text):
        raise Unusable("placeholder")
    # A Chinese input method types "。" for "."; some exports wrap addresses in mailto: or <>.
    email = "".join(text.lower().replace("。", ".").split())
    email = email.removeprefix("mailto:").strip("<>")
    if len(email) > MAX_EMAIL_LENGTH:
        raise Unusable("too_long", f"{len(email)} characters")
    if not email.isascii():
        raise Unusable("bad_characters", "only ASCII addresses are accepted")
    match = _EMAIL.fullmatch(email)
    if match is None:
        raise Unusable("unknown_format", "not an e-mail address")
    local, domain = match["local"], match["domain"]
    if _is_junk(local, domain):
        raise Unusable("placeholder")
    return email


def _is_junk(local: str, domain: str) -> bool:
    first_label = domain.split(".", 1)[0]
    return (
        local in _JUNK_LOCAL_PARTS
        or domain in _JUNK_DOMAINS
        or domain.startswith("example.")
        or domain.endswith((".example", ".invalid", ".test", ".localhost"))
        or local == first_label  # test@test.com, a@a.com, 123@123.com
        or (len(local) > 1 and len(set(local)) == 1)  # aaaa@qq.com, 000000@163.com
        or (len(local) >= 6 and local in _ASCENDING)  # 123456@qq.com
    )
