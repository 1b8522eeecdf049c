"""What the offers use cases need from storage (storage implements these Protocols)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from zhike_offers.domain.contact_policy import ContactEvent, ContactKind
from zhike_offers.domain.facts import FactKind
from zhike_offers.domain.model import (
    Arbitration,
    ContactPreferences,
    OutboundDecision,
    OutboundEvent,
    WithdrawnDecision,
)
from zhike_offers.domain.projection import FactEntry, ProfileChange
from zhike_offers.domain.propensity import Counts
from zhike_offers.domain.sweep import SweepState


@dataclass(frozen=True)
class StoredParty:
    """A party as offers know it: its fact rows (key → value, `projection.assemble` reads
    them) and its own switches."""

    party_id: str
    profile_version: int  # the highest ProfileChanged applied
    merged_into: str  # "" unless identity merged it into another party
    facts: Mapping[str, Any]
    preferences: ContactPreferences
    # A retired id whose forwarding identity ended: it names no one person (merged_into is the
    # party the split kept, which its contacts count for).
    forwarding_ended: bool = False


@dataclass(frozen=True)
class StoredDocument:
    """One version of an offer as saved: its canonical document."""

    offer_id: str
    version: int
    document: Mapping[str, Any]
    retired: bool
    saved_at: dt.datetime


class PartyStore(Protocol):
    async def get(self, party_id: str) -> StoredParty | None:
        """The party with its facts and switches, in one read (None: never heard of)."""
        ...

    async def get_many(self, party_ids: Sequence[str]) -> list[StoredParty]: ...

    async def apply(
        self, changes: Sequence[tuple[ProfileChange, Sequence[FactEntry]]]
    ) -> dict[str, set[FactKind]]:
        """For each change (in stream order) with its entries: records the party (raising its
        profile version to the change's if that is higher) and takes each entry unless its key
        holds a value from the same or a higher profile version, as if applied one by one.
        Returns the kinds of the entries taken, per party (parties with none left out)."""
        ...

    async def merge(
        self, party_id: str, into: str, at: dt.datetime, profile_version: int, ended: bool
    ) -> bool:
        """Marks the party merged into `into` (`ended`: its forwarding ended there), if the
        change at `profile_version` is the latest applied; False if nothing changed."""
        ...

    async def forwarding_into(self, party_ids: Sequence[str]) -> list[str]:
        """The parties merged straight into one of these."""
        ...

    async def set_preferences(
        self,
        party_id: str,
        do_not_contact: bool,
        personalised_offers: bool,
        opted_out_channels: frozenset[str],
        at: dt.datetime,
    ) -> ContactPreferences:
        """Stores the switches as the next version (the party is recorded if it is new)."""
        ...

    async def population(self, segment: str) -> list[str]:
        """Ids of the parties not merged away (in the segment, if one is named), sorted."""
        ...

    async def ids_after(self, party_id: str, limit: int) -> list[str]:
        """The ids after `party_id` of the parties not merged away, sorted, the first `limit`."""
        ...


class SweepStore(Protocol):
    async def get(self) -> SweepState | None:
        """Where the outbound sweep stands (None: it never ran)."""
        ...

    async def put(self, state: SweepState, at: dt.datetime) -> None: ...


@dataclass(frozen=True)
class DecisionInputs:
    """What a decision reads, at once: the party (as `PartyStore.get`), its contact events
    after a time, and the catalogue's stored revision (as `CatalogueStore.revision`), so a
    decision made from an older catalogue can tell."""

    party: StoredParty | None
    contacts: list[ContactEvent]
    catalogue_revision: int


class DecisionInputStore(Protocol):
    async def read(self, party_id: str, since: dt.datetime) -> DecisionInputs: ...


class DecisionStore(Protocol):
    """Where DecideOffers reads and logs, outside any unit of work (a decision needs no
    transaction around its read and its log entry). The entries of concurrent decisions may
    share one commit."""

    async def read(self, party_id: str, since: dt.datetime) -> DecisionInputs:
        """As `DecisionInputStore.read`."""
        ...

    async def log(self, arbitration: Arbitration) -> None:
        """Adds the entry to the decision log; returns once it is committed."""
        ...


@dataclass(frozen=True)
class NewContact:
    # "decided:<decision id>", "response:<response id>" or "message:<notification id>":
    # recorded once.
    contact_id: str
    party_id: str  # whose contact history it is in
    event: ContactEvent
    decision_id: str
    # The party id the contact was told for (a retired id a message or response named), which
    # it follows if a split re-routes that id; "": party_id.
    recorded_for: str = ""


class ContactStore(Protocol):
    async def histories(
        self, party_ids: Sequence[str], since: dt.datetime
    ) -> dict[str, list[ContactEvent]]:
        """Each party's contact events after `since` (parties with none left out)."""
        ...

    async def add(
        self,
        contact_id: str,
        party_id: str,
        event: ContactEvent,
        decision_id: str,
        recorded_for: str = "",
    ) -> bool:
        """Records the event under its id (`recorded_for`: see NewContact); False (and nothing
        stored) if the id is known."""
        ...

    async def add_many(self, contacts: Sequence[NewContact]) -> None:
        """Records each contact whose id is not known yet."""
        ...

    async def count_answering(self, decision_id: str, kind: ContactKind) -> int:
        """How many contacts of this kind answer the decision."""
        ...

    async def move(self, recorded_for: Sequence[str], from_party: str, to_party: str) -> None:
        """The contacts of `from_party` recorded for one of `recorded_for` become `to_party`'s
        (a merge: one person's history)."""
        ...

    async def get(self, contact_id: str) -> NewContact | None:
        """The contact recorded under `contact_id`, None if none is."""
        ...

    async def prune(self, before: dt.datetime, limit: int) -> int: ...


class OutboundStore(Protocol):
    async def active(self, party_ids: Sequence[str]) -> dict[str, list[OutboundDecision]]:
        """The ACTIVE decisions of each party (oldest first; parties with none left out)."""
        ...

    async def active_parties(self, offer_id: str) -> list[str]:
        """Parties with an ACTIVE outbound decision of the offer."""
        ...

    async def get(self, decision_id: str) -> OutboundDecision | None:
        """The outbound decision, ACTIVE or withdrawn (None: not one offers decided outbound,
        or pruned with the log)."""
        ...

    async def add_many(self, decisions: Sequence[tuple[OutboundDecision, int]]) -> None:
        """New ACTIVE decisions, each with the profile version that caused it (0: none)."""
        ...

    async def withdraw(self, withdrawn: WithdrawnDecision) -> bool:
        """Marks the decision WITHDRAWN; False if it was not ACTIVE."""
        ...

    async def prune(self, before: dt.datetime, limit: int) -> int:
        """Deletes withdrawn decisions withdrawn before `before`."""
        ...


class DecisionLogStore(Protocol):
    async def add_many(self, arbitrations: Sequence[Arbitration]) -> None: ...
    async def get(self, arbitration_id: str) -> Arbitration | None: ...
    async def of_party(
        self, party_id: str, before: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Arbitration]:
        """Newest first; `before`: (time, arbitration id) of the previous page's last."""
        ...

    async def prune(self, before: dt.datetime, limit: int) -> int:
        """Deletes up to `limit` entries decided before `before`; how many it deleted."""
        ...


class CatalogueStore(Protocol):
    async def revision(self) -> int:
        """A number that grows with every save (cheap: the sum of the latest versions)."""
        ...

    async def latest(self) -> list[StoredDocument]:
        """The latest version of every offer, retired ones included."""
        ...

    async def get(self, offer_id: str, version: int = 0) -> StoredDocument | None:
        """A version of an offer (0: the latest)."""
        ...

    async def page(
        self, after: str | None, limit: int, include_retired: bool
    ) -> list[StoredDocument]:
        """Latest versions in offer id order, after `after`."""
        ...

    async def add(self, saved: StoredDocument, reason: str) -> None:
        """Saves a new version (its predecessor must be the latest: version - 1, or none)."""
        ...

    async def add_missing(self, documents: Iterable[StoredDocument]) -> int:
        """Saves each document whose offer id has no version at all; how many it saved."""
        ...


class PropensityStore(Protocol):
    async def add(
        self, offer_id: str, segment: str, successes: float, failures: float, at: dt.datetime
    ) -> None: ...

    async def counts(self) -> dict[tuple[str, str], Counts]: ...


class OffersUnitOfWork(Protocol):
    """One transaction over the offers' state and outbox."""

    @property
    def inputs(self) -> DecisionInputStore: ...
    @property
    def parties(self) -> PartyStore: ...
    @property
    def contacts(self) -> ContactStore: ...
    @property
    def outbound(self) -> OutboundStore: ...
    @property
    def decisions(self) -> DecisionLogStore: ...
    @property
    def catalogue(self) -> CatalogueStore: ...
    @property
    def propensity(self) -> PropensityStore: ...
    @property
    def sweeps(self) -> SweepStore: ...
    async def lock(self, names: Iterable[str]) -> None: ...
    async def try_lock(self, names: Iterable[str]) -> set[str]:
        """Of `names`, those this unit holds afterwards, without waiting for the others."""
        ...

    async def lock_shared(self, names: Iterable[str]) -> None: ...
    def record(self, event: OutboundEvent) -> None:
        """An event to publish if, and when, the transaction commits."""
        ...

    async def commit(self) -> None: ...
