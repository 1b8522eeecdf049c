from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from zhike_profile.domain.assessment import Assessment
from zhike_profile.domain.facts import PartyFacts, SourceKey


@dataclass(frozen=True)
class LinkedSourceRecord:
    source_system: str
    source_record_id: str
    linked_at: dt.datetime

    @property
    def key(self) -> SourceKey:
        return SourceKey(self.source_system, self.source_record_id)


@dataclass(frozen=True)
class Profile:
    party_id: str
    source_records: tuple[LinkedSourceRecord, ...]
    created_at: dt.datetime
    updated_at: dt.datetime
    display_name: str = ""
    version: int = 0  # how many ProfileChanged events the party has had
    # The records of the facts notifications told (facts.notifications_record): the party's
    # own, and those of the parties merged into it. Not linked by identity: not source records.
    message_records: tuple[SourceKey, ...] = ()


@dataclass(frozen=True)
class ProfileView:
    """A profile as GetProfile answers it: the links, and (unless only those were asked for) the
    facts and their assessment as of today. The facts carry no interactions (ListInteractions
    pages through them; the assessment counts them): read_model.shown."""

    profile: Profile
    facts: PartyFacts | None = None
    assessment: Assessment | None = None


@dataclass(frozen=True)
class SearchCriteria:
    tier: str = ""
    segment: str = ""
    value_band: str = ""
    min_total_assets_cny_minor: int | None = None
    max_total_assets_cny_minor: int | None = None

    def query(self) -> str:
        """The search as text, binding page tokens to it."""
        return (
            f"search|{self.tier}|{self.segment}|{self.value_band}|"
            f"{self.min_total_assets_cny_minor}|{self.max_total_assets_cny_minor}"
        )


@dataclass(frozen=True)
class ProfileRow:
    """One party found by a search."""

    party_id: str
    display_name: str
    tier: str
    value_band: str
    segments: tuple[str, ...]
    total_assets_cny_minor: int
