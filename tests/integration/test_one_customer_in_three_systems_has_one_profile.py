"""One customer, three systems, three spellings of his name: core deposits has 刘建军 with his
resident ID, the card centre 劉建軍 (typed in traditional characters), the loan system
"LIU Jianjun". Each system links its record at identity and sends its facts to the profile
(some before identity has linked the record). Every channel then finds one profile, by the
party id or by any of the three records, with all three holdings. Services as processes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import profile_service_pb2 as profile_pb
from zhike.profile.v1 import profile_service_pb2_grpc as profile_grpc
from zhike.source.v1 import source_event_pb2 as pb
from zhike_runtime.testing.services import answer_or_none, authorised_channel, eventually

from .conftest import ServiceProcess, serving
from .journeys import link
from .source_systems import day, fact, ingest

BIRTH = dt.date(1980, 5, 3)
RECORDS = {
    "core_deposits": party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(source_system="core_deposits", source_record_id="D-77"),
        full_name="刘建军",
        id_type=party_pb2.ID_TYPE_RESIDENT_ID,
        id_number="110105198005030014",
        phone="13812345678",
    ),
    "cards": party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(source_system="cards", source_record_id="K-4411"),
        full_name="劉建軍",
        phone="138 1234 5678",
    ),
    "loans": party_pb2.SourceRecord(
        key=party_pb2.SourceRecordKey(source_system="loans", source_record_id="L-9"),
        full_name="LIU Jianjun",
        phone="+86 138-1234-5678",
    ),
}
for record in RECORDS.values():
    record.birth_date.year, record.birth_date.month, record.birth_date.day = (
        BIRTH.year,
        BIRTH.month,
        BIRTH.day,
    )


def facts() -> dict[str, list[pb.SourceEvent]]:
    opened = day(dt.date(2020, 1, 6))
    return {
        "core_deposits": [
            fact(
                "core_deposits",
                "D-77",
                "d-1",
                1,
                account_opened=pb.AccountOpened(
                    account_id="SAV-77",
                    product_line=pb.PRODUCT_LINE_SAVINGS,
                    product_code="SAV-CNY",
                    currency="CNY",
                    branch_code="0101",
                    open_date=opened,
                ),
            ),
            fact(
                "core_deposits",
                "D-77",
                "d-2",
                2,
                balance_changed=pb.BalanceChanged(
                    account_id="SAV-77", currency="CNY", balance_minor_units=61_200_000
                ),
            ),
        ],
        "cards": [
            fact(
                "cards",
                "K-4411",
                "k-1",
                1,
                card_issued=pb.CardIssued(
                    account_id="CA-4411",
                    card_type=pb.CARD_TYPE_CREDIT,
                    card_tier=pb.CARD_TIER_PLATINUM,
                    product_code="CC-PLAT",
                    currency="CNY",
                    branch_code="0808",
                    issue_date=opened,
                ),
            )
        ],
        "loans": [
            fact(
                "loans",
                "L-9",
                "l-1",
                1,
                loan_drawn=pb.LoanDrawn(
                    account_id="MTG-9",
                    loan_type=pb.LOAN_TYPE_MORTGAGE,
                    product_code="MTG-30Y",
                    currency="CNY",
                    amount_minor_units=150_000_000,
                    outstanding_minor_units=150_000_000,
                    branch_code="0303",
                    draw_date=opened,
                ),
            )
        ],
    }


async def profile_of(channel: grpc.aio.Channel, **by: Any) -> Any:
    stub = profile_grpc.ProfileServiceStub(channel)
    response = await answer_or_none(stub.GetProfile(profile_pb.GetProfileRequest(**by), timeout=5))
    return None if response is None else response.profile


async def test_three_spellings_in_three_systems_are_one_profile_with_every_holding(
    services: dict[str, ServiceProcess],
) -> None:
    identity, profile = services["identity"], services["profile"]
    await serving(identity, profile)
    sent = facts()
    async with (
        authorised_channel(identity.address) as identity_channel,
        authorised_channel(profile.address) as profile_channel,
    ):
        # The card centre's facts arrive before its record is linked at identity.
        await ingest(profile_channel, *sent["cards"])
        party_ids = set()
        for system in ("core_deposits", "cards", "loans"):
            party_ids.add((await link(identity_channel, RECORDS[system])).party_id)
            await ingest(profile_channel, *sent[system])
        assert len(party_ids) == 1
        (party_id,) = party_ids

        async def all_holdings_in_one_profile() -> bool:
            found = await profile_of(profile_channel, party_id=party_id)
            return found is not None and len(found.holdings) == 3

        await eventually(all_holdings_in_one_profile, timeout=15)
        found = await profile_of(profile_channel, party_id=party_id)
        assert {h.account_id for h in found.holdings} == {"SAV-77", "CA-4411", "MTG-9"}
        assert {(r.source_system, r.source_record_id) for r in found.source_records} == {
            (r.key.source_system, r.key.source_record_id) for r in RECORDS.values()
        }
        assert [
            (b.currency_code, b.assets_minor_units, b.liabilities_minor_units)
            for b in found.balances
        ] == [("CNY", 61_200_000, 150_000_000)]
        for record in RECORDS.values():  # every channel, whichever record it knows
            by_record = await profile_of(profile_channel, source_record=record.key)
            assert by_record.party_id == party_id
            assert len(by_record.holdings) == 3
