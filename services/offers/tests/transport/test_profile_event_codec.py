"""The profile's ProfileChanged as offers reads it: content that could never be applied, or would
leave a party in a state no later event mends, is refused naming the field (the consumer
dead-letters it at once); a kind of fact a newer profile tells is skipped."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest

from zhike_offers.domain.projection import AgeFact
from zhike_offers.transport import event_codec
from zhike_offers.transport.event_codec import profile_change
from zhike_runtime.events.consumer import PermanentEventError

from ..profile_events import age, changed, usd

PARTY = str(uuid.uuid4())


def test_a_party_merged_into_itself_is_refused_naming_the_field() -> None:
    # Merged into itself, a party would forward to itself and never be decided for again.
    with pytest.raises(PermanentEventError, match=r"^ProfileChanged\.merged_into_party_id "):
        profile_change(changed(PARTY, 2, merged_into=PARTY))


def test_an_ended_forwarding_without_the_party_kept_is_refused_naming_the_field() -> None:
    # Its contacts would count for no one.
    with pytest.raises(PermanentEventError, match=r"^ProfileChanged\.merged_into_party_id "):
        profile_change(changed(PARTY, 2, forwarding_ended=True))


def test_a_change_time_in_the_last_year_a_timestamp_holds_is_refused_naming_the_field() -> None:
    # Put in the bank's zone (UTC+8), it would overflow on every delivery.
    last_evening = dt.datetime(9999, 12, 31, 20, tzinfo=dt.UTC)

    with pytest.raises(PermanentEventError, match=r"^ProfileChanged\.change_time "):
        profile_change(changed(PARTY, 2, usd(6000), at=last_evening))


def test_an_age_is_read_in_whole_years_and_an_unset_one_is_not_known_any_more() -> None:
    told = profile_change(changed(PARTY, 2, age(18, before=17), age(0), age(150), age(None, 40)))

    assert told.facts == (AgeFact(18), AgeFact(0), AgeFact(150), AgeFact(None))


@pytest.mark.parametrize("years", [-1, 151, 2**31 - 1])
def test_an_age_outside_0_to_150_is_read_as_not_known_and_the_change_applies(
    years: int,
) -> None:
    # No person is that old: a broken birth date. Refusing the change would dead-letter the
    # balance told with it.
    told = profile_change(changed(PARTY, 2, usd(6000), age(years)))

    assert told.facts == (*profile_change(changed(PARTY, 2, usd(6000))).facts, AgeFact(None))


def test_a_fact_of_a_kind_a_newer_profile_tells_is_skipped_and_the_others_apply() -> None:
    # A fact this release does not know (field 99 of the oneof, from a newer profile): refusing
    # the whole change would dead-letter every party's changes, balances included, until offers
    # is upgraded too (RELIABILITY.md, forward compatibility: unknown fields are ignored).
    message = changed(PARTY, 2, usd(6000), usd(0))
    message.facts[1].Clear()
    message.facts[1].MergeFromString(b"\x9a\x06\x00")  # field 99, length-delimited, empty

    told = profile_change(message)

    assert told.facts == profile_change(changed(PARTY, 2, usd(6000))).facts


def test_skipping_a_kind_of_fact_is_logged_once_per_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event_codec._tell_unknown_fact.cache_clear()  # as in a fresh process
    message = changed(PARTY, 2, usd(6000))
    message.facts.add().MergeFromString(b"\x9a\x06\x00")  # field 99: a newer profile's

    with caplog.at_level(logging.WARNING, logger=event_codec.__name__):
        profile_change(message)
        profile_change(message)

    skipped = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert len(skipped) == 1
