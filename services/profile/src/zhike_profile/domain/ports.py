"""What the profile use cases need from storage (storage implements these Protocols)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from zhike_profile.domain.facts import Interaction, SentMessage, SourceKey
from zhike_profile.domain.model import Profile, ProfileRow, SearchCriteria
from zhike_profile.domain.party_facts import StoredFacts
from zhike_profile.domain.read_model import ReadModel
from zhike_profile.domain.snapshot import EMPTY, ProfileChanged, Snapshot
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
class PartyState:
    """What assessing a party again starts from: what its last ProfileChanged described, where
    it forwards to, and its golden record's birth date."""

    version: int = 0  # 0: no ProfileChanged yet
    snapshot: Snapshot = EMPTY
    merged_into: str | None = None
    birth_date: dt.date | None = None
    assessed_on: dt.date = dt.date(1970, 1, 1)  # the day of its read model (never: 1970)


@dataclass(frozen=True)
class Publication:
    """A party assessed again: its snapshot as of `version`, and its read model (None for a
    party merged away). `changed`: the version or the snapshot moved (else only the read model
    is written, and the profile's update time stays)."""

    party_id: str
    version: int
    snapshot: Snapshot
    changed: bool
    view: ReadModel | None


@dataclass(frozen=True)
class StoredProfile:
    """A profile row as a read finds it: a party merged away (`merged_into`) has no records."""

    profile: Profile
    merged_into: str | None
    birth_date: dt.date | None
    view: ReadModel | None
    forwarding_ended: bool = False  # a retired id that names no one person: not found


@dataclass(frozen=True)
class StoredInteraction:
    interaction: Interaction
    event_id: str  # with interaction.source.source_system, its key (and page position)
    branch_code: str
    detail: str
    message: SentMessage | None = None  # a message notifications sent (MESSAGE_SENT)


class PartyStore(Protocol):
    async def ensure(self, party_id: str, at: dt.datetime) -> None:
        """Creates the profile if it does not exist yet (else only moves its creation time back
        to `at` if that is earlier: the same whichever of its events arrives first)."""
        ...

    async def read(self, party_id: str, *, with_view: bool = True) -> StoredProfile | None:
        """The party's row and its records (none once it was merged away), in one read; its
        read model decoded only `with_view`."""
        ...

    async def states(self, party_ids: Sequence[str]) -> dict[str, PartyState]:
        """The parties that exist, in one read."""
        ...

    async def forwarded_to(self, party_id: str) -> str | None: ...
    async def retire(
        self, party_id: str, into: str, at: dt.datetime, version: int, *, ended: bool = False
    ) -> bool:
        """Forwards `party_id` to `into` from now on (`ended`: its records do, and reads of it
        find nothing), unless the forwarding held is as new (identity's forwarding `version`;
        0, from before versions: unless it forwards already). False if nothing changed."""
        ...

    async def forwarding_into(self, party_ids: Sequence[str]) -> list[str]:
        """The parties that forward straight to one of these."""
        ...

    async def links(self, keys: Sequence[SourceKey]) -> dict[SourceKey, Link]: ...
    async def set_link(
        self, key: SourceKey, linked_party_id: str, party_id: str, version: int, at: dt.datetime
    ) -> None: ...
    async def reassign(
        self, linked_party_ids: Sequence[str], from_party_id: str, to_party_id: str
    ) -> None:
        """The records linked to one of `linked_party_ids` that belong to `from_party_id` now
        belong to `to_party_id`."""
        ...

    async def set_golden_record(
        self, party_id: str, name: str, birth_date: dt.date | None, at: dt.datetime
    ) -> bool:
        """Takes the golden record's name and birth date unless the ones held come from a later
        change (`at`); True if that changed the birth date (which the assessments read)."""
        ...

    async def birth_date(self, party_id: str) -> dt.date | None: ...

    async def publish(self, publications: Sequence[Publication], at: dt.datetime) -> None:
        """Keeps each snapshot (and the figures searches use) as of its version, and each read
        model; in a few statements for all of them."""
        ...

    async def risk_expiring(self, on: dt.date, limit: int) -> list[str]:
        """Parties whose last ProfileChanged told a risk assessment valid that expires by `on`."""
        ...

    async def assessed_before(self, day: dt.date, after: str, limit: int) -> list[str]:
        """Parties not merged away and last assessed before `day`, with ids after `after`, in
        id order."""
        ...

    async def search(
        self, criteria: SearchCriteria, after: str | None, limit: int
    ) -> list[ProfileRow]: ...


class FactStore(Protocol):
    async def apply(self, events: Sequence[tuple[SourceEvent, dt.date]]) -> None:
        """Applies each change of the events (each with its month, for transaction sums) to its
        record's facts, unless what is stored is as new or newer: the outcome of applying them
        one at a time in this order, in a few statements for all of them."""
        ...

    async def stored(
        self,
        party_ids: Sequence[str],
        since: dt.datetime,
        *,
        interactions_since: dt.datetime | None = None,
    ) -> dict[str, StoredFacts]:
        """The facts of the records linked to each party, in one read per kind of fact; balance
        history from `since` on, interactions from `interactions_since` (else `since`) on. A
        party without facts is left out."""
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


class ProfileReads(Protocol):
    """The stores, for reads: what a read sees may be newer with each statement (as in a READ
    COMMITTED transaction); it takes no locks and writes nothing."""

    @property
    def parties(self) -> PartyStore: ...
    @property
    def facts(self) -> FactStore: ...


class ProfileUnitOfWork(Protocol):
    """One transaction over the profile's state and outbox."""

    @property
    def parties(self) -> PartyStore: ...
    @property
    def facts(self) -> FactStore: ...
    async def lock(self, names: Iterable[str]) -> None: ...
    async def try_lock(self, names: Iterable[str]) -> set[str]:
        """The names held afterwards; never waits for one another transaction holds."""
        ...

    def record(self, event: ProfileChanged) -> None:
        """An event to publish if, and when, the transaction commits."""
        ...

    async def commit(self) -> None:
        """Commits (a use case that owns its transaction; in a consumer, the consumer does)."""
        ...
