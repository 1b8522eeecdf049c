from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    DirectoryPath,
    Field,
    FilePath,
    SecretStr,
    field_validator,
    model_validator,
)

from zhike_notifications.domain.gates import GatePolicy
from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.quiet_hours import SendWindowPolicy
from zhike_notifications.domain.rate_limit import RateWindow
from zhike_notifications.domain.retry import RetryPolicy
from zhike_notifications.policy import (
    PolicyError,
    load_gate_policy,
    parse_frequency_cap,
    parse_quiet_hours,
    parse_rate_limit,
    parse_wall_time,
)
from zhike_runtime.errors import FieldViolation
from zhike_runtime.settings import ServiceSettings, known_time_zone

# A provider's name as the failover order lists it.
_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class ProviderSettings(BaseModel):
    """One provider account: an HTTP SMS or push API (`http(s)://…`) or an SMTP server
    (`smtp://host:port`, `smtps://` for implicit TLS)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    channel: Literal["sms", "push", "email"]
    url: str
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _url_fits_the_channel(self) -> ProviderSettings:
        scheme = self.url.split("://", 1)[0]
        wanted = ("smtp", "smtps") if self.channel == "email" else ("http", "https")
        if scheme not in wanted or "://" not in self.url:
            raise ValueError(
                f"{self.name}: the url of an {self.channel} provider is {' or '.join(wanted)}://…"
            )
        return self


class NotificationsSettings(ServiceSettings):
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.zhike/notifications.db"
    # Template values and inbox texts are sealed with these (zhike_runtime.crypto): required.
    data_keys: SecretStr
    data_key_id: str
    blind_index_key: SecretStr

    # --- dispatch policy as data (templates/, policy/, calendars/): what is sent, which gates
    # it passes, how failed sends are retried. A file or directory set here replaces the
    # shipped one (and is checked whole at start-up: a bad one stops the service).
    templates_dir: DirectoryPath | None = None  # template files, templates/*.yaml's format
    consent_texts_file: FilePath | None = None  # policy/consent_texts.yaml's format
    calendar_file: FilePath | None = None  # calendars/cn.yaml's format
    # Marketing messages per party across all channels, rolling windows: "<days>:<limit>,…".
    frequency_cap: str = "7:2,30:6"
    # SendNotification requests per party, any category and channel, rolling windows:
    # "<number><s|m|h>:<limit>,…". Over it a request is refused (RESOURCE_EXHAUSTED, with when
    # to retry) and nothing is stored.
    party_rate_limit: str = "1m:10,1h:60"
    # The same offer (or template) to a party on any channel at most once in this many days.
    dedup_days: int = Field(default=7, ge=0, le=366)
    # Marketing goes out on working days inside this window, customer's local time (HH:MM).
    marketing_window_start: str = "09:00"
    marketing_window_end: str = "20:00"
    # For a customer who set none: quiet hours ("HH:MM-HH:MM", may cross midnight, or "none"),
    # time zone (IANA) and language.
    default_quiet_hours: str = "21:00-08:00"
    default_time_zone: str = "Asia/Shanghai"
    default_language: Literal["zh-CN", "en"] = "zh-CN"
    # Providers per channel in failover order (a JSON list of the names they are set up under).
    providers_sms: list[str] = Field(default=["local_sms"])
    providers_email: list[str] = Field(default=["local_email"])
    providers_push: list[str] = Field(default=["local_push"])
    # Attempts per message over all providers, then FAILED; between rounds of providers an
    # exponential backoff with full jitter from the base up to the max.
    max_attempts: int = Field(default=6, ge=1, le=50)
    retry_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=300.0, gt=0, le=86400)
    # Send records and consent records are kept at least five months (China's rules on
    # commercial SMS), so no less than 150 days.
    retention_days: int = Field(default=150, ge=150, le=3660)
    # The customer's in-app inbox keeps a message this long. The send record above is what the
    # five months apply to; the inbox copy is the customer's to read.
    inbox_message_retention_days: int = Field(default=365, ge=30, le=3660)

    # --- providers: each one the failover orders above may name (a JSON list in
    # ZHIKE_PROVIDERS). The defaults are the local gateways `make run` starts.
    providers: list[ProviderSettings] = Field(
        default_factory=lambda: [
            ProviderSettings(name="local_sms", channel="sms", url="http://127.0.0.1:8025"),
            ProviderSettings(name="local_push", channel="push", url="http://127.0.0.1:8025"),
            ProviderSettings(name="local_email", channel="email", url="smtp://127.0.0.1:1025"),
        ]
    )
    # The sender of e-mail, and the signature gateways in China put before every SMS (counted
    # in its length).
    email_sender: str = "知客银行 <notify@zhike.example>"
    sms_signature: str = "【知客银行】"

    # --- dispatch: a round takes up to a batch of due notifications; between rounds with
    # nothing due it waits this long (or less: a new message wakes it). An attempt in flight is
    # left to its dispatcher for the lease, then any replica takes it up again (same provider,
    # same out-id: the provider deduplicates).
    dispatch_batch_size: int = Field(default=64, ge=1, le=1000)
    dispatch_idle_seconds: float = Field(default=1.0, gt=0, le=60)
    dispatch_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    retention_check_seconds: float = Field(default=3600.0, gt=0, le=86400)

    # --- provider webhooks and unsubscribe links (transport/webhooks.py), served on their own
    # HTTP port. Secrets: a JSON object, provider name → list of secrets (several while one is
    # rotated). The public URL is what the unsubscribe links in e-mails point at.
    webhook_host: str = "0.0.0.0"
    webhook_port: int = Field(default=8026, ge=0, le=65535)
    webhook_public_url: str = "http://127.0.0.1:8026"
    webhook_secrets: dict[str, list[SecretStr]] = Field(default_factory=dict)
    webhook_tolerance_seconds: float = Field(default=300.0, gt=0, le=3600)
    # Signs unsubscribe links (from a Secret). Unset: a key derived from the blind-index key,
    # which every replica holds and a restart keeps, so a link sent works on any replica later.
    unsubscribe_link_key: SecretStr | None = None

    # --- the party directory (transport/directory.py): identity and the profile, asked for
    # the party's addresses and preferences when a notification is sent. Defaults: where `make
    # run` and each service's own settings put them.
    identity_address: str = "localhost:50051"
    profile_address: str = "localhost:50052"
    # Per call; the two calls run side by side, so a send waits at most this long for both.
    directory_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # The bearer token (a notifications_dispatcher role) sent with each call: a file, re-read
    # when it changes (a mounted Kubernetes Secret is rotated in place), or, for development,
    # the token itself. One of the two must be set.
    service_token: SecretStr = SecretStr("")
    service_token_file: Path | None = None
    # TLS to identity and the profile: the CA that signs their certificates (without it, the
    # system's CAs), and a client certificate and key for services that require mTLS. Any of
    # them switches both connections to TLS.
    directory_tls_ca_file: FilePath | None = None
    directory_tls_cert_file: FilePath | None = None
    directory_tls_key_file: FilePath | None = None

    @field_validator("service_token_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # ZHIKE_SERVICE_TOKEN_FILE="" means no file (not the current directory).
        return None if value == "" else value

    @model_validator(mode="after")
    def _directory_access_holds_together(self) -> NotificationsSettings:
        if self.service_token.get_secret_value() and self.service_token_file is not None:
            raise ValueError("ZHIKE_SERVICE_TOKEN and ZHIKE_SERVICE_TOKEN_FILE: set one, not both")
        if (self.directory_tls_cert_file is None) != (self.directory_tls_key_file is None):
            raise ValueError(
                "ZHIKE_DIRECTORY_TLS_CERT_FILE and ZHIKE_DIRECTORY_TLS_KEY_FILE: "
                "set both or neither"
            )
        return self

    # --- dispatch policy: checks and the domain objects built from it.

    @field_validator("templates_dir", "consent_texts_file", "calendar_file", mode="before")
    @classmethod
    def _no_file_when_empty(cls, value: object) -> object:
        # ZHIKE_TEMPLATES_DIR="" means the shipped ones (not the current directory).
        return None if value == "" else value

    @field_validator("frequency_cap")
    @classmethod
    def _frequency_cap(cls, value: str) -> str:
        parse_frequency_cap(value)
        return value

    @field_validator("party_rate_limit")
    @classmethod
    def _party_rate_limit(cls, value: str) -> str:
        parse_rate_limit(value)
        return value

    @field_validator("marketing_window_start", "marketing_window_end")
    @classmethod
    def _wall_time(cls, value: str) -> str:
        parse_wall_time(value)
        return value

    @field_validator("default_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @field_validator("default_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        return known_time_zone(value)

    @field_validator("providers_sms", "providers_email", "providers_push")
    @classmethod
    def _failover_order(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError("a JSON list of provider names, at least one, each once")
        for name in value:
            if not _PROVIDER_NAME.fullmatch(name):
                raise ValueError(f"{name!r}: a provider name is a-z, 0-9, '_' and '-'")
        return value

    @model_validator(mode="after")
    def _providers_hold_together(self) -> NotificationsSettings:
        names = [provider.name for provider in self.providers]
        if len(set(names)) != len(names):
            raise ValueError("ZHIKE_PROVIDERS: each provider name once")
        channels = {provider.name: provider.channel for provider in self.providers}
        for channel, order in (
            ("sms", self.providers_sms),
            ("email", self.providers_email),
            ("push", self.providers_push),
        ):
            for name in order:
                if channels.get(name) != channel:
                    raise ValueError(
                        f"ZHIKE_PROVIDERS_{channel.upper()}: {name!r} is not a {channel} "
                        "provider in ZHIKE_PROVIDERS"
                    )
        # A call to a provider is cut at half the lease (another replica takes an attempt up
        # once its lease runs out): a provider's own time-out must fit inside that.
        for provider in self.providers:
            if provider.timeout_seconds >= self.dispatch_lease_seconds / 2:
                raise ValueError(
                    f"ZHIKE_PROVIDERS: {provider.name}'s timeout_seconds "
                    f"({provider.timeout_seconds:g}) must be under half of "
                    f"ZHIKE_DISPATCH_LEASE_SECONDS ({self.dispatch_lease_seconds:g})"
                )
        return self

    @model_validator(mode="after")
    def _dispatch_policy_holds_together(self) -> NotificationsSettings:
        if parse_wall_time(self.marketing_window_start) >= parse_wall_time(
            self.marketing_window_end
        ):
            raise ValueError(
                "ZHIKE_MARKETING_WINDOW_START must be before ZHIKE_MARKETING_WINDOW_END "
                "(the window does not cross midnight)"
            )
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("ZHIKE_RETRY_MAX_SECONDS must be at least ZHIKE_RETRY_BASE_SECONDS")
        return self

    def gate_policy(self) -> GatePolicy:
        """The gates' policy; reads the consent texts (a bad file raises PolicyError, and so
        does a window longer than what retention keeps: the gates would not see its sends)."""
        policy = load_gate_policy(
            consent_texts_file=self.consent_texts_file,
            frequency_cap=parse_frequency_cap(self.frequency_cap),
            dedup_days=self.dedup_days,
            send_window=SendWindowPolicy(
                parse_wall_time(self.marketing_window_start),
                parse_wall_time(self.marketing_window_end),
            ),
            default_quiet_hours=parse_quiet_hours(self.default_quiet_hours),
            default_time_zone=self.default_time_zone,
            default_language=self.default_language,
        )
        if policy.history_days > self.retention_days:
            raise PolicyError(
                [
                    FieldViolation(
                        "ZHIKE_RETENTION_DAYS",
                        f"is {self.retention_days} days, shorter than the longest window the "
                        f"gates count sends in ({policy.history_days} days: frequency cap, "
                        "dedup or a consent text's frequency)",
                    )
                ]
            )
        return policy

    def rate_limit(self) -> tuple[RateWindow, ...]:
        """The per-party rate limit on SendNotification requests."""
        return parse_rate_limit(self.party_rate_limit)

    def retry_policy(self, channel: Channel) -> RetryPolicy:
        """The failover order and backoff of `channel` (the inbox has no providers)."""
        providers = {
            Channel.SMS: self.providers_sms,
            Channel.EMAIL: self.providers_email,
            Channel.PUSH: self.providers_push,
        }.get(channel)
        if providers is None:
            raise ValueError(f"{channel.value} is not sent through providers")
        return RetryPolicy(
            providers=tuple(providers),
            max_attempts=self.max_attempts,
            base_delay=dt.timedelta(seconds=self.retry_base_seconds),
            max_delay=dt.timedelta(seconds=self.retry_max_seconds),
        )
