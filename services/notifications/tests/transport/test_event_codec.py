"""Offers' decisions as notifications reads them: ids that fit what storage and providers take
are accepted, others are refused naming the field (the consumer dead-letters them) instead of
failing in the database on every redelivery."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from zhike.offers.v1 import events_pb2 as offers_events
from zhike.offers.v1 import offers_pb2
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.profile.v1 import profile_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_notifications.domain.model import Channel
from zhike_notifications.transport.event_codec import (
    contact_preferences,
    decision_withdrawal,
    offer_decision,
    profile_news,
)
from zhike_runtime.events.consumer import PermanentEventError


def decided(decision_id: str) -> offers_events.OfferDecided:
    now = Timestamp()
    now.FromDatetime(dt.datetime.now(dt.UTC))
    return offers_events.OfferDecided(
        decision_id=decision_id,
        party_id=str(uuid.uuid4()),
        offer_id="usd_fx_wealth",
        channel=offers_pb2.CHANNEL_SMS,
        template_id="offer_usd_fx_wealth_sms_v1",
        category=offers_pb2.OFFER_CATEGORY_MARKETING,
        decide_time=now,
        profile_version=3,
    )


def test_a_decision_id_of_58_characters_is_taken_with_its_profile_version() -> None:
    decision = offer_decision(decided("d" * 58))

    assert decision.decision_id == "d" * 58
    assert decision.profile_version == 3


def test_a_decision_carries_its_offers_close_and_none_when_the_offer_does_not_close() -> None:
    closing = decided("d-1")
    closing.offer_valid_until.FromDatetime(dt.datetime(2026, 12, 6, 16, tzinfo=dt.UTC))

    assert offer_decision(closing).offer_valid_until == dt.datetime(2026, 12, 6, 16, tzinfo=dt.UTC)
    assert offer_decision(decided("d-2")).offer_valid_until is None


def test_a_close_that_is_no_possible_time_is_refused_naming_it() -> None:
    closing = decided("d-1")
    closing.offer_valid_until.seconds = 10**12

    with pytest.raises(PermanentEventError, match=r"^OfferDecided\.offer_valid_until "):
        offer_decision(closing)


@pytest.mark.parametrize("decision_id", ["d" * 59, "决定-1", "d.1", ""])
def test_a_decision_id_storage_or_providers_cannot_take_is_refused_naming_it(
    decision_id: str,
) -> None:
    with pytest.raises(PermanentEventError, match=r"^OfferDecided\.decision_id "):
        offer_decision(decided(decision_id))


def test_a_withdrawal_of_a_decision_id_too_long_is_refused_naming_it() -> None:
    withdrawn = offers_events.OfferWithdrawn(
        decision_id="d" * 59, party_id=str(uuid.uuid4()), withdraw_time=Timestamp(seconds=1)
    )

    with pytest.raises(PermanentEventError, match=r"^OfferWithdrawn\.decision_id "):
        decision_withdrawal(withdrawn)


def preferences(**fields: object) -> offers_events.ContactPreferencesChanged:
    message = offers_events.ContactPreferencesChanged(
        party_id=str(uuid.uuid4()),
        do_not_contact=True,
        opted_out_channels=[offers_pb2.CHANNEL_SMS, offers_pb2.CHANNEL_PUSH],
        preferences_version=2,
        change_time=Timestamp(seconds=1_800_000_000),
    )
    for name, value in fields.items():
        if isinstance(value, list):
            del getattr(message, name)[:]
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


def test_contact_preferences_changed_is_read_with_its_channels_and_version() -> None:
    read = contact_preferences(preferences())

    assert read.do_not_contact
    assert read.opted_out_channels == {Channel.SMS, Channel.PUSH}
    assert read.version == 2


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"preferences_version": 0}, "preferences_version"),
        (
            {"opted_out_channels": [offers_pb2.CHANNEL_SMS, offers_pb2.CHANNEL_BRANCH]},
            "opted_out_channels[1]",
        ),
        ({"party_id": "not-a-party"}, "party_id"),
    ],
)
def test_malformed_contact_preferences_changed_is_refused_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(
        PermanentEventError, match=rf"^ContactPreferencesChanged\.{re.escape(field)} "
    ):
        contact_preferences(preferences(**fields))


def consent_captured(at: dt.datetime) -> profile_events.ProfileChanged:
    evidence = profile_pb2.ConsentEvidence(captured_where="branch 12", text_version="v1")
    evidence.capture_time.FromDatetime(at)
    changed = profile_changed()
    changed.facts.add().consent_changed.CopyFrom(
        profile_events.ConsentChanged(
            channel=source_pb.CONTACT_CHANNEL_SMS,
            purpose=source_pb.CONTACT_PURPOSE_MARKETING,
            given=True,
            evidence=evidence,
        )
    )
    return changed


def profile_changed() -> profile_events.ProfileChanged:
    changed = profile_events.ProfileChanged(party_id=str(uuid.uuid4()), profile_version=2)
    changed.change_time.FromDatetime(dt.datetime.now(dt.UTC))
    return changed


def test_a_consent_captured_far_in_the_future_is_refused_naming_its_capture_time() -> None:
    # The newest decision wins: dated years ahead, it would outrank the customer's later opt-out.
    now = dt.datetime.now(dt.UTC)
    assert profile_news(consent_captured(now)).consents[0].record.given

    with pytest.raises(
        PermanentEventError, match=r"facts\[0\]\.consent_changed\.evidence\.capture_time "
    ):
        profile_news(consent_captured(dt.datetime(2205, 1, 1, tzinfo=dt.UTC)))
