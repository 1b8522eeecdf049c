from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import DirectoryPath, Field, field_validator

from zhike_runtime.settings import ServiceSettings


class ProfileSettings(ServiceSettings):
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.zhike/profile.db"
    # A directory whose fx_rates / tiers / value_model / segments (.yaml or .json) replace the
    # shipped defaults in zhike_profile/config/ (zhike_profile.config.load_assessment_config).
    assessment_config_dir: DirectoryPath | None = None
    # The bank's time zone (IANA): what "today" is for assessments (a risk assessment's expiry,
    # the month a transaction counts in).
    business_time_zone: str = "Asia/Shanghai"
    # How often the profile looks for risk assessments that expired (and tells them).
    risk_expiry_check_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # How often the profile looks for parties not assessed today (the daily refresh: what time
    # alone changed, such as a customer turning dormant, is told the day it happens).
    daily_refresh_check_seconds: float = Field(default=900.0, gt=0, le=86400)

    @field_validator("business_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"not an IANA time zone: {value!r}") from error
        return value
