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

    async def move_records(
        self, keys: list[tuple[str, str]], party_id: str, at: dt.datetime
    ) -> None:
        """Moves the listed source records (source system, record id) to the party's profile."""
        ...

    async def absorb(self, survivor: str, retired: str, at: dt.datetime) -> None:
        """Moves every record of `retired` to `survivor`; `retired` forwards there from now on."""
        ...

    async def forwarded_to(self, party_id: str) -> str | None: ...
    async def set_display_name(self, party_id: str, name: str, at: dt.datetime) -> None: ...
