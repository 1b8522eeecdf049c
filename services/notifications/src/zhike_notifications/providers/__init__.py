"""Channel adapters: e-mail over SMTP, SMS and push over HTTP provider APIs (base.py says how a
send is answered and how its failures are classified)."""

from zhike_notifications.providers.base import (
    OutboundMessage,
    Provider,
    ProviderAccepted,
    ProviderError,
)
from zhike_notifications.providers.email import SmtpProvider
from zhike_notifications.providers.http import HttpProvider

__all__ = [
    "HttpProvider",
    "OutboundMessage",
    "Provider",
    "ProviderAccepted",
    "ProviderError",
    "SmtpProvider",
]
