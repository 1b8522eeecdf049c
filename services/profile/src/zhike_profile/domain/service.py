"""Profile use cases: applying source facts and identity's decisions, and answering reads.

Order-safety, in one place:
- a source fact is applied to its record's stored facts unless what is stored is as new or
  newer (its account sequence or record version): storage's conditional writes;
- a record's link is replaced only by a link event with a higher (link version, time): a late
  or retried move can never put the record back on a party it has left;
- a merge makes the retired party forward to the survivor: the records resolved to it follow at
  once, and any link to it that arrives later resolves to the survivor. Where a retired id
  leads is versioned by identity (a split re-routes it, or ends its forwarding: then its records
  stay with the party the split kept, and reads of it find nothing): a forwarding is replaced
  only by a newer one, and the records that led through the id follow it;
- a fact for a record identity has not linked yet is stored like any other: the record's
  profile shows it from the moment the link arrives (nothing is dropped or waits for replay).
- what notifications tells (a message sent, a consent withdrawn by a reply or an unsubscribe
  link) is a fact of the party's own notifications record (facts.notifications_record), which
  the profile links to the party itself: versioned like a source record's facts, by the time it
  happened there, and a merge moves it with the party's other records.

Every change that touches a party ends with `_publish`: the party's facts are assembled and
assessed, compared with what its last ProfileChanged described, and the difference (if any) is
recorded as the next ProfileChanged, in the same transaction, with the party's read model (what
GetProfile serves: domain/read_model.py). A batch of changes does this once per party it
touched, reading the facts of all of them together.

Locks (PostgreSQL; SQLite serialises writers anyway), always records before parties, each set
taken in one call: a record's facts and link change under its record lock; a party's snapshot
and version under its party lock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from zhike_profile.domain.assessment import Assessment, AssessmentConfig, assess
from zhike_profile.domain.facts import (
    Consent,
    PartyFacts,
    SentMessage,
    SourceKey,
    notifications_record,
)
from zhike_profile.domain.model import ProfileRow, ProfileView, SearchCriteria
from zhike_profile.domain.party_facts import (
    StoredFacts,
    first_of_month,
    interactions_start,
    party_facts,
    window_start,
)
from zhike_profile.domain.ports import (
    PartyState,
    ProfileReads,
    ProfileUnitOfWork,
    Publication,
    StoredInteraction,
    StoredProfile,
)
from zhike_profile.domain.read_model import ReadModel, shown
from zhike_profile.domain.snapshot import (
    EMPTY,
    ChangeCause,
    ProfileChanged,
    differences,
    take,
)
from zhike_profile.domain.source_events import RecordMessage, SetConsent, SourceEvent
from zhike_runtime.errors import NotFound
from zhike_runtime.forwarding import leading_through
from zhike_runtime.paging import PageTokens, page_size
from zhike_runtime.validation import Violations

# A forwarding chain longer than this means corrupt data, not a real history of merges.
_MAX_FORWARDS = 100
# Tries at locking the party a record resolves to while merges move it on (each one a merge
# that landed between reading and locking: more than a few means something is wrong).
_MAX_LOCK_ROUNDS = 10
_NAME = r"[a-z][a-z0-9_]*"
_NO_FACTS = StoredFacts()
_NEW_PARTY = PartyState()  # a party with no row yet: nothing published


@dataclass(frozen=True)
class RecordLink:
    """Identity put a record on a party (SourceRecordLinked, SourceRecordMoved, PartySplit)."""

    key: SourceKey
    party_id: str
    version: int
    at: dt.datetime


def record_lock(key: SourceKey) -> str:
    return f"profile-record:{key.source_system}:{key.source_record_id}"


def party_lock(party_id: str) -> str:
    return f"profile-party:{party_id}"


# Opens a unit of work: `async with units() as unit:`.
UnitFactory = Callable[[], AbstractAsyncContextManager[ProfileUnitOfWork]]
# Opens the stores for reads (a unit of work will do, never committed).
ReadsFactory = Callable[[], AbstractAsyncContextManager[ProfileReads]]


class ProfileClock:
    """Today, in the bank's time zone: assessments are as of a day, months are local months."""

    def __init__(self, zone: ZoneInfo, now: Callable[[], dt.datetime]) -> None:
        self.zone = zone
        self._now = now

    def now(self) -> dt.datetime:
        return self._now()

    def today(self) -> dt.date:
        return self._now().astimezone(self.zone).date()

    def month_of(self, at: dt.datetime) -> dt.date:
        return first_of_month(at.astimezone(self.zone).date())

    def start_of(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), self.zone).astimezone(dt.UTC)


class Facts:
    """Assembles and assesses parties' facts inside a unit of work.

    `basis` names what an assessment depends on besides the facts and the day (the
    configuration, the time zone, the code): a read model assessed on another basis is not
    served (domain/read_model.py)."""

    def __init__(self, config: AssessmentConfig, clock: ProfileClock, basis: str = "") -> None:
        self.config = config
        self.clock = clock
        self.basis = basis

    async def of(
        self, unit: ProfileReads, birth_dates: Mapping[str, dt.date | None]
    ) -> dict[str, PartyFacts]:
        """Each party's facts (`birth_dates`: the parties, with their golden birth dates), read
        for all of them at once."""
        today = self.clock.today()
        stored = await unit.facts.stored(
            sorted(birth_dates),
            self.clock.start_of(window_start(today)),
            interactions_since=self.clock.start_of(interactions_start(today)),
        )
        return {
            party_id: party_facts(
                party_id,
                today,
                stored.get(party_id, _NO_FACTS),
                self.config.rates,
                self.clock.zone,
                birth_date,
            )
            for party_id, birth_date in birth_dates.items()
        }

    def assess(self, facts: PartyFacts) -> Assessment:
        return assess(facts, self.config)


class ProfileUpdates:
    """The writes: each method runs inside the caller's unit of work (the event consumer's,
    with the inbox row) and never commits it."""

    def __init__(self, facts: Facts) -> None:
        self._facts = facts
        self._clock = facts.clock

    # --- source systems ---------------------------------------------------------------------

    async def apply_source_event(self, unit: ProfileUnitOfWork, event: SourceEvent) -> None:
        await self.apply_source_events(unit, [event])

    async def apply_source_events(
        self,
        unit: ProfileUnitOfWork,
        events: Sequence[SourceEvent],
        deferrable: Sequence[bool] = (),
    ) -> set[int]:
        """Applies the events (one, or a consumer's batch) and tells each party they touched
        what changed, once: one ProfileChanged per party for the whole transaction.

        `deferrable[i]` (default: none): event i may be left out rather than wait for its record
        or party while another transaction holds it. Two replicas' batches share many parties;
        waiting would make each batch queue behind the other's whole transaction. Returns the
        positions of the events left out (all of a record's, or none); the rest are applied."""
        flags = list(deferrable) or [False] * len(events)
        must = {event.source for event, may in zip(events, flags, strict=True) if not may}
        may_skip = {event.source for event in events} - must
        # The locks waited for before the ones tried (UnitOfWork.try_lock): no waiting in a cycle.
        await unit.lock([record_lock(key) for key in sorted(must)])
        tried = await unit.try_lock([record_lock(key) for key in sorted(may_skip)])
        keys = must | {key for key in may_skip if record_lock(key) in tried}
        parties, kept = await self._lock_parties_of(unit, keys, waiting=must)
        applied = [i for i, event in enumerate(events) if event.source in kept]
        await unit.facts.apply([(events[i], self._clock.month_of(events[i].at)) for i in applied])
        if parties:
            await self._publish(unit, parties, ChangeCause.SOURCE_EVENT)
        return set(range(len(events))) - set(applied)

    async def _lock_parties_of(
        self,
        unit: ProfileUnitOfWork,
        keys: Collection[SourceKey],
        waiting: Collection[SourceKey] | None = None,
    ) -> tuple[set[str], set[SourceKey]]:
        """The parties the (locked) records belong to, locked, and the records kept; records
        not linked yet have none. Read again after locking: a merge may have moved a record on
        in between. A record not in `waiting` (None: every record is) whose party another
        transaction holds is dropped instead of waited for."""
        kept = set(keys)
        locked: set[str] = set()
        for _ in range(_MAX_LOCK_ROUNDS):
            links = await unit.parties.links(sorted(kept))
            parties = {link.party_id for link in links.values()}
            if parties <= locked:
                return parties, kept
            waited = {
                link.party_id for key, link in links.items() if waiting is None or key in waiting
            }
            await unit.lock([party_lock(p) for p in sorted(waited - locked)])
            locked |= waited
            tried = await unit.try_lock([party_lock(p) for p in sorted(parties - locked)])
            locked |= {p for p in parties if party_lock(p) in tried}
            kept = {key for key in kept if key not in links or links[key].party_id in locked}
        raise RuntimeError("the records' parties kept changing while they were being locked")

    # --- identity ---------------------------------------------------------------------------

    async def party_created(self, unit: ProfileUnitOfWork, party_id: str, at: dt.datetime) -> None:
        await unit.parties.ensure(party_id, at)

    async def records_linked(self, unit: ProfileUnitOfWork, links: Sequence[RecordLink]) -> None:
        """Links, moves and splits: each record goes to its party unless the link held is newer."""
        keys = sorted({link.key for link in links})
        await unit.lock([record_lock(key) for key in keys])
        for link in links:
            await unit.parties.ensure(link.party_id, link.at)
        held = await unit.parties.links(keys)
        latest: dict[SourceKey, RecordLink] = {}
        for link in links:
            current = held.get(link.key)
            if current is not None and not current.older_than(link.version, link.at):
                continue  # a late or repeated event: the record has moved on since
            chosen = latest.get(link.key)
            if chosen is None or (chosen.version, chosen.at) < (link.version, link.at):
                latest[link.key] = link
        if not latest:
            return
        # The parties the records leave and join, locked. A merge (which takes no record locks)
        # may move a record's party or retire a target meanwhile: read both again once locked.
        locked: set[str] = set()
        for _ in range(_MAX_LOCK_ROUNDS):
            now_held = await unit.parties.links(sorted(latest))
            leaving = {link.party_id for link in now_held.values()}
            targets = {
                p: await self._resolve(unit, p) for p in {x.party_id for x in latest.values()}
            }
            wanted = leaving | set(targets.values())
            if wanted <= locked:
                break
            await unit.lock([party_lock(p) for p in sorted(wanted - locked)])
            locked |= wanted
        else:
            raise RuntimeError("the parties kept being merged while they were being locked")
        for key, link in sorted(latest.items()):
            await unit.parties.set_link(
                key, link.party_id, targets[link.party_id], link.version, link.at
            )
        await self._publish(unit, {*leaving, *targets.values()}, ChangeCause.IDENTITY)

    async def parties_merged(
        self,
        unit: ProfileUnitOfWork,
        survivor: str,
        retired: Sequence[tuple[str, int]],
        at: dt.datetime,
    ) -> None:
        """Each retired party (with identity's forwarding version: 0 from before versions)
        forwards to the survivor from now on, unless it holds a newer forwarding; the records
        that led through it follow."""
        for party_id in (survivor, *(p for p, _ in retired)):
            await unit.parties.ensure(party_id, at)
        touched: set[str] = set()
        moved: dict[str, str] = {}
        for party_id, version in retired:
            target = await self._forward(unit, party_id, survivor, version, at, touched)
            if target is not None:
                moved[party_id] = target
        await self._publish(unit, touched | set(moved), ChangeCause.IDENTITY, merged_into=moved)

    async def forwarding_ended(
        self, unit: ProfileUnitOfWork, party_id: str, kept: str, version: int, at: dt.datetime
    ) -> None:
        """The retired id names no one person from now on (unless it holds a newer forwarding):
        reads of it find nothing, and the records linked to it that no split event moved stay
        with the party the split kept (identity sends no event for them)."""
        for p in (party_id, kept):
            await unit.parties.ensure(p, at)
        touched: set[str] = set()
        target = await self._forward(unit, party_id, kept, version, at, touched, ended=True)
        if target is not None:
            await self._publish(
                unit, touched | {party_id}, ChangeCause.IDENTITY, {party_id: target}, {party_id}
            )

    async def _forward(
        self,
        unit: ProfileUnitOfWork,
        party_id: str,
        into: str,
        version: int,
        at: dt.datetime,
        touched: set[str],
        *,
        ended: bool = False,
    ) -> str | None:
        """`party_id` forwards to `into` unless its forwarding is as new; the records linked to
        it, or to an id leading through it, move from where it led to where it leads now.
        Returns that party (None: nothing changed); adds the parties whose records changed to
        `touched`."""
        # The id and `into`, and where they lead now (the records move between those two),
        # locked in one call where they can be: fewer chances to wait in a circle.
        before = await self._lock_resolved(unit, {party_id, into}, {party_id, into})
        if not await unit.parties.retire(party_id, into, at, version, ended=ended):
            return None
        after = before[into]
        if after != before[party_id]:
            through = await leading_through(party_id, unit.parties.forwarding_into)
            await unit.parties.reassign(through, before[party_id], after)
            touched |= {before[party_id], after}
        return after

    async def golden_record(
        self,
        unit: ProfileUnitOfWork,
        party_id: str,
        name: str,
        birth_date: dt.date | None,
        at: dt.datetime,
    ) -> None:
        """The party's golden record changed at identity (`at`): its name and birth date, unless
        a later change is held. A new birth date can change the age (AgeChanged, never the
        date) and move the party in or out of a segment (`age`): told like any other change. A
        merged party's golden record is kept but counts for nobody: the survivor keeps its own
        (identity sends the survivor's after a merge)."""
        await unit.parties.ensure(party_id, at)
        await unit.lock([party_lock(party_id)])
        if await unit.parties.set_golden_record(party_id, name, birth_date, at):
            await self._publish(unit, [party_id], ChangeCause.IDENTITY)

    async def _resolve(self, unit: ProfileUnitOfWork, party_id: str) -> str:
        current = party_id
        for _ in range(_MAX_FORWARDS):
            forwarded = await unit.parties.forwarded_to(current)
            if forwarded is None:
                return current
            current = forwarded
        raise RuntimeError("forwarding chain too long: corrupt merge data")

    async def _lock_resolved(
        self, unit: ProfileUnitOfWork, party_ids: set[str], also: set[str]
    ) -> dict[str, str]:
        """Each party's survivor (itself unless merged away), locked with `also`; resolved
        again after locking, as a merge may have retired one in between."""
        locked: set[str] = set()
        for _ in range(_MAX_LOCK_ROUNDS):
            targets = {p: await self._resolve(unit, p) for p in party_ids}
            wanted = {*targets.values(), *also} - locked
            if not wanted:
                return targets
            await unit.lock([party_lock(p) for p in sorted(wanted)])
            locked |= wanted
        raise RuntimeError("the parties kept being merged while they were being locked")

    # --- notifications ----------------------------------------------------------------------

    async def consent_withdrawn_by_message(
        self, unit: ProfileUnitOfWork, party_id: str, notification_id: str, withdrawal: Consent
    ) -> None:
        """The customer withdrew consent by replying to a message ("TD", "退订") or by an
        unsubscribe link (notifications' ConsentWithdrawn). It is the decision of the party's
        notifications record for that channel and purpose, versioned there by its evidence time
        (a withdrawal older than the one held changes nothing); the party's decision is, as for
        any records, the one captured last (party_facts._consents): a consent given again later
        at a branch wins over it, one given before it does not."""
        at = withdrawal.evidence.captured_at
        key = notifications_record(party_id)
        event = SourceEvent(key, notification_id, at, _time_version(at), (SetConsent(withdrawal),))
        await self._apply_notifications_fact(unit, party_id, event)

    async def message_sent(
        self, unit: ProfileUnitOfWork, party_id: str, message: SentMessage, at: dt.datetime
    ) -> None:
        """Notifications sent the party a message (NotificationSent): an interaction of the
        party's contact history, kept once per notification id."""
        key = notifications_record(party_id)
        event = SourceEvent(
            key, message.notification_id, at, _time_version(at), (RecordMessage(message),)
        )
        await self._apply_notifications_fact(unit, party_id, event)

    async def _apply_notifications_fact(
        self, unit: ProfileUnitOfWork, party_id: str, event: SourceEvent
    ) -> None:
        """Applies a fact of the party's notifications record (linked to the party the first
        time: to its survivor if it was merged away) and tells the party what changed."""
        key = event.source
        await unit.lock([record_lock(key)])
        await unit.parties.ensure(party_id, event.at)
        if key not in await unit.parties.links([key]):
            target = (await self._lock_resolved(unit, {party_id}, set()))[party_id]
            await unit.parties.set_link(key, party_id, target, 0, event.at)
        parties, _kept = await self._lock_parties_of(unit, [key])
        await unit.facts.apply([(event, self._clock.month_of(event.at))])
        await self._publish(unit, parties, ChangeCause.NOTIFICATIONS)

    # --- time -------------------------------------------------------------------------------

    async def refresh(self, unit: ProfileUnitOfWork, party_id: str) -> None:
        """Publishes what time alone changed (a risk assessment that expired, and with it
        whatever else moved since the party's last change)."""
        await unit.lock([party_lock(party_id)])
        if await unit.parties.forwarded_to(party_id) is None:
            await self._publish(unit, [party_id], ChangeCause.TIME)

    async def tell_expired_risks(self, units: UnitFactory, limit: int = 500) -> int:
        """One round: each party whose risk assessment, told valid, has expired by today gets
        its ProfileChanged (RiskAssessmentExpired), each in its own transaction. Returns how
        many were looked at (fewer than `limit`: none are left)."""
        today = self._clock.today()
        async with units() as unit:
            due = await unit.parties.risk_expiring(today, limit)
        for party_id in due:
            async with units() as unit:
                await self.refresh(unit, party_id)
                await unit.commit()
        return len(due)

    async def refresh_stale(
        self, units: UnitFactory, after: str = "", limit: int = 500
    ) -> list[str]:
        """One round of the daily refresh: the parties (ids after `after`) last assessed before
        today are assessed again, each in its own transaction under its lock, and told what time
        alone changed (cause TIME: turned dormant, a birthday, a rolling average). Returns the
        ids looked at, in order (fewer than `limit`: the round reached the last party). A party
        another replica refreshed meanwhile is left as it is."""
        today = self._clock.today()
        async with units() as unit:
            due = await unit.parties.assessed_before(today, after, limit)
        for party_id in due:
            async with units() as unit:
                await unit.lock([party_lock(party_id)])
                state = (await unit.parties.states([party_id])).get(party_id)
                if state is None or state.merged_into is not None or state.assessed_on >= today:
                    continue
                await self._publish(unit, [party_id], ChangeCause.TIME)
                await unit.commit()
        return due

    # --- publishing -------------------------------------------------------------------------

    async def _publish(
        self,
        unit: ProfileUnitOfWork,
        party_ids: Sequence[str] | set[str],
        cause: ChangeCause,
        merged_into: Mapping[str, str] | None = None,
        ended: Collection[str] = (),
    ) -> None:
        now = self._clock.now()
        ids = sorted(set(party_ids))
        states = await unit.parties.states(ids)
        moved = merged_into or {}
        # Merged away: their records count for the survivor now.
        live = {
            p: states.get(p, _NEW_PARTY).birth_date
            for p in ids
            if not moved.get(p) and states.get(p, _NEW_PARTY).merged_into is None
        }
        facts = await self._facts.of(unit, live)
        publications: list[Publication] = []
        for party_id in ids:
            published = states.get(party_id, _NEW_PARTY)
            moved_on = moved.get(party_id, "")
            view = None
            snapshot = EMPTY
            if party_id in live:
                assessment = self._facts.assess(facts[party_id])
                snapshot = take(facts[party_id], assessment)
                view = ReadModel(
                    assessment.as_of, self._facts.basis, shown(facts[party_id]), assessment
                )
            found = differences(published.snapshot, snapshot)
            version = published.version
            if found or moved_on:
                version += 1
                unit.record(
                    ProfileChanged(
                        party_id, version, now, cause, found, moved_on, party_id in ended
                    )
                )
            # With nothing to tell the snapshot may still move (total assets with the rates:
            # kept searchable), and the read model with it (a transaction's sums).
            changed = version != published.version or snapshot != published.snapshot
            if changed or view is not None:
                publications.append(Publication(party_id, version, snapshot, changed, view))
        await unit.parties.publish(publications, now)


@dataclass(frozen=True)
class InteractionPage:
    party_id: str
    interactions: tuple[StoredInteraction, ...]
    next_page_token: str


@dataclass(frozen=True)
class SearchPage:
    profiles: tuple[ProfileRow, ...]
    next_page_token: str


class ProfileQueries:
    def __init__(
        self,
        units: ReadsFactory,
        facts: Facts,
        page_tokens: PageTokens | None = None,
        max_page_size: int = 500,
        *,
        snapshots: ReadsFactory | None = None,
    ) -> None:
        """`snapshots`: reads that all see one moment, for a profile computed afresh (`units`
        when those already do)."""
        self._units = units
        self._snapshots = snapshots or units
        self._facts = facts
        self._page_tokens = page_tokens or PageTokens()
        self._max_page_size = max_page_size

    async def get_profile(
        self, party_id: str = "", source: SourceKey | None = None, *, with_facts: bool = True
    ) -> ProfileView:
        """By party id (a merged party answers with its survivor's profile) or by a source
        record linked to the party."""
        v = Violations()
        if source is None:
            v.uuid("party_id", party_id)
        v.raise_if_any()
        async with self._units() as unit:
            if source is not None:
                link = (await unit.parties.links([source])).get(source)
                if link is None:
                    raise NotFound(
                        "source_record", f"{source.source_system}/{source.source_record_id}"
                    )
                stored = await self._survivor(unit, link.party_id, party_id, with_view=with_facts)
            else:
                stored = await self._survivor(unit, party_id, party_id, with_view=with_facts)
            profile = stored.profile
            if not with_facts:
                return ProfileView(profile)
            view = stored.view
            if view is not None and view.serves(self._facts.clock.today(), self._facts.basis):
                return ProfileView(profile, view.facts, view.assessment)
        # Computed afresh from the fact rows, read in several statements: from one snapshot, so
        # that a change committed meanwhile is in all of them or in none (a balance without
        # its account, or a tier no stored state ever had, otherwise).
        current = profile.party_id
        async with self._snapshots() as snapshot:
            facts = (await self._facts.of(snapshot, {current: stored.birth_date}))[current]
        return ProfileView(profile, shown(facts), self._facts.assess(facts))

    async def list_interactions(
        self, party_id: str, requested_size: int, page_token: str
    ) -> InteractionPage:
        v = Violations()
        v.uuid("party_id", party_id)
        size = page_size(v, "page_size", requested_size, maximum=self._max_page_size)
        query = f"interactions|{party_id}"
        position = self._page_tokens.read(v, "page_token", query, page_token)
        after = _interaction_position(v, position)
        v.raise_if_any()
        async with self._units() as unit:
            profile = (await self._survivor(unit, party_id, party_id)).profile
            current = profile.party_id
            keys = (*(r.key for r in profile.source_records), *profile.message_records)
            found = await unit.facts.interactions(keys, size + 1, after) if keys else []
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = self._page_tokens.issue(
                query,
                [
                    last.interaction.at.isoformat(),
                    last.interaction.source.source_system,
                    last.event_id,
                ],
            )
        return InteractionPage(current, tuple(found[:size]), token)

    async def search(
        self, criteria: SearchCriteria, requested_size: int, page_token: str
    ) -> SearchPage:
        v = Violations()
        named = False
        for field, value in (
            ("tier", criteria.tier),
            ("segment", criteria.segment),
            ("value_band", criteria.value_band),
        ):
            if value:
                named = True
                _name(v, field, value)
        low, high = criteria.min_total_assets_cny_minor, criteria.max_total_assets_cny_minor
        for field, bound in (
            ("min_total_assets_minor_units", low),
            ("max_total_assets_minor_units", high),
        ):
            if bound is not None:
                named = True
                if bound < 0:
                    v.add(field, "must not be negative")
        if low is not None and high is not None and 0 <= high < low:
            v.add("max_total_assets_minor_units", "must not be below min_total_assets_minor_units")
        if not named:
            v.add("tier", "set at least one of tier, segment, value_band or a total-assets bound")
        size = page_size(v, "page_size", requested_size, maximum=self._max_page_size)
        position = self._page_tokens.read(v, "page_token", criteria.query(), page_token)
        after = None
        if position is not None:
            if len(position) != 1:
                v.add("page_token", "is not a page token this service issued")
            else:
                after = position[0]
        v.raise_if_any()
        async with self._units() as unit:
            rows = await unit.parties.search(criteria, after, size + 1)
        token = ""
        if len(rows) > size:
            token = self._page_tokens.issue(criteria.query(), [rows[size - 1].party_id])
        return SearchPage(tuple(rows[:size]), token)

    async def _survivor(
        self, unit: ProfileReads, party_id: str, asked: str, *, with_view: bool = False
    ) -> StoredProfile:
        """The profile of `party_id`, or of its survivor if it was merged away; NotFound names
        the party `asked` for."""
        current = party_id
        for _ in range(_MAX_FORWARDS):
            stored = await unit.parties.read(current, with_view=with_view)
            if stored is None:
                raise NotFound("profile", asked)
            if stored.forwarding_ended:
                raise NotFound("profile", asked)  # a retired id that names no one person
            if stored.merged_into is None:
                return stored
            current = stored.merged_into  # a merged party answers with its survivor's profile
        raise RuntimeError("forwarding chain too long: corrupt merge data")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _time_version(at: dt.datetime) -> int:
    """The version of a fact notifications told: when it happened, in microseconds (it gives
    no sequence; a later reply or unsubscribe is the newer decision)."""
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


def _name(v: Violations, field: str, value: str) -> None:
    if len(value) > 32 or not re.fullmatch(_NAME, value):
        v.add(field, "must be a name: lower-case letters, digits and '_', at most 32")


def _interaction_position(
    v: Violations, position: list[str] | None
) -> tuple[dt.datetime, str, str] | None:
    if position is None:
        return None
    try:
        at, system, event_id = position
        return (dt.datetime.fromisoformat(at), system, event_id)
    except ValueError:
        v.add("page_token", "is not a page token this service issued")
        return None
