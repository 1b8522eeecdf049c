"""The outbound sweep: when the live outbound offers gain one (a new offer, a new version of
one, or one whose `valid_from` has come), every party is decided again once for the offers
gained, so they reach the customers they suit without waiting for each one's next profile
change. The other offers are left out: they were decided at profile changes already, and
deciding them again for everyone at each launch would be a burst of marketing nobody asked for.

The parties go in order of their id, a chunk per transaction, and the sweep's state (the offers
live when it started, those it decides, the last party decided) is stored with each chunk: a
restart, or another replica, carries on after the last chunk committed. A sweep runs to its end:
offers going live meanwhile get the next sweep, so frequent saves cannot keep restarting it and
leave the parties late in the order unreached. An offer leaving (retired, closed) starts
nothing: the saves and the expiry round withdraw what it no longer allows.

The sweep never runs for the offers live when it first looks: they are its starting point (a new
install, or the upgrade that brings the sweep), for the same reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from zhike_offers.domain.catalogue import Catalogue


@dataclass(frozen=True)
class SweepState:
    # The live outbound offers when the sweep started, as "offer_id:version": the next sweep
    # is for what goes live beyond them.
    offers: frozenset[str]
    # The ids of the offers it decides (those that went live).
    fresh: frozenset[str]
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
        return SweepState(live, frozenset(), "", finished=True), False
    if not stored.finished:
        return stored, True
    gained = live - stored.offers
    if gained:
        fresh = frozenset(entry.rsplit(":", 1)[0] for entry in gained)
        return SweepState(live, fresh, "", finished=False), True
    return stored, False


def after_chunk(state: SweepState, decided: list[str], chunk: int) -> SweepState:
    """The state once the parties `decided` (in id order, at most `chunk` of them) are: a
    short chunk was the last."""
    cursor = decided[-1] if decided else state.cursor
    return SweepState(state.offers, state.fresh, cursor, finished=len(decided) < chunk)
