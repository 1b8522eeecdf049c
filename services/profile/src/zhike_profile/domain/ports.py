"""What the profile use cases need from storage (storage implements these Protocols)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from zhike_profile.domain.facts import Interaction, SourceKey
from zhike_profile.domain.model import Profile, ProfileRow, SearchCriteria
from zhike_profile.domain.party_facts import StoredFacts
from zhike_profile.domain.snapshot import ProfileChanged, Snapshot
from zhike_profile.domain.source_events import SourceEvent


@dataclass(frozen=True)
class Link:
    """A source record's link as the profile holds it."""

    party_id: str  # the party it belongs to now (linked_party_id, forwarded through merges)
    linked_party_id: str  # the party identity's link event named
    version: int  # identity's link version (0: an event from before versions)
    at: dt.datetime

    def older_than(self, version: int, at: dt.datetime) -> bool:
        """Whether a link event with this version and time supersedes this link."""
        return (self.version, self.at) < (version, at)


@dataclass(frozen=True)
class Published:
    """What the party's last ProfileChanged described."""

    version: int  # 0: none yet
    snapshot: Snapshot


@dataclass(frozen=True)
class StoredInteraction:
    interaction: Interaction
    event_id: str  # with interaction.source.source_system, its key (and page position)
    branch_code: str
    detail: str


class PartyStore(Protocol):
    async def ensure(self, party_id: str, at: dt.datetime) -> None:
        """Creates the profile if it does not exist yet (else only moves its creation time back
        to `at` if that is earlier: the same whichever of its events arrives first)."""
        ...

    async def get(self, party_id: str) -> Profile | None: ...
    async def forwarded_to(self, party_id: str) -> str | None: ...
    async def retire(self, party_id: str, into: str, at: dt.datetime) -> bool:
        """Forwards `party_id` to `into` from now on; False if it already forwarded."""
        ...

    async def links(self, keys: Sequence[SourceKey]) -> dict[SourceKey, Link]: ...
    async def set_link(
        self, key: SourceKey, linked_party_id: str, party_id: str, version: int, at: dt.datetime
    ) -> None: ...
    async def reassign(self, from_party_id: str, to_party_id: str) -> None:
        """The records that belong to `from_party_id` now belong to `to_party_id`."""
        ...

    async def record_keys(self, party_id: str) -> tuple[SourceKey, ...]: ...
    async def set_display_name(self, party_id: str, name: str, at: dt.datetime) -> None:
        """Takes the name unless the one held comes from a later change."""
        ...

    async def published(self, party_id: str) -> Published: ...
    async def publish(
        self, party_id: str, version: int, snapshot: Snapshot, at: dt.datetime
    ) -> None:
        """Keeps the snapshot (and the figures searches use) as of `version`."""
        ...

    async def risk_expiring(self, on: dt.date, limit: int) -> list[str]:
        """Parties whose last ProfileChanged told a risk assessment valid that expires by `on`."""
        ...

    async def search(
        self, criteria: SearchCriteria, after: str | None, limit: int
    ) -> list[ProfileRow]: ...


class FactStore(Protocol):
    async def apply(self, event: SourceEvent, month: dt.date) -> None:
        """Applies each change of the event to its record's facts, unless what is stored is
        as new or newer (`month`: the event's month, for transaction sums)."""
        ...

    async def stored(self, records: Sequence[SourceKey], since: dt.datetime) -> StoredFacts:
        """The records' facts; balance history and interactions from `since` on."""
        ...

    async def interactions(
        self,
        records: Sequence[SourceKey],
        limit: int,
        after: tuple[dt.datetime, str, str] | None,
    ) -> list[StoredInteraction]:
        """Most recent first; `after`: (time, source system, event id) of the previous page's
        last one."""
        ...


class ProfileUnitOfWork(Protocol):
    """One transaction over the profile's state and outbox."""

    @property
    def parties(self) -> PartyStore: ...
    @property
    def facts(self) -> FactStore: ...
    async def lock(self, names: Iterable[str]) -> None: ...
    def record(self, event: ProfileChanged) -> None:
        """An event to publish if, and when, the transaction commits."""
        ...

    async def commit(self) -> None:
        """Commits (a use case that owns its transaction; in a consumer, the consumer does)."""
        ...
