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


async def apply_parties_merged(
    profiles: ProfileRepository, survivor: str, retired: list[str], at: dt.datetime
) -> None:
    """Merged parties' profiles combine into the survivor's; the retired ids forward to it."""
    await profiles.ensure(survivor, at)
    for party_id in retired:
        await profiles.ensure(party_id, at)
        await profiles.absorb(survivor, party_id, at)


async def apply_party_split(
    profiles: ProfileRepository,
    party_id: str,
    new_party_id: str,
    keys: list[tuple[str, str]],
    at: dt.datetime,
) -> None:
    """A split divides the profile by source record: the listed ones go to the new party."""
    await profiles.ensure(party_id, at)
    await profiles.ensure(new_party_id, at)
    await profiles.move_records(keys, new_party_id, at)


async def apply_source_record_moved(
    profiles: ProfileRepository, key: tuple[str, str], to_party_id: str, at: dt.datetime
) -> None:
    await profiles.ensure(to_party_id, at)
    await profiles.move_records([key], to_party_id, at)


async def apply_golden_name(
    profiles: ProfileRepository, party_id: str, name: str, at: dt.datetime
) -> None:
    await profiles.ensure(party_id, at)
    await profiles.set_display_name(party_id, name, at)


# A forwarding chain longer than this means corrupt data, not a real history of merges.
_MAX_FORWARDS = 100


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
            current = party_id
            for _ in range(_MAX_FORWARDS):
                forwarded = await profiles.forwarded_to(current)
                if forwarded is None:
                    break
                current = forwarded  # a merged party answers with its survivor's profile
            profile = await profiles.get(current)
        if profile is None:
            raise NotFound("profile", party_id)
        return profile
