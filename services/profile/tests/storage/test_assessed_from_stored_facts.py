"""Assessments of parties whose facts came through storage as the source systems send them: a
card account holding two currencies, an account closed without a last balance, an account an
earlier release stored as closed on 0001-01-01. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

from zhike.source.v1 import source_event_pb2 as pb
from zhike_profile.domain.assessment import Assessment
from zhike_profile.domain.facts import ProductLine, SourceKey
from zhike_profile.domain.source_events import (
    Change,
    CloseAccount,
    OpenAccount,
    SetBalance,
    SourceEvent,
)

from ..profile_harness import Harness
from ..source_facts import (
    T0,
    account_closed,
    account_opened,
    balance_changed,
    card_issued,
    source_event,
)

CARDS = SourceKey("cards", "K-1")
DEPOSITS = SourceKey("core", "D-1")


async def linked_party(harness: Harness, key: SourceKey) -> str:
    party_id = str(uuid.uuid4())
    await harness.linked(f"link-{party_id}", key, party_id, 1)
    return party_id


async def assessment(harness: Harness, party_id: str) -> Assessment:
    found = (await harness.profile(party_id)).assessment
    assert found is not None
    return found


async def test_a_card_with_balances_in_two_currencies_is_charged_one_annual_fee(
    harness: Harness,
) -> None:
    """A holding is one per account and currency; the fee is one per card."""
    party_id = await linked_party(harness, CARDS)
    await harness.source(
        source_event("cards", "K-1", "i1", 1, **card_issued("CC-1", pb.CARD_TIER_DIAMOND))
    )
    await harness.source(
        source_event("cards", "K-1", "b1", 2, **balance_changed("CC-1", "USD", 1000))
    )

    value = (await assessment(harness, party_id)).value
    (card,) = [c for c in value.contributions if c.product_line is ProductLine.CREDIT_CARD]
    assert card.annual_revenue_cny_minor == 3_600_00  # the diamond card's fee, CNY 3,600.00


async def test_a_closed_account_stops_counting_toward_the_tier_from_its_close_date(
    harness: Harness,
) -> None:
    """Closed without a last balance of zero: its last balance must not be carried forward."""
    party_id = await linked_party(harness, DEPOSITS)
    opened = T0 - dt.timedelta(days=100)
    deposit = account_opened("TD-1", line=pb.PRODUCT_LINE_TIME_DEPOSIT, product_code="TD-1Y")
    await harness.source(source_event("core", "D-1", "o1", 1, opened, **deposit))
    million = balance_changed("TD-1", "CNY", 1_000_000_00)
    await harness.source(source_event("core", "D-1", "b1", 2, opened, **million))
    assert (await assessment(harness, party_id)).tier.name == "gold"
    await harness.source(source_event("core", "D-1", "c1", 3, T0, **account_closed("TD-1")))

    harness.now = T0 + dt.timedelta(days=180)

    later = await assessment(harness, party_id)
    assert later.tier.name == "standard"


async def stored_by_an_earlier_release(
    harness: Harness, key: SourceKey, event_id: str, sequence: int, change: Change
) -> None:
    """A fact as an earlier release stored it: its codec took dates this one refuses."""
    event = SourceEvent(key, event_id, T0, sequence, (change,))
    await harness.deliver(
        f"{key.source_system}:{event_id}",
        lambda unit: harness.updates.apply_source_event(unit, event),
    )


async def test_a_record_with_an_account_stored_as_closed_on_year_one_still_links(
    harness: Harness,
) -> None:
    """0001-01-01, a "no date" default (.NET's DateTime.MinValue), stored before the record was
    linked: assessing the party once the link arrives must not fail on it."""
    opened = OpenAccount("SAV-1", ProductLine.SAVINGS, "SAV", "CNY", "0101", dt.date(2024, 3, 1))
    await stored_by_an_earlier_release(harness, DEPOSITS, "o1", 1, opened)
    await stored_by_an_earlier_release(
        harness, DEPOSITS, "b1", 2, SetBalance("SAV-1", "CNY", 500_000_00)
    )
    await stored_by_an_earlier_release(
        harness, DEPOSITS, "c1", 3, CloseAccount("SAV-1", dt.date.min)
    )

    party_id = await linked_party(harness, DEPOSITS)

    facts = (await harness.profile(party_id)).facts
    assert facts is not None
    assert [(h.account_id, h.closed_on) for h in facts.holdings] == [("SAV-1", dt.date.min)]
