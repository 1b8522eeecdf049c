"""Profile use cases.

Identity events may arrive in any order (a retried publish can overtake the one before it), so
each handler creates the profile if it is missing rather than assume PartyCreated came first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from zhike_profile.domain.model import LinkedSourceRecord, Profile
from zhike_profile.domain.ports import ProfileRepository
from zhike_runtime.errors import NotFound
from zhike_runtime.validation import Violations


async def apply_party_created(profiles: ProfileRepository, party_id: str, at: dt.datetime) -> None:
    await profiles.ensure(party_id, at)


async def apply_source_record_linked(
    profiles: ProfileRepository, party_id: str, record: LinkedSourceRecord
) -> None:
    await profiles.ensure(party_id, record.linked_at)
    await profiles.link(party_id, record)


class ProfileQueries:
    def __init__(
        self, profiles: Callable[[], AbstractAsyncContextManager[ProfileRepository]]
    ) -> None:
        self._profiles = profiles

    async def get_profile(self, party_id: str) -> Profile:
        v = Violations()
        v.uuid("party_id", party_id)
        v.raise_if_any()
        async with self._profiles() as profiles:
            profile = await profiles.get(party_id)
        if profile is None:
            raise NotFound("profile", party_id)
        return profile
