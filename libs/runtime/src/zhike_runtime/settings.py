"""Service settings from ZHIKE_* environment variables, validated once at start-up.

Each service subclasses `ServiceSettings` to set its own defaults (ports, database file). A bad
value stops the process with a message naming the variable, before anything is started.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ZHIKE_"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # Plaintext health-only port, so probes keep working when the service port needs mTLS.
    # Unset: no separate health port (health is still answered on the service port).
    health_port: int | None = Field(default=None, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.zhike/service.db"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds_file: Path | None = None
    stream_replicas: int = Field(default=1, ge=1, le=5)
    stream_duplicate_window_seconds: float = Field(default=120.0, gt=0, le=86400)
    run_migrations: bool = True
    grpc_reflection: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_seconds: float = Field(default=20.0, gt=0, le=600)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_concurrent_rpcs: int = Field(default=1000, ge=1)
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
    # Signs page tokens; every replica of a service needs the same one (from a Secret).
    page_token_key: SecretStr | None = None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("nats_url")
    @classmethod
    def _known_nats(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://")):
                raise ValueError("each URL must start with nats:// or tls://")
        return value

    @field_validator("consumer_backoff_seconds")
    @classmethod
    def _positive_backoff(cls, value: list[float]) -> list[float]:
        if not value or any(v <= 0 for v in value):
            raise ValueError("must be a non-empty JSON list of positive seconds, e.g. [1, 2, 4]")
        return value

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
