"""Consents, the inbox, withdrawn decisions and webhook deliveries over SQLite and PostgreSQL:
the newer consent decision holds whatever the order, and consents are read with the profile
version they are as of; the inbox pages, counts and marks read once, its text sealed; a
withdrawal and a webhook delivery are each taken once; each is deleted from its cut-off on."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from zhike_notifications.domain.gates import ConsentEvidence, ConsentRecord
from zhike_notifications.domain.model import Channel, Purpose
from zhike_notifications.domain.ports import (
    ConsentEntry,
    DecisionWithdrawal,
    HeldConsents,
)
from zhike_notifications.storage.schema import inbox_message
from zhike_runtime.db import Database

from .conftest import OTHER_PARTY, PARTY, T0, Units, inbox_entry

HOUR = dt.timedelta(hours=1)
BRANCH = ConsentEvidence("branch 0101", T0 - 48 * HOUR, "marketing-sms-v3")


def sms_marketing(
    given: bool, decided_at: dt.datetime, profile_version: int, party_id: str = PARTY
) -> ConsentEntry:
    evidence = BRANCH if given else None
    return ConsentEntry(
        party_id,
        ConsentRecord(Channel.SMS, Purpose.MARKETING, given, evidence),
        decided_at,
        profile_version,
    )


async def put(units: Units, *entries: ConsentEntry) -> int:
    async with units() as unit:
        taken = await unit.consents.put(entries)
        await unit.commit()
    return taken


async def consents(units: Units, party_id: str = PARTY) -> list[ConsentEntry]:
    async with units() as unit:
        return list((await unit.consents.held(party_id)).entries)


async def test_an_older_consent_decision_never_overwrites_a_newer_one(units: Units) -> None:
    newer = sms_marketing(True, T0, profile_version=5)
    email = ConsentEntry(
        PARTY, ConsentRecord(Channel.EMAIL, Purpose.SERVICE, False), T0 - HOUR, profile_version=2
    )
    assert await put(units, newer, email) == 2

    # Decided earlier, even if carried by a later profile version; the same decision again.
    assert await put(units, sms_marketing(False, T0 - HOUR, profile_version=9)) == 0
    assert await put(units, newer) == 0
    assert await consents(units) == [email, newer]

    # Decided at the same time, carried by a later profile version: the later one holds.
    later_version = sms_marketing(False, T0, profile_version=6)
    assert await put(units, later_version) == 1
    assert await consents(units) == [email, later_version]


async def test_a_reply_decided_later_wins_over_a_profile_entry_and_a_late_profile_change(
    units: Units,
) -> None:
    profile = sms_marketing(True, T0, profile_version=7)
    assert await put(units, profile) == 1

    # The customer answered "TD" an hour later: notifications' own decision (version 0).
    reply = sms_marketing(False, T0 + HOUR, profile_version=0)
    assert await put(units, reply) == 1
    assert await consents(units) == [reply]

    # A late ProfileChanged still carrying the earlier consent does not bring it back.
    assert await put(units, sms_marketing(True, T0, profile_version=8)) == 0
    assert await consents(units) == [reply]


async def test_a_batch_keeps_the_newest_decision_per_consent(units: Units) -> None:
    newest = sms_marketing(False, T0 + HOUR, profile_version=3)
    other_party = sms_marketing(True, T0, profile_version=1, party_id=OTHER_PARTY)
    taken = await put(
        units,
        sms_marketing(True, T0, profile_version=1),
        newest,
        sms_marketing(True, T0 + HOUR, profile_version=2),
        other_party,
    )
    assert taken == 2
    assert await consents(units) == [newest]
    assert await consents(units, OTHER_PARTY) == [other_party]
    assert await put(units) == 0


async def test_the_consents_held_come_with_the_profile_version_they_are_as_of(
    units: Units,
) -> None:
    async with units() as unit:
        assert await unit.consents.held(PARTY) == HeldConsents((), 0)
        await unit.consents.saw_profile(PARTY, 4)  # a ProfileChanged without consents
        await unit.commit()
    async with units() as unit:
        assert await unit.consents.held(PARTY) == HeldConsents((), 4)

    consent = sms_marketing(True, T0, profile_version=7)
    email = ConsentEntry(
        PARTY, ConsentRecord(Channel.EMAIL, Purpose.SERVICE, False), T0 - HOUR, profile_version=7
    )
    async with units() as unit:
        await unit.consents.put([consent, email])
        await unit.consents.saw_profile(PARTY, 7)
        await unit.consents.put([sms_marketing(True, T0, profile_version=1, party_id=OTHER_PARTY)])
        await unit.commit()
    async with units() as unit:
        assert await unit.consents.held(PARTY) == HeldConsents((email, consent), 7)
        # Consents applied from a ProfileChanged whose version was not recorded: as of none.
        other = await unit.consents.held(OTHER_PARTY)
    assert other.profile_version == 0
    assert [e.party_id for e in other.entries] == [OTHER_PARTY]


async def test_the_inbox_pages_newest_first_and_unread_only_and_counts_unread(
    units: Units,
) -> None:
    entries = [inbox_entry(f"m{i}", T0 + i * HOUR) for i in range(5)]
    async with units() as unit:
        for entry in [*entries, inbox_entry("other", T0, OTHER_PARTY)]:
            await unit.inbox.add(entry)
        await unit.inbox.add(entries[0])  # a redelivery changes nothing
        assert await unit.inbox.mark_read(PARTY, ["m3"], T0 + 10 * HOUR) == 1
        await unit.commit()

    async with units() as unit:
        first = await unit.inbox.page(PARTY, None, 2, unread_only=False)
        second = await unit.inbox.page(
            PARTY, (first[-1].created_at, first[-1].notification_id), 2, unread_only=False
        )
        unread = await unit.inbox.page(PARTY, None, 10, unread_only=True)
        count = await unit.inbox.unread_count(PARTY)
    assert [e.notification_id for e in first] == ["m4", "m3"]
    assert first[0] == entries[4]
    assert first[1].read_at == T0 + 10 * HOUR
    assert [e.notification_id for e in second] == ["m2", "m1"]
    assert [e.notification_id for e in unread] == ["m4", "m2", "m1", "m0"]
    assert count == 4


async def test_mark_read_marks_each_unread_message_once_and_only_the_partys_own(
    units: Units,
) -> None:
    async with units() as unit:
        await unit.inbox.add(inbox_entry("m1", T0))
        await unit.inbox.add(inbox_entry("m2", T0 + HOUR))
        await unit.inbox.add(inbox_entry("theirs", T0, OTHER_PARTY))
        await unit.commit()

    async with units() as unit:
        assert await unit.inbox.known(PARTY, ["m1", "theirs", "missing"]) == {"m1"}
        assert await unit.inbox.mark_read(PARTY, ["m1", "theirs"], T0 + 2 * HOUR) == 1
        assert await unit.inbox.mark_read(PARTY, ["m1", "m2"], T0 + 3 * HOUR) == 1
        assert await unit.inbox.mark_read(PARTY, ["m1", "m2"], T0 + 4 * HOUR) == 0
        assert await unit.inbox.mark_read(PARTY, [], T0) == 0
        await unit.commit()

    async with units() as unit:
        read = {e.notification_id: e.read_at for e in await unit.inbox.page(PARTY, None, 10, False)}
        assert await unit.inbox.unread_count(PARTY) == 0
        assert await unit.inbox.unread_count(OTHER_PARTY) == 1
    # The first read time stays.
    assert read == {"m1": T0 + 2 * HOUR, "m2": T0 + 3 * HOUR}


async def test_the_inbox_text_is_sealed_in_the_row(units: Units, database: Database) -> None:
    entry = inbox_entry("m1", T0)
    async with units() as unit:
        await unit.inbox.add(entry)
        await unit.commit()
    async with database.engine.connect() as connection:
        row = (await connection.execute(sa.select(inbox_message))).one()
    assert "王小明" not in row.body
    assert "定期存款" not in row.body
    assert "定期存款" not in row.subject
    async with units() as unit:
        assert await unit.inbox.page(PARTY, None, 1, False) == [entry]


async def test_a_decision_is_withdrawn_once(units: Units) -> None:
    withdrawal = DecisionWithdrawal("d-1", PARTY, T0)
    async with units() as unit:
        assert await unit.withdrawals.add(withdrawal)
        assert not await unit.withdrawals.add(DecisionWithdrawal("d-1", PARTY, T0 + HOUR))
        await unit.commit()
    async with units() as unit:
        assert await unit.withdrawals.get("d-1") == withdrawal
        assert await unit.withdrawals.get("d-2") is None


async def test_inbox_pruning_deletes_up_to_the_limit_of_the_messages_created_before_the_cut_off(
    units: Units,
) -> None:
    async with units() as unit:
        for i in range(3):
            await unit.inbox.add(inbox_entry(f"old-{i}", T0 + i * HOUR))
        await unit.inbox.add(inbox_entry("at-cut-off", T0 + 3 * HOUR, OTHER_PARTY))
        await unit.commit()
    async with units() as unit:
        assert await unit.inbox.prune(T0 + 3 * HOUR, limit=2) == 2
        assert await unit.inbox.prune(T0 + 3 * HOUR, limit=2) == 1
        assert await unit.inbox.prune(T0 + 3 * HOUR, limit=2) == 0
        await unit.commit()
    async with units() as unit:
        assert await unit.inbox.page(PARTY, None, 10, False) == []
        assert await unit.inbox.known(OTHER_PARTY, ["at-cut-off"]) == {"at-cut-off"}


async def test_withdrawal_pruning_deletes_those_made_before_the_cut_off(units: Units) -> None:
    async with units() as unit:
        assert await unit.withdrawals.add(DecisionWithdrawal("d-old", PARTY, T0))
        assert await unit.withdrawals.add(DecisionWithdrawal("d-new", PARTY, T0 + HOUR))
        await unit.commit()
    async with units() as unit:
        assert await unit.withdrawals.prune(T0 + HOUR, limit=10) == 1
        await unit.commit()
    async with units() as unit:
        assert await unit.withdrawals.get("d-old") is None
        assert await unit.withdrawals.get("d-new") == DecisionWithdrawal("d-new", PARTY, T0 + HOUR)


async def test_a_replayed_webhook_delivery_is_not_first_time_until_pruned(units: Units) -> None:
    async with units() as unit:
        assert await unit.webhook_deliveries.first_time("sms_a", "wh-1", T0)
        assert await unit.webhook_deliveries.first_time("sms_a", "wh-2", T0 + 2 * HOUR)
        await unit.commit()
    async with units() as unit:
        assert not await unit.webhook_deliveries.first_time("sms_a", "wh-1", T0 + HOUR)
        assert await unit.webhook_deliveries.prune(T0 + HOUR, limit=10) == 1
        assert await unit.webhook_deliveries.first_time("sms_a", "wh-1", T0 + 3 * HOUR)
        assert not await unit.webhook_deliveries.first_time("sms_a", "wh-2", T0 + 3 * HOUR)
        await unit.commit()


async def test_the_same_delivery_id_from_another_provider_is_not_a_replay(units: Units) -> None:
    # Ids are each provider's own: taken for a replay, a reply's "TD" opt-out would be lost.
    longest = "d" * 200  # with a provider's name, longer than the column holds
    async with units() as unit:
        assert await unit.webhook_deliveries.first_time("sms_a", "wh-1", T0)
        assert await unit.webhook_deliveries.first_time("sms_b", "wh-1", T0)
        assert await unit.webhook_deliveries.first_time("sms_a" * 12, longest, T0)
        assert not await unit.webhook_deliveries.first_time("sms_a" * 12, longest, T0 + HOUR)
        await unit.commit()
