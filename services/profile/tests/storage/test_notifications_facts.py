"""What notifications tells the profile — a consent withdrawn by a reply or an unsubscribe link,
a message sent — applied as the `profile-notifications` consumer applies it (each event in its
own transaction with its inbox row), on SQLite and PostgreSQL: the party's consent and its
ProfileChanged, the order against the source systems' consents, duplicates, the contact
history, and a merge (with the retired party's messages arriving in either order)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from zhike.profile.v1 import events_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.domain.facts import (
    Channel,
    Consent,
    ConsentEvidence,
    InteractionKind,
    MessageChannel,
    Purpose,
    SentMessage,
    SourceKey,
)

from ..profile_harness import Harness
from ..source_facts import T0, consent, source_event

RECORD = SourceKey("core", "C-1")
REPLY_AT = T0 + dt.timedelta(hours=2)


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url, now=T0 + dt.timedelta(days=1))
    yield started
    await started.close()


@pytest.fixture
async def two_harnesses(two_database_urls: tuple[str, str]) -> AsyncIterator[list[Harness]]:
    """Two stores of one kind: one fed in order, one fed the same events in another order."""
    started = [await Harness.start(url, now=T0 + dt.timedelta(days=1)) for url in two_database_urls]
    yield started
    for harness in started:
        await harness.close()


async def linked_party(harness: Harness) -> str:
    party_id = str(uuid.uuid4())
    await harness.linked(f"link-{party_id}", RECORD, party_id, 1)
    return party_id


def withdrawal(at: dt.datetime = REPLY_AT, where: str = "sms reply") -> Consent:
    return Consent(Channel.SMS, Purpose.MARKETING, False, ConsentEvidence(at, where, ""))


async def withdrawn_by_message(
    harness: Harness, event_id: str, party_id: str, at: dt.datetime = REPLY_AT
) -> bool:
    return await harness.deliver(
        event_id,
        lambda unit: harness.updates.consent_withdrawn_by_message(
            unit, party_id, f"n-{event_id}", withdrawal(at)
        ),
    )


async def message_sent(
    harness: Harness, event_id: str, party_id: str, notification_id: str, at: dt.datetime
) -> bool:
    message = SentMessage(notification_id, MessageChannel.SMS, "fx-usd", "offer-1", "decision-1")
    return await harness.deliver(
        event_id, lambda unit: harness.updates.message_sent(unit, party_id, message, at)
    )


async def given_at_branch(harness: Harness, event_id: str, sequence: int, at: dt.datetime) -> None:
    event = source_event(
        "core", RECORD.source_record_id, event_id, sequence, **consent(True, at=at)
    )
    event.consent_given.evidence.captured_where = "branch 0101"
    await harness.source(event)


async def sms_marketing(harness: Harness, party_id: str) -> Consent:
    view = await harness.profile(party_id)
    assert view.facts is not None
    (found,) = [
        c for c in view.facts.consents if (c.channel, c.purpose) == (Channel.SMS, Purpose.MARKETING)
    ]
    return found


def consent_changes(changes: list[events_pb2.ProfileChanged]) -> list[events_pb2.ConsentChanged]:
    return [f.consent_changed for c in changes for f in c.facts if f.HasField("consent_changed")]


async def test_a_reply_withdraws_the_consent_with_its_evidence_and_is_told(
    harness: Harness,
) -> None:
    party_id = await linked_party(harness)
    await given_at_branch(harness, "given", 1, T0)

    await withdrawn_by_message(harness, "td", party_id)

    assert await sms_marketing(harness, party_id) == withdrawal()
    last = (await harness.changes())[-1]
    assert last.party_id == party_id
    assert last.cause == events_pb2.CHANGE_CAUSE_NOTIFICATIONS
    (told,) = consent_changes([last])
    assert (told.channel, told.purpose, told.given) == (
        source_pb.CONTACT_CHANNEL_SMS,
        source_pb.CONTACT_PURPOSE_MARKETING,
        False,
    )
    assert told.evidence.captured_where == "sms reply"
    assert told.evidence.capture_time.ToDatetime(tzinfo=dt.UTC) == REPLY_AT
    assert told.evidence.text_version == ""


async def test_a_consent_given_again_later_at_a_branch_wins_over_a_late_withdrawal(
    harness: Harness,
) -> None:
    party_id = await linked_party(harness)
    given_again = REPLY_AT + dt.timedelta(days=1)
    await given_at_branch(harness, "given-again", 2, given_again)
    told_before = len(await harness.changes())

    # The reply from before the branch visit arrives after it.
    await withdrawn_by_message(harness, "late-td", party_id)

    held = await sms_marketing(harness, party_id)
    assert held.given
    assert held.evidence.captured_at == given_again
    assert len(await harness.changes()) == told_before


async def test_a_withdrawal_wins_over_a_consent_given_before_it_whatever_arrives_last(
    harness: Harness,
) -> None:
    party_id = await linked_party(harness)
    await withdrawn_by_message(harness, "td", party_id)

    # A branch's consent from before the reply, delivered late.
    await given_at_branch(harness, "given-before", 5, REPLY_AT - dt.timedelta(hours=1))

    assert await sms_marketing(harness, party_id) == withdrawal()


async def test_an_older_withdrawal_does_not_replace_a_newer_ones_evidence(
    harness: Harness,
) -> None:
    party_id = await linked_party(harness)
    await withdrawn_by_message(harness, "td-2", party_id, REPLY_AT)

    await withdrawn_by_message(harness, "td-1", party_id, REPLY_AT - dt.timedelta(hours=1))

    assert (await sms_marketing(harness, party_id)).evidence.captured_at == REPLY_AT


async def test_a_withdrawal_delivered_twice_is_applied_and_told_once(harness: Harness) -> None:
    party_id = await linked_party(harness)
    await given_at_branch(harness, "given", 1, T0)

    assert await withdrawn_by_message(harness, "td", party_id)
    assert not await withdrawn_by_message(harness, "td", party_id)
    # Published again under another event id (a relay retry after a lost ack): same fact.
    assert await withdrawn_by_message(harness, "td-again", party_id)

    assert [c.given for c in consent_changes(await harness.changes())] == [True, False]


async def test_a_sent_message_is_in_the_contact_history_once(harness: Harness) -> None:
    party_id = await linked_party(harness)
    notification_id = str(uuid.uuid4())
    sent_at = T0 + dt.timedelta(hours=3)

    await message_sent(harness, "sent-1", party_id, notification_id, sent_at)
    await message_sent(harness, "sent-1", party_id, notification_id, sent_at)
    await message_sent(harness, "sent-1-again", party_id, notification_id, sent_at)

    page = await harness.queries.list_interactions(party_id, 10, "")
    (stored,) = page.interactions
    assert stored.interaction.kind is InteractionKind.MESSAGE_SENT
    assert stored.interaction.at == sent_at
    assert stored.message == SentMessage(
        notification_id, MessageChannel.SMS, "fx-usd", "offer-1", "decision-1"
    )
    # Not a source record: GetProfile lists only the records identity linked.
    view = await harness.profile(party_id)
    assert [r.key for r in view.profile.source_records] == [RECORD]


async def test_a_merged_party_keeps_the_messages_and_withdrawals_of_the_retired_one(
    harness: Harness,
) -> None:
    survivor, retired = await linked_party(harness), str(uuid.uuid4())
    await harness.created("created-retired", retired)
    notification_id = str(uuid.uuid4())
    await message_sent(harness, "sent", retired, notification_id, T0 + dt.timedelta(hours=1))
    await withdrawn_by_message(harness, "td", retired)

    await harness.merged("merge", survivor, [retired])
    # Told of the retired party after the merge: it counts for the survivor all the same.
    later = str(uuid.uuid4())
    await message_sent(harness, "sent-later", retired, later, T0 + dt.timedelta(hours=4))

    page = await harness.queries.list_interactions(survivor, 10, "")
    assert [i.message.notification_id for i in page.interactions if i.message] == [
        later,
        notification_id,
    ]
    assert await sms_marketing(harness, survivor) == withdrawal()


async def test_a_retired_id_re_routed_after_a_split_takes_its_messages_to_its_new_party(
    harness: Harness,
) -> None:
    kept, retired, new_party = await linked_party(harness), str(uuid.uuid4()), str(uuid.uuid4())
    await harness.created("created-retired", retired)
    notification_id = str(uuid.uuid4())
    await message_sent(harness, "sent", retired, notification_id, T0 + dt.timedelta(hours=1))
    await harness.merged("merge", kept, [retired], versions=[1])

    await harness.created("created-new", new_party)
    await harness.merged("re-route", new_party, [retired], versions=[2])

    moved = await harness.queries.list_interactions(new_party, 10, "")
    assert [i.message.notification_id for i in moved.interactions if i.message] == [notification_id]
    stayed = await harness.queries.list_interactions(kept, 10, "")
    assert [i for i in stayed.interactions if i.message] == []


async def test_a_merged_partys_message_records_are_the_same_whatever_order_its_messages_arrive_in(
    two_harnesses: list[Harness],
) -> None:
    """Found by the delivery-order state machine (test_delivery_order.py): a party's
    notifications record is linked at the send time of whichever of its messages arrives first,
    and a merged party's message records were read in the order of those times."""
    survivor, retired = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    sent = [
        (survivor, "n-0", T0),
        (retired, "n-1", T0 + dt.timedelta(hours=1)),
        (survivor, "n-3", T0 + dt.timedelta(hours=3)),
    ]
    in_order, reversed_order = two_harnesses
    for harness, order in ((in_order, sent), (reversed_order, sent[::-1])):
        for party_id in (survivor, retired):
            await harness.created(f"created-{party_id}", party_id, T0 - dt.timedelta(days=1))
        for party_id, notification_id, at in order:
            await message_sent(harness, f"sent-{notification_id}", party_id, notification_id, at)
        await harness.merged("merge", survivor, [retired], T0 + dt.timedelta(hours=4), [1])

    expected, actual = [(await h.profile(survivor)).profile for h in two_harnesses]
    assert actual.message_records == expected.message_records
