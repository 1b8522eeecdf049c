from __future__ import annotations

import os
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator

from zhike_runtime.settings import ServiceSettings, known_time_zone

DEFAULT_BUSINESS_TIME_ZONE = "Asia/Shanghai"


class IdentitySettings(ServiceSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.zhike/identity.db"
    # Required here: this service stores ID numbers, phones and e-mails, sealed under these keys
    # (zhike_runtime.crypto); without them it does not start.
    data_keys: SecretStr
    data_key_id: str
    blind_index_key: SecretStr
    # The bank's time zone (IANA): the day a birth date must not be after.
    business_time_zone: str = DEFAULT_BUSINESS_TIME_ZONE

    @field_validator("business_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        return known_time_zone(value)


def business_zone_of_environment() -> ZoneInfo:
    """The bank's time zone for the command-line tools, which run without the service's other
    settings: ZHIKE_BUSINESS_TIME_ZONE as the service reads it. A ValueError names an unknown
    one."""
    name = os.environ.get("ZHIKE_BUSINESS_TIME_ZONE", DEFAULT_BUSINESS_TIME_ZONE)
    try:
        return ZoneInfo(known_time_zone(name))
    except ValueError as error:
        raise ValueError(f"ZHIKE_BUSINESS_TIME_ZONE: {error}") from None
