"""What a ProfileChanged tells when a fact the consumers hold is taken away or replaced rather
than added: a consent whose record left the party, a risk assessment renewed at the same level,
a holding reissued under another product. Applied as the consumers apply them, on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

from zhike.profile.v1 import events_pb2
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.domain.facts import SourceKey

from ..profile_harness import Harness
from ..source_facts import T0, card_issued, consent, risk_assessed, source_event

T1 = T0 + dt.timedelta(minutes=1)
CRM_1 = SourceKey("crm", "1")
APP_2 = SourceKey("app", "2")


def party() -> str:
    return str(uuid.uuid4())


def facts_told(
    changes: list[events_pb2.ProfileChanged], party_id: str, kind: str
) -> list[events_pb2.ProfileFact]:
    return [
        f
        for c in changes
        if c.party_id == party_id
        for f in c.facts
        if f.WhichOneof("fact") == kind
    ]


def holdings_told(
    changes: list[events_pb2.ProfileChanged], party_id: str
) -> list[tuple[str, str, str, str]]:
    """(fact, account, currency, product code) of each holding opened or closed, in order."""
    found: list[tuple[str, str, str, str]] = []
    for fact in (f for c in changes if c.party_id == party_id for f in c.facts):
        kind = fact.WhichOneof("fact")
        if kind == "holding_opened":
            h = fact.holding_opened
            found.append((kind, h.account_id, h.currency_code, h.product_code))
        elif kind == "holding_closed":
            c = fact.holding_closed
            found.append((kind, c.account_id, c.currency_code, c.product_code))
    return found


async def test_a_consent_whose_record_moves_to_another_party_is_told_as_not_given(
    harness: Harness,
) -> None:
    """The record held the party's only SMS marketing consent: without it the party holds no
    decision for that channel and purpose, which consumers must read as no consent."""
    p, q = party(), party()
    await harness.linked("l1", CRM_1, p, 1)
    await harness.linked("l2", APP_2, p, 1)
    await harness.source(source_event("app", "2", "c1", 1, **consent(True)))
    told_before = len(await harness.changes())

    await harness.linked("m1", APP_2, q, 2, T1)

    (told,) = facts_told((await harness.changes())[told_before:], p, "consent_changed")
    fact = told.consent_changed
    assert (fact.channel, fact.purpose, fact.given, fact.HasField("evidence")) == (
        source_pb.CONTACT_CHANNEL_SMS,
        source_pb.CONTACT_PURPOSE_MARKETING,
        False,
        False,
    )


async def test_a_risk_assessment_renewed_at_the_same_level_is_told_with_its_new_expiry(
    harness: Harness,
) -> None:
    """Offers sells investments on the expiry it was told: kept at the old one, it would block
    them from 1 December 2026 although the customer was assessed again."""
    party_id = party()
    await harness.linked("l1", CRM_1, party_id, 1)
    first = risk_assessed(3, dt.date(2025, 12, 1), dt.date(2026, 12, 1))
    await harness.source(source_event("crm", "1", "r1", 1, **first))
    told_before = len(await harness.changes())

    renewed = risk_assessed(3, dt.date(2026, 11, 2), dt.date(2027, 11, 2))
    await harness.source(source_event("crm", "1", "r2", 2, **renewed))

    (told,) = facts_told((await harness.changes())[told_before:], party_id, "risk_level_changed")
    expiry = told.risk_level_changed.expire_date
    assert (expiry.year, expiry.month, expiry.day) == (2027, 11, 2)


async def test_a_card_reissued_on_its_account_under_another_product_is_told_closed_then_opened(
    harness: Harness,
) -> None:
    """Offers keeps a holding per account and currency, the last telling winning: the old
    product closed, then the new one opened, leaves it holding the new one."""
    party_id = party()
    await harness.linked("l1", CRM_1, party_id, 1)
    await harness.source(source_event("crm", "1", "i1", 1, **card_issued("CC-1")))
    told_before = len(await harness.changes())

    platinum = card_issued("CC-1", source_pb.CARD_TIER_PLATINUM, product_code="CC-PLAT")
    await harness.source(source_event("crm", "1", "i2", 2, **platinum))

    told = (await harness.changes())[told_before:]
    assert holdings_told(told, party_id) == [
        ("holding_closed", "CC-1", "CNY", "CC-GOLD"),
        ("holding_opened", "CC-1", "CNY", "CC-PLAT"),
    ]
