"""When the outbound sweep runs, where it starts, and when it is done (domain/sweep.py)."""

from __future__ import annotations

import datetime as dt

from zhike_offers.domain.sweep import SweepState, after_chunk, live_outbound, plan

from .builders import catalogue, offer

NOW = dt.datetime(2026, 12, 4, 1, tzinfo=dt.UTC)
A1 = frozenset({"a:1"})
A1_B1 = frozenset({"a:1", "b:1"})


NONE: frozenset[str] = frozenset()


def test_the_first_look_takes_the_live_offers_as_swept_without_deciding_anyone() -> None:
    assert plan(None, A1) == (SweepState(A1, NONE, "", finished=True), False)


def test_nothing_is_decided_while_the_live_offers_are_the_ones_swept_for() -> None:
    done = SweepState(A1, NONE, "p9", finished=True)
    assert plan(done, A1) == (done, False)


def test_an_offer_gone_live_starts_a_sweep_for_it_alone_from_the_first_party() -> None:
    done = SweepState(A1, NONE, "p9", finished=True)
    assert plan(done, A1_B1) == (SweepState(A1_B1, frozenset({"b"}), "", finished=False), True)


def test_a_new_version_of_a_live_offer_starts_a_sweep_for_it() -> None:
    done = SweepState(A1, NONE, "p9", finished=True)
    a2 = frozenset({"a:2"})
    assert plan(done, a2) == (SweepState(a2, frozenset({"a"}), "", finished=False), True)


def test_an_offer_leaving_starts_nothing() -> None:
    done = SweepState(A1_B1, NONE, "p9", finished=True)
    assert plan(done, A1) == (done, False)


def test_an_unfinished_sweep_goes_on_after_its_cursor_whatever_went_live_or_left() -> None:
    halfway = SweepState(A1, frozenset({"a"}), "p5", finished=False)
    assert plan(halfway, A1) == (halfway, True)
    assert plan(halfway, A1_B1) == (halfway, True)  # b waits for the next sweep
    assert plan(halfway, NONE) == (halfway, True)


def test_an_offer_gone_live_during_a_sweep_gets_the_next_one() -> None:
    halfway = SweepState(A1, frozenset({"a"}), "p5", finished=False)
    done = after_chunk(halfway, [], chunk=2)
    assert plan(done, A1_B1) == (SweepState(A1_B1, frozenset({"b"}), "", finished=False), True)


def test_a_full_chunk_moves_the_cursor_and_a_short_one_finishes() -> None:
    started = SweepState(A1, frozenset({"a"}), "", finished=False)
    full = after_chunk(started, ["p1", "p2"], chunk=2)
    assert full == SweepState(A1, frozenset({"a"}), "p2", finished=False)
    assert after_chunk(full, ["p3"], chunk=2) == SweepState(A1, frozenset({"a"}), "p3", True)
    assert after_chunk(full, [], chunk=2) == SweepState(A1, frozenset({"a"}), "p2", True)


def test_live_outbound_offers_are_those_outbound_not_retired_and_in_their_window() -> None:
    sms = {"channels": ["sms"], "outbound": True, "templates": {"sms": "t_sms"}}
    live = catalogue(
        offer("live", **sms),
        offer("app_only"),
        offer("retired", retired=True, **sms),
        offer("opens_later", valid_from=(NOW + dt.timedelta(days=1)).isoformat(), **sms),
        offer("closed", valid_until=NOW.isoformat(), **sms),
        offer("second_version", version=2, **sms),
    )

    assert live_outbound(live, NOW) == frozenset({"live:1", "second_version:2"})
