"""The outbound sweep: when the live outbound offers gain one (a new offer, a new version of
one, or one whose `valid_from` has come), every party is decided again once, so the offer
reaches the customers it suits without waiting for each one's next profile change.

The parties go in order of their id, a chunk per transaction, and the sweep's state (the offers
it is for and the last party decided) is stored with each chunk: a restart, or another replica,
carries on after the last chunk committed. An offer going live again during a sweep starts it
over; an offer leaving (retired, closed) changes nothing, since deciding again withdraws only
what the saves and the expiry round withdraw already.

The sweep never runs for the offers live when it first looks: those were decided at profile
changes, as before, and deciding every party again for them on an upgrade would be a burst of
marketing nobody asked for. They are its starting point.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from zhike_offers.domain.catalogue import Catalogue


@dataclass(frozen=True)
class SweepState:
    # The live outbound offers the sweep is for, as "offer_id:version".
    offers: frozenset[str]
    # The last party decided ("": none yet).
    cursor: str
    finished: bool


def live_outbound(catalogue: Catalogue, now: dt.datetime) -> frozenset[str]:
    """The outbound offers that may be decided at `now`, as "offer_id:version"."""
    return frozenset(
        f"{offer.offer_id}:{offer.version}"
        for offer in catalogue.offers
        if offer.outbound and not offer.retired and offer.valid_at(now)
    )


def plan(stored: SweepState | None, live: frozenset[str]) -> tuple[SweepState, bool]:
    """Where the sweep stands with the `live` offers: the state to go on from, and whether a
    chunk of parties (those after its cursor) is to be decided."""
    if stored is None:
        return SweepState(live, "", finished=True), False
    if live - stored.offers:
        return SweepState(live, "", finished=False), True
    return stored, not stored.finished


def after_chunk(state: SweepState, decided: list[str], chunk: int) -> SweepState:
    """The state once the parties `decided` (in id order, at most `chunk` of them) are: a
    short chunk was the last."""
    cursor = decided[-1] if decided else state.cursor
    return SweepState(state.offers, cursor, finished=len(decided) < chunk)
