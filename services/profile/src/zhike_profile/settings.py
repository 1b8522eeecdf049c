from __future__ import annotations

from pydantic import Field

from zhike_runtime.settings import ServiceSettings


class ProfileSettings(ServiceSettings):
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    database_url: str = "sqlite+aiosqlite:///.zhike/profile.db"
