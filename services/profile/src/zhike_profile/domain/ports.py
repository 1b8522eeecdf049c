"""What the profile use cases need from storage."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from zhike_profile.domain.model import LinkedSourceRecord, Profile


class ProfileRepository(Protocol):
    async def get(self, party_id: str) -> Profile | None: ...
    async def ensure(self, party_id: str, at: dt.datetime) -> None:
        """Creates the profile if it does not exist yet; touches nothing otherwise."""
        ...

    async def link(self, party_id: str, record: LinkedSourceRecord) -> None:
        """Attaches the source record to the party's profile (moving it if it was elsewhere)."""
        ...
