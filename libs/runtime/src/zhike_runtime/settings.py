"""Service settings from ZHIKE_* environment variables, validated once at start-up.

Each service subclasses `ServiceSettings` to set its own defaults (ports, database file). A bad
value stops the process with a message naming the variable, before anything is started.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Literal, Self, TypeVar

from pydantic import (
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from zhike_runtime.auth.permissions import CUSTOMER_ROLES
from zhike_runtime.crypto import FieldKeys, field_keys, parse_data_keys, parse_key
from zhike_runtime.validation import iana_zone

ENV_PREFIX = "ZHIKE_"
MIB = 1024 * 1024
# The streams the services declare: ZHIKE_IDENTITY, ZHIKE_SOURCE, ZHIKE_DLQ, ...
STREAM_NAME = re.compile(r"ZHIKE_[A-Z0-9_]+")
# Three years, leap days included: the shortest time processing records are kept.
AUDIT_RETENTION_MIN_DAYS = 3 * 365 + 1


class FieldKeySettings(BaseSettings):
    """The keys that protect personal data at rest (`zhike_runtime.crypto`), from a Secret.

    No default key: a service that stores personal data refuses to start without them (its
    settings make them required), and `make run` and the tests supply throwaway ones."""

    # Inputs hidden from validation errors (inherited by every service's settings): an error's
    # text must never carry a key, a password in a URL or any other secret it was given.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # JSON {"<key id>": "<base64 of 32 bytes>"}: every data key still sealing stored values.
    data_keys: SecretStr | None = None
    # The key id new values are sealed under (`zhike rotate-keys` re-seals the others).
    data_key_id: str | None = None
    # Base64 of 32 bytes; keys the blind indexes (look-ups over encrypted values). Changing it
    # needs the indexes rebuilt (`zhike identity reindex`).
    blind_index_key: SecretStr | None = None

    @field_validator("data_keys")
    @classmethod
    def _data_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_data_keys(value.get_secret_value())  # ValueError texts never echo a key
        return value

    @field_validator("blind_index_key")
    @classmethod
    def _blind_index_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key(value.get_secret_value(), "the blind-index key")
        return value

    @model_validator(mode="after")
    def _field_keys_together(self) -> Self:
        given = [self.data_keys is not None, self.data_key_id is not None]
        given.append(self.blind_index_key is not None)
        if any(given) and not all(given):
            raise ValueError(
                "ZHIKE_DATA_KEYS, ZHIKE_DATA_KEY_ID and ZHIKE_BLIND_INDEX_KEY: set all three or none"
            )
        if self.data_keys is not None and self.blind_index_key is not None:
            keys = parse_data_keys(self.data_keys.get_secret_value())
            if self.data_key_id not in keys:
                raise ValueError("ZHIKE_DATA_KEY_ID: must be one of the key ids in ZHIKE_DATA_KEYS")
            if parse_key(self.blind_index_key.get_secret_value(), "") in keys.values():
                raise ValueError("ZHIKE_BLIND_INDEX_KEY: must differ from every data key")
        return self


class NatsSettings(BaseSettings):
    """How to reach NATS, who to be there, and how much the streams a service declares may
    hold: part of every service's settings, and all of the `zhike dlq` command's. The files come
    from Secrets mounted read-only (docs/operations.md, "NATS permissions")."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # One or more comma-separated nats:// or tls:// URLs.
    nats_url: str = "nats://127.0.0.1:4222"
    # Who we are, one or the other: a creds file (user JWT and seed, for servers run in
    # operator/JWT mode) or an NKey seed file (for nkey users listed in the server's own config).
    nats_creds_file: FilePath | None = None
    nats_nkey_seed_file: FilePath | None = None
    # TLS: the CA that signs the servers' certificates (without it, the system's CAs), and a
    # client certificate and key for servers that verify clients (mTLS).
    nats_tls_ca_file: FilePath | None = None
    nats_tls_cert_file: FilePath | None = None
    nats_tls_key_file: FilePath | None = None
    # TLS before the server says anything, for servers with `tls { handshake_first: true }`: no
    # plaintext greeting that a man in the middle could use to talk the client out of TLS.
    nats_tls_handshake_first: bool = False
    # The most bytes each JetStream stream a service declares may hold, and, by stream name,
    # the streams that need another size (ZHIKE_DLQ included; every service declares the dead
    # letters, so give them all the same value). A stream at its limit refuses new events: its
    # producers' publishes fail (events wait in the outbox) and it keeps what it holds until
    # ZHIKE_STREAM_MAX_AGE_SECONDS removes it, so one stream filling up cannot fill the
    # JetStream store and stop the others. The defaults (6 streams, 1,152 MiB in all) fit a
    # 2 GiB JetStream volume; size them for production: docs/operations.md, "Stream sizing".
    stream_max_bytes: int = Field(default=128 * MIB, ge=MIB)
    stream_max_bytes_by_stream: dict[str, int] = Field(
        default_factory=lambda: {"ZHIKE_SOURCE": 512 * MIB}
    )

    @field_validator("stream_max_bytes_by_stream")
    @classmethod
    def _limits_name_streams(cls, value: dict[str, int]) -> dict[str, int]:
        for stream, limit in value.items():
            if not STREAM_NAME.fullmatch(stream):
                raise ValueError(f"not a stream name (ZHIKE_<NAME>): {stream!r}")
            if limit < MIB:
                raise ValueError(f"{stream}: at least {MIB} bytes (1 MiB), got {limit}")
        return value

    @field_validator("nats_url")
    @classmethod
    def _known_nats(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://")):
                raise ValueError("each URL must start with nats:// or tls://")
        return value

    @model_validator(mode="after")
    def _nats_access_holds_together(self) -> Self:
        if self.nats_creds_file is not None and self.nats_nkey_seed_file is not None:
            raise ValueError(
                "ZHIKE_NATS_CREDS_FILE and ZHIKE_NATS_NKEY_SEED_FILE: set one or neither"
            )
        if (self.nats_tls_cert_file is None) != (self.nats_tls_key_file is None):
            raise ValueError(
                "ZHIKE_NATS_TLS_CERT_FILE and ZHIKE_NATS_TLS_KEY_FILE: set both or neither"
            )
        tls_asked = (
            self.nats_tls_ca_file is not None
            or self.nats_tls_cert_file is not None
            or self.nats_tls_handshake_first
        )
        plaintext = [u for u in self.nats_url.split(",") if not u.strip().startswith("tls://")]
        # Said in the URL too, so that what a reader of the configuration sees is what runs.
        if tls_asked and plaintext:
            raise ValueError("ZHIKE_NATS_TLS_*: needs tls:// URLs in ZHIKE_NATS_URL")
        return self


class ServiceSettings(FieldKeySettings, NatsSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # Plaintext health-only port, so probes keep working when the service port needs mTLS.
    # Unset: no separate health port (health is still answered on the service port).
    health_port: int | None = Field(default=None, ge=0, le=65535)
    # TLS on the service port (zhike_runtime.tls): certificate chain and key, both or neither;
    # with a client CA, mTLS; with allowed names, only client certificates naming one of them
    # (SAN DNS names or URIs, a JSON list). The files are re-read when they change.
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    tls_client_ca_file: FilePath | None = None
    tls_allowed_client_names: list[str] = Field(default_factory=list)
    database_url: str = "sqlite+aiosqlite:///.zhike/service.db"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    # PostgreSQL TLS, libpq's sslmode names; unset: as the URL says (asyncpg's default, prefer).
    # verify-ca and verify-full need the CA that signs the server's certificate.
    database_ssl_mode: (
        Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None
    ) = None
    database_ssl_root_cert: FilePath | None = None
    stream_replicas: int = Field(default=1, ge=1, le=5)
    stream_duplicate_window_seconds: float = Field(default=120.0, gt=0, le=86400)
    # Events (and dead letters) carry personal data: JetStream deletes them after this long.
    # A consumer that is down longer than this misses events; 30 days covers any outage.
    stream_max_age_seconds: float = Field(default=30 * 86400, ge=3600, le=366 * 86400)
    run_migrations: bool = True
    # PostgreSQL limits of a migration's transaction (zhike_runtime.migrations): DDL gives up
    # on a lock after this long instead of making live traffic queue behind it, and a
    # statement may run at most this long. Either way the migration rolls back whole.
    migration_lock_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    migration_statement_timeout_seconds: float = Field(default=300.0, gt=0, le=86400)
    grpc_reflection: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_seconds: float = Field(default=20.0, gt=0, le=600)
    # After SIGTERM, health answers NOT_SERVING but calls are still served this long, while
    # Kubernetes takes the pod out of the Service endpoints (callers learn of it late); only
    # then does the shutdown grace above begin. 0 stops at once (tests, make run).
    lame_duck_seconds: float = Field(default=5.0, ge=0, le=120)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_concurrent_rpcs: int = Field(default=1000, ge=1)
    # Of those, the most health and reflection calls on the service port at once: they need no
    # token, so a caller without one holds no more. Each channel that uses gRPC's client-side
    # health checking holds one health Watch per replica: raise it beyond the count of such
    # channels. The kubelet's probes use the health port, which this does not bound.
    max_public_calls: int = Field(default=64, ge=1)
    # The most items one page of a listing returns, whatever page_size the caller asks for.
    max_page_size: int = Field(default=200, ge=1, le=10_000)
    health_check_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    outbox_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    outbox_batch_size: int = Field(default=256, ge=1, le=10_000)
    outbox_publish_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Published rows are kept this long after their ack, for audit and replay, then deleted.
    outbox_retention_seconds: float = Field(default=7 * 86400, ge=0)
    consumer_batch_size: int = Field(default=64, ge=1, le=1000)
    consumer_max_deliver: int = Field(default=5, ge=1, le=100)
    # Delay before redelivery n+1 of a failed event: one value per retry (max_deliver - 1 values).
    consumer_backoff_seconds: list[float] = Field(default=[1.0, 2.0, 4.0, 8.0])
    consumer_ack_wait_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How long an idle consumer's fetch waits for an event before it asks again. A stopping
    # service waits out the fetch in flight (an event arriving meanwhile is handed back at
    # once, not left to AckWait), so this bounds that part of a shutdown.
    consumer_fetch_wait_seconds: float = Field(default=1.0, gt=0, le=30)
    # Inbox rows (the event ids a consumer has applied) are deleted after this long. It must
    # outlast the stream's max age: an event still in the stream can be redelivered, and its
    # inbox row is what absorbs it. Unset: the stream max age plus 7 days.
    consumer_inbox_retention_seconds: float | None = Field(default=None, gt=0)
    consumer_inbox_prune_interval_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # Signs page tokens; every replica of a service needs the same one (from a Secret).
    page_token_key: SecretStr | None = None
    # A server-side cap on every call's run time, whatever deadline (or none) the caller set.
    max_rpc_seconds: float = Field(default=30.0, gt=0, le=3600)
    # "development" only where `zhike token` may mint tokens (make run, tests); never in a cluster.
    profile: Literal["development", "production"] = "production"
    # Caller identity: OIDC access tokens (JWT) verified against the bank's JWKS (a file or a
    # URL, exactly one), issued by `auth_issuer` for `auth_audience`.
    auth_jwks_file: Path | None = None
    auth_jwks_url: str | None = None
    auth_issuer: str = ""
    auth_audience: str = "zhike"
    auth_algorithms: list[Literal["RS256", "ES256", "EdDSA"]] = Field(
        default=["RS256", "ES256", "EdDSA"], min_length=1
    )
    auth_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    auth_jwks_refresh_seconds: float = Field(default=30.0, ge=1, le=86400)
    # Role -> permissions (a JSON object of lists); unset: the defaults in auth/permissions.py.
    auth_roles_file: Path | None = None
    auth_roles_claim: str = Field(default="roles", min_length=1)
    auth_party_claim: str = Field(default="party_id", min_length=1)
    # Roles that act for one customer (the mobile app): a token holding one must carry the
    # party claim, so an identity provider that leaves the claim out cannot open every party.
    auth_customer_roles: list[str] = Field(default=list(CUSTOMER_ROLES))
    # Audit records of personal-data reads and steward writes: processing records, which S7
    # (RELIABILITY.md) keeps at least 3 years; refusals are logs, kept as long with them.
    audit_retention_days: int = Field(default=3 * 366, ge=AUDIT_RETENTION_MIN_DAYS)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("consumer_backoff_seconds")
    @classmethod
    def _positive_backoff(cls, value: list[float]) -> list[float]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("must be a non-empty JSON list of positive seconds, e.g. [1, 2, 4]")
        return value

    @model_validator(mode="after")
    def _one_key_set(self) -> ServiceSettings:
        if (self.auth_jwks_file is None) == (self.auth_jwks_url is None):
            raise ValueError(
                "ZHIKE_AUTH_JWKS_FILE or ZHIKE_AUTH_JWKS_URL: set exactly one "
                "(the key set that verifies callers' tokens)"
            )
        if not self.auth_issuer:
            raise ValueError("ZHIKE_AUTH_ISSUER: required (the `iss` callers' tokens must carry)")
        if self.auth_jwks_url is not None and not self.auth_jwks_url.startswith(
            ("https://", "http://")
        ):
            raise ValueError("ZHIKE_AUTH_JWKS_URL: must be an https:// (or http://) URL")
        return self

    @model_validator(mode="after")
    def _public_calls_below_the_limit(self) -> ServiceSettings:
        if self.max_public_calls >= self.max_concurrent_rpcs:
            raise ValueError(
                "ZHIKE_MAX_PUBLIC_CALLS must be below ZHIKE_MAX_CONCURRENT_RPCS: health and "
                "reflection, which need no token, could otherwise hold every call slot"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_hold_together(self) -> ServiceSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("ZHIKE_TLS_CERT_FILE and ZHIKE_TLS_KEY_FILE: set both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "ZHIKE_TLS_CLIENT_CA_FILE needs ZHIKE_TLS_CERT_FILE and ZHIKE_TLS_KEY_FILE "
                "(client certificates are asked for only over TLS)"
            )
        if self.tls_allowed_client_names and self.tls_client_ca_file is None:
            raise ValueError(
                "ZHIKE_TLS_ALLOWED_CLIENT_NAMES needs ZHIKE_TLS_CLIENT_CA_FILE "
                "(the names are read from verified client certificates)"
            )
        verifying = self.database_ssl_mode in ("verify-ca", "verify-full")
        if verifying and self.database_ssl_root_cert is None:
            raise ValueError(
                f"ZHIKE_DATABASE_SSL_MODE={self.database_ssl_mode} needs "
                "ZHIKE_DATABASE_SSL_ROOT_CERT (the CA that signs the server's certificate)"
            )
        if self.database_ssl_root_cert is not None and not verifying:
            raise ValueError(
                "ZHIKE_DATABASE_SSL_ROOT_CERT is used only with ZHIKE_DATABASE_SSL_MODE "
                "verify-ca or verify-full"
            )
        if self.database_ssl_mode is not None and not self.database_url.startswith("postgresql"):
            raise ValueError("ZHIKE_DATABASE_SSL_MODE: applies to PostgreSQL URLs only")
        return self

    @model_validator(mode="after")
    def _max_age_covers_duplicate_window(self) -> ServiceSettings:
        # JetStream refuses a stream whose duplicate window is longer than its max age.
        if self.stream_duplicate_window_seconds > self.stream_max_age_seconds:
            raise ValueError(
                "ZHIKE_STREAM_DUPLICATE_WINDOW_SECONDS: must not exceed "
                "ZHIKE_STREAM_MAX_AGE_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _inbox_outlasts_the_stream(self) -> ServiceSettings:
        retention = self.consumer_inbox_retention_seconds
        if retention is not None and retention <= self.stream_max_age_seconds:
            raise ValueError(
                "ZHIKE_CONSUMER_INBOX_RETENTION_SECONDS: must exceed ZHIKE_STREAM_MAX_AGE_SECONDS "
                "(a redelivered event older than its inbox row would be applied twice)"
            )
        return self

    @property
    def inbox_retention_seconds(self) -> float:
        """How long consumers keep inbox rows: as set, or the stream max age plus 7 days."""
        if self.consumer_inbox_retention_seconds is not None:
            return self.consumer_inbox_retention_seconds
        return self.stream_max_age_seconds + 7 * 86400

    @model_validator(mode="after")
    def _backoff_fits_deliveries(self) -> ServiceSettings:
        if self.consumer_max_deliver > 1 and len(self.consumer_backoff_seconds) > (
            self.consumer_max_deliver - 1
        ):
            raise ValueError(
                "ZHIKE_CONSUMER_BACKOFF_SECONDS: needs at most ZHIKE_CONSUMER_MAX_DELIVER - 1 values"
            )
        return self

    def backoff_for(self, delivery: int) -> float:
        """Delay before redelivering an event whose `delivery`-th attempt failed."""
        index = min(max(delivery - 1, 0), len(self.consumer_backoff_seconds) - 1)
        return self.consumer_backoff_seconds[index]


S = TypeVar("S", bound=ServiceSettings)


def describe_errors(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        name = f"{ENV_PREFIX}{location[0].upper()}" if location else "settings"
        lines.append(f"{name}: {item['msg']}")
    return lines


def load_settings(settings_type: type[S]) -> S:
    """Builds the settings from the environment, or stops the process naming each bad variable."""
    try:
        return settings_type()
    except ValidationError as error:
        sys.stderr.write("invalid configuration:\n")
        for line in describe_errors(error):
            sys.stderr.write(f"  {line}\n")
        raise SystemExit(2) from None


def load_field_keys() -> FieldKeys:
    """The field keys from the environment (for command-line tools such as `zhike rotate-keys`),
    or stops the process naming each bad or missing variable."""
    try:
        keys = field_keys(FieldKeySettings())
    except ValidationError as error:
        sys.stderr.write("invalid configuration:\n")
        for line in describe_errors(error):
            sys.stderr.write(f"  {line}\n")
        raise SystemExit(2) from None
    if keys is None:
        sys.stderr.write(
            "invalid configuration:\n  ZHIKE_DATA_KEYS, ZHIKE_DATA_KEY_ID, ZHIKE_BLIND_INDEX_KEY: "
            "required (the keys that protect personal data at rest)\n"
        )
        raise SystemExit(2)
    return keys


def known_time_zone(value: str) -> str:
    """`value` if it names an IANA time zone; a ValueError naming it otherwise (for settings'
    validators)."""
    if iana_zone(value) is None:
        raise ValueError(f"not an IANA time zone: {value!r}")
    return value
