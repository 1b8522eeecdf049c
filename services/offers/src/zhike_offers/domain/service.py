"""Offers use cases: decisions, responses, the customer's switches, the catalogue, and the
reactions to the profile's changes.

Where the time goes. A decision reads the party (its fact rows and switches) and its contact
history within the longest window any rule looks at (an indexed range) in one statement, takes
the catalogue and the propensity model from memory (refreshed in the background every few
seconds; a catalogue is compiled once per revision, never per decision), decides, and logs one
entry, answering once it is committed (`DecisionStore`: concurrent decisions' entries share one
commit). Nothing else.

Order-safety, in one place: a ProfileChanged fact is taken unless its key holds a value from the
same or a later profile version (storage's conditional upsert), so the projection ends where
in-order delivery ends, whatever the broker does. Only facts actually taken can make outbound
offers decide again, so a repeated or stale event changes nothing and publishes nothing; a late
one that does decide names the party's profile version, the one its facts are as of, not its own.

Outbound decisions, under the party's lock, in the transaction of the change that caused them:
first every ACTIVE decision that no longer holds is withdrawn (OfferWithdrawn), then each
outbound channel is decided with the offers still ACTIVE left out; each new choice is an
OutboundDecision, a DECIDED_OUTBOUND contact (which the budget counts from then on, across
channels) and an OfferDecided. An offer stays decided while it holds: a party is sent an offer
once, not again on every change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from zhike_offers.domain.catalogue import (
    Catalogue,
    CatalogueError,
    Category,
    Offer,
    OfferProblem,
    compile_offer,
    facts_affecting,
)
from zhike_offers.domain.contact_policy import (
    ContactEvent,
    ContactHistory,
    ContactKind,
    ContactPolicy,
)
from zhike_offers.domain.decision import (
    MAX_OFFERS,
    DecisionConfig,
    DecisionRequest,
    NotChosen,
    Reason,
    decide,
    decision_request,
    reworded,
    withdrawal_reason,
)
from zhike_offers.domain.digest import inputs_digest
from zhike_offers.domain.eligibility import CHANNELS, OUTBOUND_CHANNELS, RuleEnvironment
from zhike_offers.domain.facts import FactKind, OfferFacts
from zhike_offers.domain.model import (
    Arbitration,
    ContactPreferences,
    Decided,
    DecidedOffer,
    DecisionLogEntry,
    DecisionPage,
    DecisionTrigger,
    MessageSent,
    OfferDecidedEvent,
    OfferPage,
    OfferWithdrawnEvent,
    OutboundDecision,
    PreferencesChangedEvent,
    ResponseRecord,
    SimulationResult,
    StoredOffer,
    Switches,
    WithdrawnDecision,
    arbitration_id,
    arbitration_of,
)
from zhike_offers.domain.ports import (
    DecisionStore,
    NewContact,
    OffersUnitOfWork,
    StoredDocument,
    StoredParty,
)
from zhike_offers.domain.projection import ProfileChange, assemble, entries
from zhike_offers.domain.propensity import (
    OUTCOME_WEIGHTS,
    BetaPrior,
    Counts,
    Estimator,
    PropensityModel,
)
from zhike_offers.domain.sweep import after_chunk, live_outbound, plan
from zhike_runtime.errors import ConcurrentUpdate, FailedPrecondition, NotFound
from zhike_runtime.forwarding import leading_through
from zhike_runtime.ids import new_id
from zhike_runtime.paging import PageTokens
from zhike_runtime.paging import page_size as resolve_page_size
from zhike_runtime.validation import Violations

__all__ = [
    "Arbiter",
    "Arbitration",
    "CatalogueAdmin",
    "CatalogueCache",
    "ContactPreferences",
    "Decided",
    "DecidedOffer",
    "DecisionLogEntry",
    "DecisionPage",
    "DecisionTrigger",
    "MessageSent",
    "NotificationReactions",
    "OfferDecisions",
    "OfferPage",
    "OffersClock",
    "OutboundDecision",
    "OutboundDecisions",
    "OutboundSweep",
    "ProfileReactions",
    "PropensityCache",
    "ResponseRecord",
    "Retention",
    "SimulationResult",
    "StoredOffer",
    "WithdrawnDecision",
    "facts_of",
    "history_since",
    "model_version",
]

log = logging.getLogger(__name__)

# Merges forward a party to its survivor; a chain longer than this is corrupt data.
_MAX_FORWARDS = 32

# Opens a unit of work: `async with units() as unit:` (reads only: it is never committed).
UnitFactory = Callable[[], AbstractAsyncContextManager[OffersUnitOfWork]]

RESPONSE_KINDS = frozenset(
    {
        ContactKind.IMPRESSION,
        ContactKind.CLICK,
        ContactKind.ACCEPT,
        ContactKind.DECLINE,
        ContactKind.IGNORE,
    }
)
_SEGMENT = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Parties read at once while simulating.
_SIMULATION_CHUNK = 500


def party_lock(party_id: str) -> str:
    return f"offers-party:{party_id}"


def offer_lock(offer_id: str) -> str:
    return f"offers-offer:{offer_id}"


# Taken exclusively by a save that changes a live offer, in shared mode by whatever decides
# outbound; before any party's lock. A save then sees every outbound decision made before it
# (it withdraws what it no longer allows), and every one after it is made with it.
CATALOGUE_LOCK = "offers-catalogue"
# Held by the replica deciding a chunk of the outbound sweep.
SWEEP_LOCK = "offers-sweep"


class OffersClock:
    def __init__(self, now: Callable[[], dt.datetime], zone: dt.tzinfo) -> None:
        self._now = now
        self.zone = zone  # the bank's day: when a risk assessment has expired

    def now(self) -> dt.datetime:
        return self._now()


# --- what a catalogue implies (computed once per catalogue) ------------------------------------


@functools.lru_cache(maxsize=16)
def outbound_kinds(catalogue: Catalogue) -> frozenset[FactKind]:
    """The fact kinds whose change can change an outbound decision."""
    kinds: set[FactKind] = set()
    for offer in catalogue.offers:
        if offer.outbound and not offer.retired:
            kinds |= facts_affecting(offer)
    return frozenset(kinds)


@functools.lru_cache(maxsize=16)
def outbound_channels(catalogue: Catalogue) -> frozenset[str]:
    return frozenset(
        channel
        for offer in catalogue.offers
        if offer.outbound and not offer.retired
        for channel in offer.channels
        if channel in OUTBOUND_CHANNELS
    )


@functools.lru_cache(maxsize=16)
def _longest_window_days(catalogue: Catalogue, policy: ContactPolicy) -> int:
    days = [
        policy.ignore_lookback_days,
        policy.decline_cool_down_days,
        *(window.days for window in policy.budget),
    ]
    for offer in catalogue.offers:
        days.append(offer.contact_limits.window_days)
        if offer.contact_limits.cool_down_days is not None:
            days.append(offer.contact_limits.cool_down_days)
    return max(days)


def history_since(catalogue: Catalogue, config: DecisionConfig, now: dt.datetime) -> dt.datetime:
    """Where a party's contact history starts for a decision: the longest window any rule looks
    back (a day more, so no boundary is cut short)."""
    return now - dt.timedelta(days=_longest_window_days(catalogue, config.policy) + 1)


# --- the caches -------------------------------------------------------------------------------


class CatalogueCache:
    """The live catalogue, compiled once per revision and shared by every decision. Refreshed in
    the background (app.py runs `refresh` every few seconds) and at once after a save on this
    replica; the first use loads it, storing the shipped defaults first if their offers were
    never stored."""

    def __init__(
        self,
        units: UnitFactory,
        environment: RuleEnvironment,
        defaults: Catalogue,
        clock: OffersClock,
    ) -> None:
        self.environment = environment
        self._units = units
        self._defaults = defaults
        self._clock = clock
        self._catalogue: Catalogue | None = None
        self._revision: int | None = None
        self._saved_at: dict[str, dt.datetime] = {}
        # A saved version never changes: compiled once per process.
        self._compiled: dict[tuple[str, int], Offer] = {}
        self._defaults_stored = False
        self._lock = asyncio.Lock()

    async def get(self) -> Catalogue:
        """The catalogue, loaded first if it never was. Call it before opening a unit of work:
        loading opens its own, and SQLite lets one writer at a time."""
        if self._catalogue is None:
            await self.refresh()
        return self.current

    @property
    def revision(self) -> int | None:
        """The revision of the catalogue loaded (None: none yet)."""
        return self._revision

    async def loaded(self) -> tuple[Catalogue, int]:
        """The catalogue (as `get`) with its revision, taken together."""
        catalogue = await self.get()
        return catalogue, self._revision or 0

    @property
    def current(self) -> Catalogue:
        """The catalogue loaded (no I/O: safe inside a unit of work, once `get` has run)."""
        if self._catalogue is None:
            raise RuntimeError("the catalogue is not loaded yet: await get() first")
        return self._catalogue

    async def refresh(self, at_least: int | None = None) -> bool:
        """Loads the catalogue again if it changed; True if it did. With `at_least`, not if the
        one loaded is that revision or newer (another call loaded it while this one waited)."""
        async with self._lock:
            if at_least is not None and self._revision is not None and self._revision >= at_least:
                return False
            if not self._defaults_stored:
                await self._store_defaults()
            async with self._units() as unit:
                revision = await unit.catalogue.revision()
                if revision == self._revision:
                    return False
                stored = await unit.catalogue.latest()
            self._load(stored, revision)
            return True

    async def current_in(self, unit: OffersUnitOfWork) -> Catalogue:
        """The catalogue as `unit` reads it stored: the one loaded, or, when another replica
        saved an offer since this one last refreshed, loaded again through `unit` (no other
        connection: SQLite's one is the unit's). `get` must have run."""
        held = self.current
        revision = await unit.catalogue.revision()
        if revision == self._revision:
            return held
        return self._load(await unit.catalogue.latest(), revision)

    def _load(self, stored: Sequence[StoredDocument], revision: int) -> Catalogue:
        """The stored offers compiled; kept unless a later revision is held already (the
        revision only grows: `refresh` and `current_in` may load side by side)."""
        offers = [offer for offer in map(self._offer, stored) if offer is not None]
        catalogue = Catalogue(offers, self.environment)
        _ = catalogue.rules  # compiled here, not in the first decision that needs it
        if self._revision is None or revision > self._revision:
            self._catalogue, self._revision = catalogue, revision
            self._saved_at = {document.offer_id: document.saved_at for document in stored}
        return catalogue

    async def _store_defaults(self) -> None:
        """The shipped offers whose ids were never stored, as version 1 (or whatever version
        the file says): never over an admin's version, and never again once stored."""
        now = self._clock.now()
        async with self._units() as unit:
            added = await unit.catalogue.add_missing(
                StoredDocument(o.offer_id, o.version, o.to_document(), o.retired, now)
                for o in self._defaults.offers
            )
            await unit.commit()
        if added:
            log.info("default offers stored", extra={"offers": added})
        self._defaults_stored = True

    def _offer(self, stored: StoredDocument) -> Offer | None:
        key = (stored.offer_id, stored.version)
        offer = self._compiled.get(key)
        if offer is None:
            try:
                offer = compile_offer(
                    stored.document, self.environment, source=f"stored {stored.offer_id}"
                )
            except CatalogueError as error:
                # A stored offer this build cannot compile (a currency dropped from the rule
                # environment, say): left out, loudly, rather than stop every decision.
                log.error("stored offer does not compile", extra={"error": str(error)})
                return None
            self._compiled[key] = offer
        return offer

    def saved_at(self, offer_id: str) -> dt.datetime | None:
        return self._saved_at.get(offer_id)

    async def offer_at(self, unit: OffersUnitOfWork, offer_id: str, version: int) -> Offer | None:
        """One version of an offer, compiled (the live one from memory)."""
        live = self.current.offer(offer_id)
        if live is not None and live.version == version:
            return live
        if (offer_id, version) in self._compiled:
            return self._compiled[(offer_id, version)]
        stored = await unit.catalogue.get(offer_id, version)
        return None if stored is None else self._offer(stored)

    def with_offer(self, catalogue: Catalogue, offer: Offer) -> Catalogue:
        """The catalogue with `offer` in place of its namesake."""
        others = [o for o in catalogue.offers if o.offer_id != offer.offer_id]
        return Catalogue([*others, offer], self.environment)


class PropensityCache:
    """The propensity model's counts, read in the background every few seconds: a decision never
    reads them, and a response teaches every replica within that time."""

    def __init__(self, units: UnitFactory, *, prior: BetaPrior | None = None) -> None:
        self._units = units
        self._prior = prior or BetaPrior()
        self._model: PropensityModel | None = None

    async def get(self) -> PropensityModel:
        """The model, read first if it never was (before opening a unit of work, as for the
        catalogue)."""
        if self._model is None:
            await self.refresh()
        return self.current

    @property
    def current(self) -> PropensityModel:
        if self._model is None:
            raise RuntimeError("the propensity model is not loaded yet: await get() first")
        return self._model

    async def refresh(self) -> None:
        async with self._units() as unit:
            counts = await unit.propensity.counts()
        self._model = PropensityModel(counts, self._prior, version=model_version(counts))


def model_version(counts: Mapping[tuple[str, str], Counts]) -> str:
    """A digest of the counts: the same counts, the same version, on every replica."""
    content = sorted([o, s, c.successes, c.failures] for (o, s), c in counts.items())
    canonical = json.dumps(content, separators=(",", ":"))
    return "beta-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


# --- arbitration ------------------------------------------------------------------------------


class Arbiter:
    """One call of `decide`, as the decision log keeps it: an id, the explanation of every
    candidate (whether or not the caller asked), the inputs digest and the segment."""

    def __init__(self, config: DecisionConfig, ids: Callable[[], str] = new_id) -> None:
        self.config = config
        self._ids = ids

    def arbitrate(
        self,
        facts: OfferFacts,
        catalogue: Catalogue,
        history: ContactHistory,
        model: PropensityModel,
        request: DecisionRequest,
        now: dt.datetime,
        trigger: DecisionTrigger,
        *,
        requested_by: str = "",
        exclude: Collection[str] = (),
        withdrawn: Sequence[WithdrawnDecision] = (),
    ) -> Arbitration:
        arbitration = self.arbitrate_if_acting(
            facts,
            catalogue,
            history,
            model,
            request,
            now,
            trigger,
            requested_by=requested_by,
            exclude=exclude,
            withdrawn=withdrawn,
            idle_too=True,
        )
        assert arbitration is not None  # kept whatever it did
        return arbitration

    def arbitrate_if_acting(
        self,
        facts: OfferFacts,
        catalogue: Catalogue,
        history: ContactHistory,
        model: PropensityModel,
        request: DecisionRequest,
        now: dt.datetime,
        trigger: DecisionTrigger,
        *,
        requested_by: str = "",
        exclude: Collection[str] = (),
        withdrawn: Sequence[WithdrawnDecision] = (),
        idle_too: bool = False,
    ) -> Arbitration | None:
        """As `arbitrate`, but None (and no digest computed) when it chooses and withdraws
        nothing, unless `idle_too`: an outbound arbitration is logged only when it acts."""
        arbitration = arbitration_id(self._ids())
        # Thompson draws are seeded by the arbitration: the log replays them. The mean needs
        # no seed, so the same inputs give the same digest.
        seed = (
            uuid.UUID(arbitration).int >> 8 if self.config.estimator is Estimator.THOMPSON else None
        )
        decision = decide(
            facts,
            catalogue,
            history,
            model,
            # Always explained: the log keeps why every candidate was not chosen.
            request if request.explain else dataclasses.replace(request, explain=True),
            now,
            seed=seed,
            config=self.config,
            exclude=exclude,
        )
        if not (idle_too or decision.chosen or withdrawn):
            return None
        return Arbitration(
            arbitration_id=arbitration,
            trigger=trigger,
            decision=decision,
            inputs_digest=inputs_digest(facts, request, history, model.version, seed),
            segment=facts.primary_segment if facts.personalised_offers else "all",
            withdrawn=tuple(withdrawn),
            requested_by=requested_by,
        )


def facts_of(party_id: str, party: StoredParty | None) -> OfferFacts:
    """The party's facts; a party offers never heard of decides on none (a new customer still
    gets the offers that need none)."""
    if party is None:
        return OfferFacts(party_id)
    return assemble(
        party.party_id,
        party.profile_version,
        party.facts,
        do_not_contact=party.preferences.do_not_contact,
        personalised_offers=party.preferences.personalised_offers,
        opted_out_channels=party.preferences.opted_out_channels,
    )


class OutboundDecisions:
    """Withdraws what no longer holds and decides what newly does, for some parties, inside the
    caller's unit of work (the consumer's, with its inbox row, or an admin's), under their
    locks."""

    def __init__(
        self,
        catalogues: CatalogueCache,
        models: PropensityCache,
        arbiter: Arbiter,
        clock: OffersClock,
    ) -> None:
        self._catalogues = catalogues
        self._models = models
        self._arbiter = arbiter
        self._clock = clock

    async def ready(self) -> None:
        """Loads what deciding needs from storage: await it before opening the unit of work a
        decision runs in (the consumer's units do, through their `before` hook)."""
        await self._catalogues.get()
        await self._models.get()

    async def locked_catalogue(self, unit: OffersUnitOfWork) -> Catalogue:
        """The catalogue lock held in shared mode by `unit`, and the catalogue as stored: no
        offer is saved until the unit ends, and one saved before is in the catalogue returned
        (a replica's cached one may be seconds behind). Call it before any party's lock."""
        await unit.lock_shared([CATALOGUE_LOCK])
        return await self._catalogues.current_in(unit)

    async def redecide_holders(
        self,
        unit: OffersUnitOfWork,
        offer_id: str,
        catalogue: Catalogue,
        *,
        limit: int | None = None,
    ) -> list[str]:
        """The parties holding an ACTIVE outbound decision of `offer_id` (the first `limit`),
        locked and decided again with `catalogue`; their ids. The caller holds the catalogue
        lock and commits."""
        concerned = (await unit.outbound.active_parties(offer_id))[:limit]
        await unit.lock([party_lock(party_id) for party_id in concerned])
        await self.redecide(
            unit,
            await unit.parties.get_many(concerned),
            DecisionTrigger.CATALOGUE_OR_PREFERENCE,
            catalogue=catalogue,
        )
        return concerned

    async def redecide(
        self,
        unit: OffersUnitOfWork,
        parties: Sequence[StoredParty],
        trigger: DecisionTrigger,
        versions: Mapping[str, int] | None = None,
        *,
        catalogue: Catalogue | None = None,
        only: Collection[str] | None = None,
    ) -> None:
        """Each party's outbound decisions, again. `versions`: per party, the profile version
        its facts are as of, when a profile change caused it (absent: none did). `catalogue`:
        the one to decide with, when it is not yet the live one (an admin's save, before it
        commits). `only`: the ids of the offers that may be chosen (None: any); every ACTIVE
        decision is still checked. The caller holds the catalogue lock (`locked_catalogue`).
        Storage is read and written once for all the parties, not once for each."""
        if not parties:
            return
        catalogue = catalogue or self._catalogues.current
        now = self._clock.now()
        config = self._arbiter.config
        party_ids = [party.party_id for party in parties]
        others = frozenset(
            () if only is None else (o.offer_id for o in catalogue.offers if o.offer_id not in only)
        )
        active = await unit.outbound.active(party_ids)
        histories = await unit.contacts.histories(party_ids, history_since(catalogue, config, now))
        writes = _OutboundWrites()
        for party in parties:
            # Decisions are CPU alone: a turn of the event loop between parties lets the calls
            # this replica serves go on meanwhile (a sweep's chunk blocked them ~40 ms).
            await asyncio.sleep(0)
            facts = facts_of(party.party_id, party)
            version = 0 if versions is None else versions.get(party.party_id, 0)
            withdrawn: list[WithdrawnDecision] = []
            kept: set[str] = set()
            for held in active.get(party.party_id, ()):
                why = withdrawal_reason(
                    held.offer_id,
                    channel=held.channel,
                    facts=facts,
                    catalogue=catalogue,
                    now=now,
                    config=config,
                )
                if why is None:
                    kept.add(held.offer_id)
                    continue
                gone = WithdrawnDecision(
                    held.decision_id, held.offer_id, held.offer_version, held.channel, why, now
                )
                if await unit.outbound.withdraw(gone):
                    unit.record(OfferWithdrawnEvent(gone, party.party_id, version))
                    withdrawn.append(gone)
            self._decide_outbound(
                unit,
                writes,
                facts,
                catalogue,
                histories.get(party.party_id, []),
                trigger,
                now,
                version,
                kept,
                withdrawn,
                others,
            )
        await unit.outbound.add_many(writes.decisions)
        await unit.contacts.add_many(writes.contacts)
        await unit.decisions.add_many(writes.arbitrations)

    def _decide_outbound(
        self,
        unit: OffersUnitOfWork,
        writes: _OutboundWrites,
        facts: OfferFacts,
        catalogue: Catalogue,
        events: list[ContactEvent],
        trigger: DecisionTrigger,
        now: dt.datetime,
        profile_version: int,
        active: set[str],
        withdrawn: Sequence[WithdrawnDecision],
        others: frozenset[str],
    ) -> None:
        """Each outbound channel in turn, with the offers still ACTIVE, and `others`, left
        out."""
        party_id = facts.party_id
        channels = outbound_channels(catalogue) | {w.channel for w in withdrawn}
        for channel in sorted(channels):
            request = decision_request(channel=channel, max_offers=MAX_OFFERS, outbound=True)
            arbitration = self._arbiter.arbitrate_if_acting(
                facts,
                catalogue,
                ContactHistory(events),
                self._models.current,
                request,
                now,
                trigger,
                exclude=active | others,
                withdrawn=[w for w in withdrawn if w.channel == channel],
            )
            # One that chose and withdrew nothing is not logged: one for each channel on each
            # triggering change would bury the decisions in empty ones.
            if arbitration is None:
                continue
            for chosen, chosen_id in zip(
                arbitration.decision.chosen, arbitration.decision_ids(), strict=True
            ):
                decided = OutboundDecision(
                    chosen_id,
                    party_id,
                    chosen.offer_id,
                    chosen.version,
                    channel,
                    chosen.template_id,
                    now,
                )
                marketing = chosen.category is Category.MARKETING
                contact = ContactEvent(
                    now, chosen.offer_id, channel, ContactKind.DECIDED_OUTBOUND, marketing
                )
                writes.decisions.append((decided, profile_version))
                writes.contacts.append(
                    NewContact(f"decided:{chosen_id}", party_id, contact, chosen_id)
                )
                offer = catalogue.offer(chosen.offer_id)
                assert offer is not None  # decided from this very catalogue
                unit.record(
                    OfferDecidedEvent(decided, chosen.category, profile_version, offer.valid_until)
                )
                # Counted by the next channel's budget and caps, and left out there.
                events.append(contact)
                active.add(chosen.offer_id)
            writes.arbitrations.append(arbitration)

    async def withdraw_all(
        self, unit: OffersUnitOfWork, party_id: str, explanation: str, profile_version: int
    ) -> None:
        """Withdraws every ACTIVE decision of a party that is gone (merged into another)."""
        now = self._clock.now()
        for held in (await unit.outbound.active([party_id])).get(party_id, ()):
            why = NotChosen(held.offer_id, held.offer_version, Reason.NOT_VALID_NOW, explanation)
            gone = WithdrawnDecision(
                held.decision_id, held.offer_id, held.offer_version, held.channel, why, now
            )
            if await unit.outbound.withdraw(gone):
                unit.record(OfferWithdrawnEvent(gone, party_id, profile_version))


@dataclasses.dataclass
class _OutboundWrites:
    """What a re-decision of some parties writes, written at once at its end."""

    decisions: list[tuple[OutboundDecision, int]] = dataclasses.field(default_factory=list)
    contacts: list[NewContact] = dataclasses.field(default_factory=list)
    arbitrations: list[Arbitration] = dataclasses.field(default_factory=list)


# --- the profile's changes --------------------------------------------------------------------


class ProfileReactions:
    """ProfileChanged → the projection, then outbound decisions when a fact they read changed.
    Runs inside the consumer's unit of work and never commits it."""

    def __init__(
        self, catalogues: CatalogueCache, outbound: OutboundDecisions, clock: OffersClock
    ) -> None:
        self._catalogues = catalogues
        self._outbound = outbound
        self._clock = clock

    async def apply(self, unit: OffersUnitOfWork, change: ProfileChange) -> None:
        await self.apply_batch(unit, [change])

    async def apply_batch(self, unit: OffersUnitOfWork, changes: Sequence[ProfileChange]) -> None:
        """The changes of a batch (stream order): the projection takes them all at once, then
        each party whose facts an outbound offer reads changed is decided again, once, with its
        facts as the whole batch left them (so a state the batch passed through decides
        nothing). A batch with a merge goes change by change: merges are rare, and the changes
        before one must be decided as they were."""
        catalogue = await self._outbound.locked_catalogue(unit)
        # Every party the batch touches, a merge's survivor too, in one statement: taken one
        # after another, they could wait in a circle with a sweep chunk or the expiry round
        # holding some of them (locks already held are not taken again below).
        touched = [c.party_id for c in changes] + [c.merged_into for c in changes if c.merged_into]
        await unit.lock([party_lock(party_id) for party_id in touched])
        if len(changes) > 1 and any(change.merged_into for change in changes):
            for change in changes:
                await self.apply_batch(unit, [change])
            return
        zone = self._clock.zone
        taken = await unit.parties.apply([(change, entries(change, zone)) for change in changes])
        if len(changes) == 1 and changes[0].merged_into:
            await self._forward(unit, changes[0])
            return
        kinds = outbound_kinds(catalogue)
        # Only what was taken: a stale or repeated change decides nothing.
        concerned = sorted(party_id for party_id, found in taken.items() if found & kinds)
        if not concerned:
            return
        parties = await unit.parties.get_many(concerned)
        # A late change of a party merged away decides nothing: its facts are the survivor's.
        live = [party for party in parties if not party.merged_into]
        # Each decision and withdrawal names the profile version its facts are as of: the
        # party's, which is the causing change's when changes come in order, and a later one when
        # the cause came late (notifications believes a consent refusal only if its consents are
        # as of that version).
        versions = {party.party_id: party.profile_version for party in live}
        await self._outbound.redecide(
            unit, live, DecisionTrigger.PROFILE_CHANGE, versions, catalogue=catalogue
        )

    async def _forward(self, unit: OffersUnitOfWork, change: ProfileChange) -> None:
        """The party merged away leads where the change says (a later change may re-route it
        after a split, or end its forwarding), unless a later change was applied. Its decisions
        end, and the contacts recorded for it, or for an id leading through it, move there: one
        person, one contact history (a decline, an ignored offer or a message sent on the party
        merged away binds the survivor's budget, caps and cool-downs). What the customer said on
        it binds the party it leads to now."""
        party_id, into = change.party_id, change.merged_into
        # Where the id and `into` lead now, locked (a party locked cannot be merged away).
        before = await _locked_survivor(unit, party_id, follow_ended=True)
        after = await _locked_survivor(unit, into, follow_ended=True)
        if not await unit.parties.merge(
            party_id, into, change.at, change.profile_version, change.forwarding_ended
        ):
            return
        await self._outbound.withdraw_all(
            unit,
            party_id,
            "the party was merged into another; its decisions end with it",
            change.profile_version,
        )
        if before != after:
            recorded_for = await leading_through(party_id, unit.parties.forwarding_into)
            await unit.contacts.move(recorded_for, before, after)
        # After the move: a carried switch decides the survivor again, and that decision must
        # count the contacts (a decline, a full budget) of the party merged away.
        await self._carry_restrictions(unit, party_id, after)

    async def _carry_restrictions(
        self, unit: OffersUnitOfWork, retired_id: str, survivor_id: str
    ) -> None:
        """What the customer said on the party merged away binds its survivor: they are one
        person, so a "do not contact", a "no personalised offers" or a channel opted out of on
        either holds for both — the more restrictive wins, and a merge never lifts one. A change
        is announced as ContactPreferencesChanged for the survivor (notifications' gates read
        it), and the survivor's decisions are decided again under it."""
        retired = await unit.parties.get(retired_id)
        if retired is None or not retired.preferences.version:
            return  # he never changed the defaults there: nothing to carry
        await unit.lock([party_lock(survivor_id)])
        survivor = await unit.parties.get(survivor_id)
        held = ContactPreferences(survivor_id) if survivor is None else survivor.preferences
        said = retired.preferences
        wanted = (
            held.do_not_contact or said.do_not_contact,
            held.personalised_offers and said.personalised_offers,
            held.opted_out_channels | said.opted_out_channels,
        )
        if wanted != held.switches:
            await _set_switches(unit, self._outbound, survivor_id, wanted, self._clock.now())


async def _survivor(
    unit: OffersUnitOfWork,
    party_id: str,
    *,
    follow_merges: bool = True,
    follow_ended: bool = False,
) -> tuple[str, StoredParty | None]:
    """The party that holds `party_id`'s facts and contacts today, and its row (None: offers
    never heard of it): itself, or the party it was merged into, along a chain of merges.
    Without `follow_merges` a party merged away is NotFound; without `follow_ended` so is a
    retired id whose forwarding identity ended (it names no one person a channel could mean)."""
    asked = party_id
    for _ in range(_MAX_FORWARDS):
        party = await unit.parties.get(party_id)
        if party is None or not party.merged_into:
            return party_id, party
        if not follow_merges or (party.forwarding_ended and not follow_ended):
            raise NotFound("party", asked)
        party_id = party.merged_into
    raise RuntimeError("forwarding chain too long: corrupt merge data")


async def _locked_survivor(
    unit: OffersUnitOfWork, party_id: str, *, follow_merges: bool = True, follow_ended: bool = False
) -> str:
    """`_survivor`, with the locks of the party and its survivor held, read again once locked
    until it stays: a contact recorded under them is seen by an outbound decision for the
    survivor, and moved by a merge or a split's re-route of the party (which hold both)."""
    locked: set[str] = set()
    for _ in range(_MAX_FORWARDS):
        survivor, _ = await _survivor(
            unit, party_id, follow_merges=follow_merges, follow_ended=follow_ended
        )
        if {party_id, survivor} <= locked:
            return survivor
        await unit.lock([party_lock(p) for p in sorted({party_id, survivor} - locked)])
        locked |= {party_id, survivor}
    raise RuntimeError("the parties kept being merged while they were being locked")


async def _survivor_of(unit: OffersUnitOfWork, party_id: str) -> str:
    """Where the party's contacts count today, also through an ended forwarding (to the party
    the split kept): for what the platform itself reports, such as a message sent."""
    survivor, _ = await _survivor(unit, party_id, follow_ended=True)
    return survivor


async def _set_switches(
    unit: OffersUnitOfWork,
    outbound: OutboundDecisions,
    party_id: str,
    wanted: Switches,
    now: dt.datetime,
) -> ContactPreferences:
    """The party's switches set to `wanted` (under its lock), ContactPreferencesChanged staged,
    and its outbound decisions decided again under them (unless it was merged away)."""
    preferences = await unit.parties.set_preferences(party_id, *wanted, now)
    unit.record(PreferencesChangedEvent(preferences))
    party = await unit.parties.get(party_id)
    if party is not None and not party.merged_into:
        await outbound.redecide(unit, [party], DecisionTrigger.CATALOGUE_OR_PREFERENCE)
    return preferences


# --- notifications' messages -------------------------------------------------------------------


class NotificationReactions:
    """Notifications' NotificationSent and NotificationDelivered → the party's contact history,
    inside the consumer's unit of work (never committing it). One message is one contact,
    recorded under its notification id by whichever of the two comes first:

    - a message of an outbound decision offers made is already counted: its DECIDED_OUTBOUND
      contact counted from the decision on, against the budget and the offer's cap. The message
      is recorded as DELIVERED, which counts toward nothing (counting it too would count one
      SMS twice);
    - a message of an offer offers did not decide outbound (a DecideOffers answer, or a
      campaign, sent through SendNotification) is an IMPRESSION on its channel: the offer's cap
      counts it, and so does the budget for a marketing offer on a budget channel;
    - a message naming no offer, or one the catalogue does not hold, is not offers' contact
      (notifications' own frequency cap is the last gate for it) and is not recorded.

    Neither teaches the propensity model: a message that reached the customer is an
    impression, and what it led to arrives through RecordResponse. A FAILED or SUPPRESSED
    message is not consumed: it adds no contact, and the outbound decision's own contact stays
    counted, as it does for a withdrawn decision (README, "Notifications' messages")."""

    def __init__(self, catalogues: CatalogueCache) -> None:
        self._catalogues = catalogues

    async def message_sent(self, unit: OffersUnitOfWork, message: MessageSent) -> bool:
        """Records the message's contact; False when there is none to record or the
        notification was recorded before (a repeat, or its Sent after its Delivered)."""
        if not message.offer_id:
            return False
        # As stored, not as this replica last refreshed it: an offer saved on another replica
        # seconds ago is in the catalogue its message was sent from.
        offer = (await self._catalogues.current_in(unit)).offer(message.offer_id)
        if offer is None:
            return False
        # A message to a party merged away since is its survivor's contact. Under both parties'
        # locks: an outbound decision for the party either sees this contact or runs after it.
        survivor = await _locked_survivor(unit, message.party_id, follow_ended=True)
        decided = await unit.outbound.get(message.decision_id) if message.decision_id else None
        already_counted = (
            decided is not None
            and decided.party_id in (message.party_id, survivor)
            and decided.offer_id == message.offer_id
        )
        kind = ContactKind.DELIVERED if already_counted else ContactKind.IMPRESSION
        event = ContactEvent(message.at, message.offer_id, message.channel, kind, offer.marketing)
        return await unit.contacts.add(
            f"message:{message.notification_id}",
            survivor,
            event,
            message.decision_id,
            recorded_for=message.party_id,
        )


# --- decisions, responses, switches -----------------------------------------------------------


def _same_response(recorded: NewContact | None, response: ResponseRecord) -> None:
    """A response id used again must name the same response: another decision, offer, party,
    kind or channel under it is a caller's mistake, not a retry. The time is not compared: a
    retry without one is "now" again."""
    if recorded is None:
        return  # pruned since: nothing to compare with
    event = recorded.event
    if (
        recorded.decision_id,
        recorded.party_id,
        event.offer_id,
        event.kind,
        event.channel,
    ) != (
        response.decision_id,
        response.party_id,
        response.offer_id,
        response.kind,
        response.channel,
    ):
        raise FailedPrecondition(
            f"response_id {response.response_id} was recorded for another response",
            response.response_id,
        )


class OfferDecisions:
    def __init__(
        self,
        units: UnitFactory,
        catalogues: CatalogueCache,
        models: PropensityCache,
        arbiter: Arbiter,
        outbound: OutboundDecisions,
        clock: OffersClock,
        *,
        decision_store: DecisionStore,
        page_tokens: PageTokens | None = None,
        max_page_size: int = 200,
        default_max_offers: int = 1,
    ) -> None:
        self._units = units
        # Where a decision reads and logs: one read and one log entry, no transaction needed
        # (storage serves concurrent decisions together: one statement, one commit).
        self._store = decision_store
        self._catalogues = catalogues
        self._models = models
        self._arbiter = arbiter
        self._outbound = outbound
        self._clock = clock
        self._page_tokens = page_tokens or PageTokens()
        self._max_page_size = max_page_size
        self.default_max_offers = default_max_offers

    async def decide(
        self,
        party_id: str,
        request: DecisionRequest,
        *,
        requested_by: str = "",
        follow_merges: bool = True,
    ) -> Decided:
        """Decides for the party, or for its survivor if it was merged away — unless
        `follow_merges` is off (a customer's own token: his party as it is now), when a retired
        id is NotFound."""
        v = Violations()
        v.uuid("party_id", party_id)
        v.raise_if_any()
        catalogue, revision = await self._catalogues.loaded()
        model = await self._models.get()
        now = self._clock.now()
        asked = party_id
        for _ in range(_MAX_FORWARDS):
            since = history_since(catalogue, self._arbiter.config, now)
            inputs = await self._store.read(party_id, since)
            if inputs.catalogue_revision > revision:
                # Saved on another replica since the catalogue in hand was loaded (an offer
                # retired a moment ago is not decided): the newer one (the revision only grows,
                # and another call may have loaded it meanwhile), read again with its windows.
                await self._catalogues.refresh(at_least=inputs.catalogue_revision)
                catalogue, revision = self._catalogues.current, self._catalogues.revision or 0
                continue
            party = inputs.party
            if party is None or not party.merged_into:
                break
            if not follow_merges or party.forwarding_ended:
                raise NotFound("party", asked)
            # A retired id a channel held on to: the survivor's facts, switches and contacts
            # decide, and the decision is the survivor's.
            party_id = party.merged_into
        else:
            raise RuntimeError("forwarding chain too long: corrupt merge data")
        contacts = inputs.contacts
        arbitration = self._arbiter.arbitrate(
            facts_of(party_id, party),
            catalogue,
            ContactHistory(contacts),
            model,
            request,
            now,
            DecisionTrigger.REQUEST,
            requested_by=requested_by,
        )
        await self._store.log(arbitration)  # the answer waits for the entry's commit
        offers = []
        for chosen, chosen_id in zip(
            arbitration.decision.chosen, arbitration.decision_ids(), strict=True
        ):
            offer = catalogue.offer(chosen.offer_id)
            assert offer is not None  # decided from this very catalogue
            offers.append(DecidedOffer(chosen, chosen_id, offer))
        return Decided(arbitration.decision, arbitration.arbitration_id, tuple(offers))

    async def record_response(
        self, response: ResponseRecord, *, follow_merges: bool = True
    ) -> bool:
        """Records a response once per response id; True when the id was recorded before. A
        party merged away records it for its survivor (NotFound without `follow_merges`)."""
        v = Violations()
        v.uuid("response_id", response.response_id)
        v.uuid("decision_id", response.decision_id)
        v.uuid("party_id", response.party_id)
        if not response.offer_id:
            v.add("offer_id", "is required")
        if response.kind not in RESPONSE_KINDS:
            v.add("kind", "must be an impression, click, accept, decline or ignore")
        if response.channel not in CHANNELS:
            v.add("channel", f"must be one of {', '.join(CHANNELS)}")
        if response.at.tzinfo is None:
            v.add("response_time", "needs a time zone")
        v.raise_if_any()
        named = arbitration_of(response.decision_id)
        if named is None:
            raise NotFound("decision", response.decision_id)
        arbitration_key, rank = named
        async with self._units() as unit:
            # Responses to one decision one at a time: of two of a kind, one is the first.
            await unit.lock([f"offers-decision:{response.decision_id}"])
            arbitration = await unit.decisions.get(arbitration_key)
            # Either id may have been merged away since: the response is the survivor's,
            # recorded under both parties' locks (as a message is).
            party_id = await _locked_survivor(unit, response.party_id, follow_merges=follow_merges)
            chosen = (
                arbitration.decision.chosen
                if arbitration is not None
                and (
                    arbitration.party_id == party_id
                    or await _survivor_of(unit, arbitration.party_id) == party_id
                )
                else ()
            )
            if not 1 <= rank <= len(chosen) or chosen[rank - 1].offer_id != response.offer_id:
                raise NotFound("decision", response.decision_id)
            assert arbitration is not None
            kind = response.kind
            if kind is ContactKind.IMPRESSION:
                outbound = await unit.outbound.get(response.decision_id)
                if (
                    outbound is not None
                    and outbound.offer_id == response.offer_id
                    and outbound.channel == response.channel
                ):
                    # The message of an outbound decision, reported shown: the decision counted
                    # it already (as notifications' report of it does, it counts toward nothing).
                    kind = ContactKind.DELIVERED
            event = ContactEvent(
                response.at,
                response.offer_id,
                response.channel,
                kind,
                chosen[rank - 1].category is Category.MARKETING,
            )
            contact_id = f"response:{response.response_id}"
            if not await unit.contacts.add(
                contact_id, party_id, event, response.decision_id, recorded_for=response.party_id
            ):
                recorded = await unit.contacts.get(contact_id)
                if recorded is not None:  # compared as one person's, merged or not
                    survivor = await _survivor_of(unit, recorded.party_id)
                    recorded = dataclasses.replace(recorded, party_id=survivor)
                _same_response(
                    recorded, dataclasses.replace(response, party_id=party_id, kind=kind)
                )
                return True
            successes, failures = OUTCOME_WEIGHTS.get(response.kind, (0.0, 0.0))
            # A decision teaches the model once per kind: an app that reports ACCEPT again and
            # again under new response ids records contacts, but cannot tilt the model.
            if (successes or failures) and await unit.contacts.count_answering(
                response.decision_id, response.kind
            ) == 1:
                await unit.propensity.add(
                    response.offer_id, arbitration.segment, successes, failures, self._clock.now()
                )
            await unit.commit()
        return False

    async def list_decisions(self, party_id: str, page_size: int, page_token: str) -> DecisionPage:
        v = Violations()
        v.uuid("party_id", party_id)
        size = resolve_page_size(v, "page_size", page_size, maximum=self._max_page_size)
        query = f"decisions|{party_id}"
        position = self._page_tokens.read(v, "page_token", query, page_token)
        before = None
        if position is not None:
            try:
                at, last = position
                before = (dt.datetime.fromisoformat(at), last)
            except ValueError:
                v.add("page_token", "is not a page token this service issued")
        v.raise_if_any()
        await self._catalogues.get()
        async with self._units() as unit:
            found = await unit.decisions.of_party(party_id, before, size + 1)
            entries_ = [await self._entry(unit, arbitration) for arbitration in found[:size]]
        token = ""
        if len(found) > size:
            last_one = found[size - 1]
            token = self._page_tokens.issue(
                query, [last_one.decision.decided_at.isoformat(), last_one.arbitration_id]
            )
        return DecisionPage(tuple(entries_), token)

    async def _entry(self, unit: OffersUnitOfWork, arbitration: Arbitration) -> DecisionLogEntry:
        decision = arbitration.decision
        chosen = []
        for offer_chosen, chosen_id in zip(
            decision.chosen, arbitration.decision_ids(), strict=True
        ):
            offer = await self._catalogues.offer_at(
                unit, offer_chosen.offer_id, offer_chosen.version
            )
            if offer is None:  # versions are never deleted
                raise RuntimeError("a logged decision names an offer version not stored")
            chosen.append(DecidedOffer(offer_chosen, chosen_id, offer))
        not_chosen = []
        for item in decision.not_chosen:
            if not item.explanation:  # kept without its words: they follow from the offer
                offer = await self._catalogues.offer_at(unit, item.offer_id, item.version)
                if offer is None:
                    raise RuntimeError("a logged decision names an offer version not stored")
                item = reworded(
                    offer,
                    item,
                    decision=decision,
                    # Every arbitration but a DecideOffers call decides outbound.
                    outbound_only=arbitration.trigger is not DecisionTrigger.REQUEST,
                )
            not_chosen.append(item)
        return DecisionLogEntry(
            arbitration_id=arbitration.arbitration_id,
            party_id=arbitration.party_id,
            trigger=arbitration.trigger,
            decided_at=decision.decided_at,
            channel=decision.channel,
            placement=decision.placement,
            chosen=tuple(chosen),
            not_chosen=tuple(not_chosen),
            inputs_digest=arbitration.inputs_digest,
            catalogue_version=decision.catalogue_version,
            model_version=decision.model_version,
            profile_version=decision.profile_version,
            personalised=decision.personalised,
            withdrawn=arbitration.withdrawn,
            requested_by=arbitration.requested_by,
        )

    async def contact_preferences(
        self, party_id: str, *, follow_merges: bool = True
    ) -> ContactPreferences:
        """The party's switches, or its survivor's (NotFound without `follow_merges`)."""
        v = Violations()
        v.uuid("party_id", party_id)
        v.raise_if_any()
        async with self._units() as unit:
            party_id, party = await _survivor(unit, party_id, follow_merges=follow_merges)
        return ContactPreferences(party_id) if party is None else party.preferences

    async def set_contact_preferences(
        self,
        party_id: str,
        do_not_contact: bool | None,
        personalised_offers: bool | None,
        opted_out_channels: Collection[str] | None = None,
        *,
        follow_merges: bool = True,
    ) -> ContactPreferences:
        """Changes the switches (None: unchanged); outbound decisions they no longer allow are
        withdrawn (and those they now allow decided), and ContactPreferencesChanged staged, in
        the same transaction. A party merged away has them set on its survivor, whose they are
        now (the answer names the survivor); without `follow_merges` it is NotFound."""
        v = Violations()
        v.uuid("party_id", party_id)
        if do_not_contact is None and personalised_offers is None and opted_out_channels is None:
            v.add(
                "do_not_contact",
                "set do_not_contact, personalised_offers, opted_out_channels or several",
            )
        for channel in sorted(set(opted_out_channels or ()) - OUTBOUND_CHANNELS):
            v.add(
                "opted_out_channels",
                f"{channel!r} is not an outbound channel; one of "
                f"{', '.join(sorted(OUTBOUND_CHANNELS))}",
            )
        v.raise_if_any()
        await self._outbound.ready()
        # A retired party id (a channel held on to it): the choice is its survivor's.
        asked = party_id
        for _ in range(_MAX_FORWARDS):
            async with self._units() as unit:
                await self._outbound.locked_catalogue(unit)
                await unit.lock([party_lock(party_id)])
                party = await unit.parties.get(party_id)
                if party is not None and party.merged_into:
                    if not follow_merges or party.forwarding_ended:
                        raise NotFound("party", asked)
                    party_id = party.merged_into
                    continue
                held = ContactPreferences(party_id) if party is None else party.preferences
                wanted = (
                    held.do_not_contact if do_not_contact is None else do_not_contact,
                    held.personalised_offers
                    if personalised_offers is None
                    else personalised_offers,
                    (
                        held.opted_out_channels
                        if opted_out_channels is None
                        else frozenset(opted_out_channels)
                    ),
                )
                if wanted == held.switches and held.version:
                    return held
                preferences = await _set_switches(
                    unit, self._outbound, party_id, wanted, self._clock.now()
                )
                await unit.commit()
            return preferences
        raise RuntimeError("forwarding chain too long: corrupt merge data")


# --- the catalogue ----------------------------------------------------------------------------


class CatalogueAdmin:
    def __init__(
        self,
        units: UnitFactory,
        catalogues: CatalogueCache,
        models: PropensityCache,
        outbound: OutboundDecisions,
        clock: OffersClock,
        config: DecisionConfig,
        *,
        page_tokens: PageTokens | None = None,
        max_page_size: int = 200,
        sample_size: int = 1000,
        max_sample_size: int = 10_000,
    ) -> None:
        self._units = units
        self._catalogues = catalogues
        self._models = models
        self._outbound = outbound
        self._clock = clock
        self._config = config
        self._page_tokens = page_tokens or PageTokens()
        self._max_page_size = max_page_size
        self.sample_size = sample_size
        self.max_sample_size = max_sample_size

    def _compile(self, document: Mapping[str, Any], version: int, retired: bool) -> Offer:
        """The document as the given version (the service sets version and retired)."""
        if not isinstance(document, Mapping):
            raise CatalogueError([OfferProblem("offer", "", "(document)", "must be a mapping")])
        return compile_offer(
            {**document, "version": version, "retired": retired},
            self._catalogues.environment,
        )

    async def create(self, document: Mapping[str, Any]) -> StoredOffer:
        offer = self._compile(document, 1, False)
        now = self._clock.now()
        async with self._units() as unit:
            await unit.lock([offer_lock(offer.offer_id)])
            if await unit.catalogue.get(offer.offer_id) is not None:
                raise FailedPrecondition(
                    f"offer {offer.offer_id!r} already exists: update it instead", offer.offer_id
                )
            await unit.catalogue.add(self._stored(offer, now), "created")
            await unit.commit()
        await self._catalogues.refresh()
        return StoredOffer(offer, now)

    async def update(self, document: Mapping[str, Any], expected_version: int) -> StoredOffer:
        draft = self._compile(document, 1, False)  # every field checked before anything is read
        return await self._save(draft.offer_id, expected_version, "updated", document=document)

    async def retire(self, offer_id: str, expected_version: int, reason: str) -> StoredOffer:
        v = Violations()
        v.token("offer_id", offer_id)
        cleaned = v.text("reason", reason, max_length=500)
        v.raise_if_any()
        return await self._save(offer_id, expected_version, cleaned or "retired", document=None)

    async def _save(
        self,
        offer_id: str,
        expected_version: int,
        reason: str,
        *,
        document: Mapping[str, Any] | None,
    ) -> StoredOffer:
        """A new version: the document given, or (retiring) the latest one retired. Its ACTIVE
        outbound decisions are then decided again with it, in the same transaction: those it
        no longer allows are withdrawn."""
        v = Violations()
        if expected_version < 1:
            v.add("expected_version", "must be the version read, 1 or more")
        v.raise_if_any()
        now = self._clock.now()
        await self._outbound.ready()
        async with self._units() as unit:
            await unit.lock([offer_lock(offer_id)])
            # Exclusively: outbound decisions in flight commit first (and are decided again
            # below if they chose this offer); those after this save see it.
            await unit.lock([CATALOGUE_LOCK])
            live = await self._catalogues.current_in(unit)
            latest = await unit.catalogue.get(offer_id)
            if latest is None:
                raise NotFound("offer", offer_id)
            if latest.version != expected_version:
                raise ConcurrentUpdate(
                    f"offer {offer_id!r} is at version {latest.version}, not {expected_version}"
                )
            if latest.retired:
                raise FailedPrecondition(f"offer {offer_id!r} is retired", offer_id)
            offer = self._compile(
                latest.document if document is None else document,
                latest.version + 1,
                document is None,
            )
            await unit.catalogue.add(self._stored(offer, now), reason)
            catalogue = self._catalogues.with_offer(live, offer)
            await self._outbound.redecide_holders(unit, offer_id, catalogue)
            await unit.commit()
        await self._catalogues.refresh()
        return StoredOffer(offer, now)

    @staticmethod
    def _stored(offer: Offer, now: dt.datetime) -> StoredDocument:
        return StoredDocument(
            offer.offer_id, offer.version, offer.to_document(), offer.retired, now
        )

    async def get(self, offer_id: str, version: int = 0) -> StoredOffer:
        v = Violations()
        v.token("offer_id", offer_id)
        if version < 0:
            v.add("version", "must not be negative")
        v.raise_if_any()
        await self._catalogues.get()
        async with self._units() as unit:
            stored = await unit.catalogue.get(offer_id, version)
            offer = (
                None
                if stored is None
                else await self._catalogues.offer_at(unit, offer_id, stored.version)
            )
        if stored is None or offer is None:
            raise NotFound("offer", offer_id if not version else f"{offer_id} v{version}")
        return StoredOffer(offer, stored.saved_at)

    async def list(self, page_size: int, page_token: str, include_retired: bool) -> OfferPage:
        v = Violations()
        size = resolve_page_size(v, "page_size", page_size, maximum=self._max_page_size)
        query = f"offers|{int(include_retired)}"
        position = self._page_tokens.read(v, "page_token", query, page_token)
        if position is not None and len(position) != 1:
            v.add("page_token", "is not a page token this service issued")
        v.raise_if_any()
        after = position[0] if position else None
        catalogue = await self._catalogues.get()
        async with self._units() as unit:
            found = await unit.catalogue.page(after, size + 1, include_retired)
            offers = []
            for stored in found[:size]:
                offer = await self._catalogues.offer_at(unit, stored.offer_id, stored.version)
                if offer is not None:
                    offers.append(StoredOffer(offer, stored.saved_at))
        token = ""
        if len(found) > size:
            token = self._page_tokens.issue(query, [found[size - 1].offer_id])
        return OfferPage(tuple(offers), token, catalogue.version)

    async def simulate(
        self, document: Mapping[str, Any], sample_size: int, segment: str
    ) -> SimulationResult:
        """What the draft would do among a sample of parties today, as if it were live (its
        validity window aside): how many pass each check, how many the contact policy lets
        through, and which live offers are candidates beside it. Stores nothing."""
        v = Violations()
        if sample_size < 0:
            v.add("sample_size", "must not be negative")
        elif sample_size > self.max_sample_size:
            v.add("sample_size", f"must be at most {self.max_sample_size}")
        if segment and not _SEGMENT.fullmatch(segment):
            v.add("segment", "must be a segment name: lower-case letters, digits and '_'")
        v.raise_if_any()
        draft = dataclasses.replace(
            self._compile(document, 1, False), valid_from=None, valid_until=None
        )
        live = await self._catalogues.get()
        catalogue = self._catalogues.with_offer(live, draft)
        model = await self._models.get()
        now = self._clock.now()
        since = history_since(catalogue, self._config, now)
        async with self._units() as unit:
            population = await unit.parties.population(segment)
            # Reproducible: the same population gives the same sample.
            chosen = random.Random(0).sample(
                population, min(sample_size or self.sample_size, len(population))
            )
            stages = [0] * 5  # how many parties reached each stage, from eligible (1) up
            overlap: dict[str, int] = {}
            for start in range(0, len(chosen), _SIMULATION_CHUNK):
                chunk = sorted(chosen[start : start + _SIMULATION_CHUNK])
                parties = await unit.parties.get_many(chunk)
                histories = await unit.contacts.histories(chunk, since)
                for party in parties:
                    stage, rivals = self._simulate_party(
                        facts_of(party.party_id, party),
                        catalogue,
                        ContactHistory(histories.get(party.party_id, ())),
                        model,
                        draft,
                        now,
                    )
                    for reached in range(1, stage + 1):
                        stages[reached] += 1
                    for rival in rivals:
                        overlap[rival] = overlap.get(rival, 0) + 1
        sampled = len(chosen)
        competing = []
        for offer_id, count in sorted(overlap.items(), key=lambda item: (-item[1], item[0])):
            competitor = catalogue.offer(offer_id)
            if competitor is not None:
                competing.append((competitor, count))
        return SimulationResult(
            population_size=len(population),
            sample_size=sampled,
            eligible=stages[1],
            applicable=stages[2],
            suitable=stages[3],
            contactable=stages[4],
            expected_contacts_per_day=self._contacts_per_day(
                draft, stages[4], sampled, len(population)
            ),
            competing=tuple(competing),
        )

    def _simulate_party(
        self,
        facts: OfferFacts,
        catalogue: Catalogue,
        history: ContactHistory,
        model: PropensityModel,
        draft: Offer,
        now: dt.datetime,
    ) -> tuple[int, set[str]]:
        """How far the draft gets for one party on its best channel (1 eligible, 2 applicable,
        3 suitable, 4 contactable), and the live offers that are candidates beside it."""
        best = 0
        rivals: set[str] = set()
        for channel in draft.channels:
            request = DecisionRequest(channel, "", MAX_OFFERS, True)
            decision = decide(
                facts, catalogue, history, model, request, now, seed=0, config=self._config
            )
            candidates = {c.offer_id for c in decision.chosen}
            stage = 4 if draft.offer_id in candidates else 0
            for item in decision.not_chosen:
                if item.reason in (Reason.BELOW_CUTOFF, Reason.SUPPRESSED):
                    candidates.add(item.offer_id)
                if item.offer_id == draft.offer_id:
                    stage = _STAGE_OF_REASON.get(item.reason, 0)
            best = max(best, stage)
            if stage >= 3:
                rivals |= candidates - {draft.offer_id}
        return best, rivals

    def _contacts_per_day(
        self, draft: Offer, contactable: int, sampled: int, population: int
    ) -> float:
        """Contacts a day across the population in the draft's outbound channels: each party the
        policy lets through, at the pace its caps allow (the offer's own, and the marketing
        budget's for a marketing offer)."""
        if not draft.outbound or not OUTBOUND_CHANNELS.intersection(draft.channels) or not sampled:
            return 0.0
        limits = draft.contact_limits
        pace = limits.max_contacts / limits.window_days
        if draft.marketing:
            for window in self._config.policy.budget:
                pace = min(pace, window.limit / window.days)
        return population * contactable / sampled * pace


_STAGE_OF_REASON = {
    Reason.NOT_APPLICABLE: 1,
    Reason.UNSUITABLE: 2,
    Reason.SUPPRESSED: 3,
    Reason.BELOW_CUTOFF: 4,
}


# --- retention --------------------------------------------------------------------------------


class OfferExpiry:
    """Withdraws the ACTIVE outbound decisions of offers whose window has closed. A decision is
    otherwise decided again only when something changes (the party's facts, a save, his
    switches), and a message deferred by quiet hours or a holiday would go out after its
    offer's `valid_until`. Every replica runs it: a withdrawal is taken once, so two rounds at
    once change nothing twice."""

    CHUNK = 500  # parties decided again per transaction

    def __init__(
        self,
        units: UnitFactory,
        catalogues: CatalogueCache,
        outbound: OutboundDecisions,
        clock: OffersClock,
    ) -> None:
        self._units = units
        self._catalogues = catalogues
        self._outbound = outbound
        self._clock = clock

    async def withdraw_expired(self) -> int:
        """One round; how many parties were decided again."""
        await self._outbound.ready()
        now = self._clock.now()
        closed = [
            offer.offer_id
            for offer in self._catalogues.current.offers
            if offer.valid_until is not None and offer.valid_until <= now
        ]
        done = 0
        for offer_id in closed:
            previous: list[str] = []
            while True:
                async with self._units() as unit:
                    catalogue = await self._outbound.locked_catalogue(unit)
                    offer = catalogue.offer(offer_id)
                    if offer is not None and offer.valid_at(now):
                        break  # extended by a save since the cache was read
                    concerned = await self._outbound.redecide_holders(
                        unit, offer_id, catalogue, limit=self.CHUNK
                    )
                    # The same parties again: their decisions could not be withdrawn (a party
                    # row missing, say); the next round tries again rather than loop here.
                    if not concerned or concerned == previous:
                        break
                    previous = concerned
                    await unit.commit()
                done += len(concerned)
                if len(concerned) < self.CHUNK:
                    break
        if done:
            log.info("outbound decisions of closed offers decided again", extra={"parties": done})
        return done


class OutboundSweep:
    """Decides every party again for the outbound offers gone live, a chunk of parties per
    transaction (domain/sweep.py). Every replica runs it; one at a time takes a chunk (the
    sweep's lock, tried without waiting), and the others leave it to that one. A chunk takes
    the locks a profile change takes, in the same order: the catalogue's (shared), then the
    parties'."""

    def __init__(
        self, units: UnitFactory, outbound: OutboundDecisions, clock: OffersClock, *, chunk: int
    ) -> None:
        self._units = units
        self._outbound = outbound
        self._clock = clock
        self._chunk = chunk

    async def sweep(self) -> int:
        """Chunks until the sweep is done, or another replica holds it; how many parties were
        decided again."""
        await self._outbound.ready()
        done = 0
        while True:
            async with self._units() as unit:
                catalogue = await self._outbound.locked_catalogue(unit)
                if SWEEP_LOCK not in await unit.try_lock([SWEEP_LOCK]):
                    break
                now = self._clock.now()
                stored = await unit.sweeps.get()
                state, due = plan(stored, live_outbound(catalogue, now))
                if due:
                    party_ids = await unit.parties.ids_after(state.cursor, self._chunk)
                    await unit.lock([party_lock(party_id) for party_id in party_ids])
                    # Read under the locks: one merged away meanwhile decides nothing.
                    parties = [
                        p for p in await unit.parties.get_many(party_ids) if not p.merged_into
                    ]
                    await self._outbound.redecide(
                        unit,
                        parties,
                        DecisionTrigger.CATALOGUE_OR_PREFERENCE,
                        {party.party_id: party.profile_version for party in parties},
                        catalogue=catalogue,
                        only=state.fresh,
                    )
                    state = after_chunk(state, party_ids, self._chunk)
                    done += len(party_ids)
                if state != stored:
                    await unit.sweeps.put(state, now)
                    await unit.commit()
            if not due or state.finished:
                break
        if done:
            log.info("outbound offers decided again for new offers", extra={"parties": done})
        return done


class Retention:
    """Deletes what has outlived its retention, in small transactions: decision log entries
    after `decision_log_days`, contact events once no rule and no log looks at them, withdrawn
    outbound decisions after the log's retention."""

    CHUNK = 2000

    def __init__(
        self,
        units: UnitFactory,
        catalogues: CatalogueCache,
        config: DecisionConfig,
        clock: OffersClock,
        *,
        decision_log_days: int,
    ) -> None:
        self._units = units
        self._catalogues = catalogues
        self._config = config
        self._clock = clock
        self._days = decision_log_days

    async def prune(self) -> int:
        """One round; how many rows it deleted."""
        now = self._clock.now()
        log_before = now - dt.timedelta(days=self._days)
        await self._catalogues.get()  # loaded once, outside a unit (current_in needs it)
        # The catalogue as stored: one saved on another replica a moment ago with a longer
        # window than any before must find its contacts still kept.
        async with self._units() as unit:
            catalogue = await self._catalogues.current_in(unit)
        contacts_before = min(log_before, history_since(catalogue, self._config, now))
        prunes: list[Callable[[OffersUnitOfWork], Awaitable[int]]] = [
            lambda unit: unit.decisions.prune(log_before, self.CHUNK),
            lambda unit: unit.outbound.prune(log_before, self.CHUNK),
            lambda unit: unit.contacts.prune(contacts_before, self.CHUNK),
        ]
        deleted = 0
        for prune in prunes:
            while True:
                async with self._units() as unit:
                    count = await prune(unit)
                    await unit.commit()
                deleted += count
                if count < self.CHUNK:
                    break
        if deleted:
            log.info("expired decision data deleted", extra={"rows": deleted})
        return deleted
