from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from zhike_runtime.settings import ServiceSettings, known_time_zone


class IdentitySettings(ServiceSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.zhike/identity.db"
    # Required here: this service stores ID numbers, phones and e-mails, sealed under these keys
    # (zhike_runtime.crypto); without them it does not start.
    data_keys: SecretStr
    data_key_id: str
    blind_index_key: SecretStr
    # The bank's time zone (IANA): the day a birth date must not be after.
    business_time_zone: str = "Asia/Shanghai"

    @field_validator("business_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        return known_time_zone(value)
