"""DecideOffers' decision log, responses and retention over real storage (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from zhike_offers.domain.contact_policy import ContactKind, SuppressionRule
from zhike_offers.domain.decision import Reason
from zhike_offers.domain.model import Decided, DecisionTrigger, ResponseRecord
from zhike_offers.storage import schema
from zhike_runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from zhike_runtime.testing.processes import PostgresCluster

from ..offers_harness import Harness
from ..profile_events import T0, age, balance, changed, risk, sms_marketing, usd

PARTY = str(uuid.UUID(int=1))
OTHER = str(uuid.UUID(int=2))
PROMO = "time_deposit_promo"  # on the app for everyone until October 2027


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    started = await Harness.start(database_url, retention_days=30)
    yield started
    await started.close()


async def app_banner(harness: Harness, party_id: str = PARTY) -> Decided:
    return await harness.decide(party_id, "mobile_app", placement="home_banner", max_offers=1)


def response(decided: Decided, kind: ContactKind, party_id: str = PARTY) -> ResponseRecord:
    chosen = decided.offers[0]
    return ResponseRecord(
        response_id=str(uuid.uuid4()),
        decision_id=chosen.decision_id,
        offer_id=chosen.chosen.offer_id,
        party_id=party_id,
        kind=kind,
        channel="mobile_app",
        at=T0,
    )


async def test_every_decision_is_logged_with_its_inputs_digest_and_every_reason(
    harness: Harness,
) -> None:
    await harness.deliver("e1", changed(PARTY, 1, risk(3), usd(6000)))
    first = await app_banner(harness)
    again = await app_banner(harness)
    await harness.deliver("e2", changed(PARTY, 2, usd(9000)))
    changed_facts = await app_banner(harness)

    page = await harness.decisions.list_decisions(PARTY, 10, "")

    assert [e.arbitration_id for e in page.entries] == [
        changed_facts.arbitration_id,
        again.arbitration_id,
        first.arbitration_id,
    ]
    entry = page.entries[-1]
    assert entry.trigger is DecisionTrigger.REQUEST
    assert entry.requested_by == "test-user"
    assert [o.decision_id for o in entry.chosen] == [o.decision_id for o in first.offers]
    assert entry.catalogue_version == (await harness.catalogues.get()).version
    # Every other offer and why, though the caller did not ask to explain.
    live = {o.offer_id for o in (await harness.catalogues.get()).offers}
    assert {n.offer_id for n in entry.not_chosen} | {
        o.chosen.offer_id for o in entry.chosen
    } == live
    # The same inputs give the same digest; other facts another.
    digests = [e.inputs_digest for e in page.entries]
    assert digests[2] == digests[1] != digests[0]
    assert len(digests[0]) == 64


async def test_the_log_keeps_each_reason_without_its_words_and_words_it_as_decided(
    harness: Harness,
) -> None:
    # A C3 adult with CNY for the R4 fund (unsuitable) and USD for the FX offer.
    await harness.deliver(
        "e1", changed(PARTY, 1, risk(3), usd(6000), balance("CNY", 10_000_000), age(40))
    )
    decided = await harness.decide(PARTY, "mobile_app", placement="home_banner", max_offers=1)

    [entry] = (await harness.decisions.list_decisions(PARTY, 10, "")).entries

    assert entry.not_chosen == decided.decision.not_chosen
    assert [n.explanation for n in entry.not_chosen] == [
        n.explanation for n in decided.decision.not_chosen
    ]
    assert {n.reason for n in entry.not_chosen} >= {
        Reason.INELIGIBLE,
        Reason.UNSUITABLE,
        Reason.BELOW_CUTOFF,
    }
    async with harness.database.session() as session:
        stored = await session.scalar(sa.select(schema.decision_log.c.entry))
    # Every reason here follows from its offer version: kept as [offer_id, version, reason, …].
    assert stored is not None
    assert all(isinstance(item, list) for item in stored["not_chosen"])


async def test_concurrent_decisions_are_each_logged_before_they_answer(
    harness: Harness,
) -> None:
    parties = [str(uuid.uuid4()) for _ in range(20)]

    decided = await asyncio.gather(*(app_banner(harness, party) for party in parties))

    for party, one in zip(parties, decided, strict=True):
        page = await harness.decisions.list_decisions(party, 10, "")
        assert [e.arbitration_id for e in page.entries] == [one.arbitration_id]


async def test_a_decision_connection_lost_is_replaced_without_failing_the_decision(
    postgres_cluster: PostgresCluster,
) -> None:
    # PostgreSQL only: there decisions hold connections of their own between calls.
    harness = await Harness.start(postgres_cluster.create_database())
    try:
        await app_banner(harness)
        async with harness.database.session() as session:
            # The database drops every other connection (a restart, a failover).
            await session.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

        again = await app_banner(harness)

        page = await harness.decisions.list_decisions(PARTY, 10, "")
        assert page.entries[0].arbitration_id == again.arbitration_id
    finally:
        await harness.close()


async def test_a_new_party_is_decided_on_no_facts_and_a_bad_id_is_refused(
    harness: Harness,
) -> None:
    decided = await app_banner(harness, str(uuid.uuid4()))
    assert [o.chosen.offer_id for o in decided.offers] == [PROMO]

    with pytest.raises(InvalidArgument) as caught:
        await harness.decide("not-a-uuid", "mobile_app")
    assert [v.field for v in caught.value.violations] == ["party_id"]


async def test_the_decision_log_is_pruned_after_its_retention(harness: Harness) -> None:
    old = await app_banner(harness)
    harness.now = T0 + dt.timedelta(days=31)
    recent = await app_banner(harness)

    deleted = await harness.retention.prune()

    page = await harness.decisions.list_decisions(PARTY, 10, "")
    assert [e.arbitration_id for e in page.entries] == [recent.arbitration_id]
    assert deleted >= 1
    with pytest.raises(NotFound):  # its decisions are gone with it
        await harness.decisions.record_response(response(old, ContactKind.CLICK))


async def test_withdrawn_decisions_and_old_contacts_are_pruned_after_the_retention(
    harness: Harness,
) -> None:
    await harness.deliver("e1", changed(PARTY, 1, sms_marketing(), risk(3), usd(6000)))
    await harness.deliver("e2", changed(PARTY, 2, usd(0)))
    assert await harness.count(schema.outbound_decision) == 1
    harness.now = T0 + dt.timedelta(days=200)

    await harness.retention.prune()

    assert await harness.count(schema.outbound_decision) == 0
    assert await harness.count(schema.contact_event) == 0
    assert await harness.count(schema.decision_log) == 0


async def test_a_response_is_recorded_once_and_teaches_the_model(harness: Harness) -> None:
    decided = await app_banner(harness)
    accepted = response(decided, ContactKind.ACCEPT)
    before = await harness.models.get()

    assert not await harness.decisions.record_response(accepted)
    assert await harness.decisions.record_response(accepted)  # the same response id again

    await harness.models.refresh()
    after = await harness.models.get()
    assert after.version != before.version
    assert after.estimate(PROMO, "all") > before.estimate(PROMO, "all")
    assert await harness.count(schema.propensity) == 1
    assert await harness.count(schema.contact_event) == 1


async def test_one_decision_teaches_the_model_once_per_kind_whatever_its_response_ids(
    harness: Harness,
) -> None:
    decided = await app_banner(harness)
    for _ in range(5):  # an app reporting ACCEPT again and again, under new response ids
        assert not await harness.decisions.record_response(response(decided, ContactKind.ACCEPT))
    assert not await harness.decisions.record_response(response(decided, ContactKind.CLICK))

    await harness.models.refresh()
    counts = (await harness.models.get()).counts[(PROMO, "all")]
    assert (counts.successes, counts.failures) == (1.5, 0.0)
    assert await harness.count(schema.contact_event) == 6


async def test_a_response_id_used_again_for_another_response_is_refused_and_changes_nothing(
    harness: Harness,
) -> None:
    decided = await app_banner(harness)
    accepted = response(decided, ContactKind.ACCEPT)
    assert not await harness.decisions.record_response(accepted)

    with pytest.raises(FailedPrecondition):
        await harness.decisions.record_response(
            dataclasses.replace(accepted, kind=ContactKind.DECLINE)
        )
    # The same response sent again later (a retry without a time is "now" again): a duplicate.
    retried = dataclasses.replace(accepted, at=accepted.at + dt.timedelta(minutes=1))

    assert await harness.decisions.record_response(retried)
    assert await harness.count(schema.contact_event) == 1


async def test_a_response_to_a_decision_of_another_party_or_offer_is_not_found(
    harness: Harness,
) -> None:
    decided = await app_banner(harness)
    right = response(decided, ContactKind.CLICK)

    for wrong in (
        response(decided, ContactKind.CLICK, party_id=OTHER),
        dataclasses.replace(right, offer_id="usd_fx_wealth"),
        dataclasses.replace(right, decision_id=str(uuid.uuid4())),
    ):
        with pytest.raises(NotFound):
            await harness.decisions.record_response(wrong)
    assert await harness.count(schema.contact_event) == 0


async def test_three_ignored_impressions_suppress_the_offer_for_the_period(
    harness: Harness,
) -> None:
    for hours in range(3):
        harness.now = T0 + dt.timedelta(hours=hours)
        decided = await app_banner(harness)
        assert [o.chosen.offer_id for o in decided.offers] == [PROMO]
        ignored = response(decided, ContactKind.IGNORE)
        await harness.decisions.record_response(dataclasses.replace(ignored, at=harness.now))

    harness.now = T0 + dt.timedelta(days=59)
    suppressed = await app_banner(harness)
    harness.now = T0 + dt.timedelta(days=61)
    back = await app_banner(harness)

    assert PROMO not in [o.chosen.offer_id for o in suppressed.offers]
    [why] = [n for n in suppressed.decision.not_chosen if n.offer_id == PROMO]
    assert why.reason is Reason.SUPPRESSED
    assert why.suppression is SuppressionRule.IGNORED
    assert [o.chosen.offer_id for o in back.offers] == [PROMO]
