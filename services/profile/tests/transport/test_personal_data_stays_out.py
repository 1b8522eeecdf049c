"""Known customers go through identity and into the profile (both services in-process on one
real nats-server), with the calls a bank makes around them: links, a search by ID number, a
rejected record, a merge and a split, profile reads, and an event the profile can never apply.
Then every JSON log line both services wrote, every header of every message on the identity
stream and the dead letters, and every payload are scanned for the customers' personal data.

Their accounts and consents come from core banking through IngestSourceEvents, and the profile
tells what changed in ProfileChanged: the source and profile streams are scanned too.

Expected (docs/events.md, "Personal data in events"): no log line and no header holds a name, a
birth date, an ID number, a phone or an e-mail; no payload holds an ID number, a phone or an
e-mail; names and birth dates appear only in GoldenRecordChanged (the profile shows the name and
reads the age in segment rules) and in the dead letter kept from one. ProfileChanged tells the
customers' ages in whole years, never their birth dates (as text or as a google.type.Date).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import pytest
from google.type import date_pb2
from nats.js import JetStreamContext

from zhike.identity.v1 import events_pb2 as identity_events
from zhike.identity.v1 import identity_service_pb2 as pb
from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import events_pb2 as profile_events
from zhike.profile.v1 import profile_service_pb2
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM
from zhike_runtime.testing.logs import captured_json_logs
from zhike_runtime.testing.services import eventually

from ..source_facts import account_opened, balance_changed, consent, source_event
from .identity_and_profile import Stack

IDENTITY_STREAM = "ZHIKE_IDENTITY"


@dataclasses.dataclass(frozen=True)
class Customer:
    name: str
    resident_id: str
    phone: str  # as the source system typed it
    email: str

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Every spelling of the identifiers a leak could take: as typed, normalised, E.164."""
        digits = "".join(c for c in self.phone if c.isdigit()).removeprefix("86")
        return (
            self.resident_id,
            self.resident_id.lower(),
            self.resident_id[:17],  # the body, shared with a mistyped check character
            self.phone,
            digits,
            f"+86{digits}",
            self.email,
            self.email.lower(),
        )

    @property
    def birth_dates(self) -> tuple[str, ...]:
        """The birth date the resident ID carries: as identity gives it (ISO), and compact."""
        compact = self.resident_id[6:14]
        return (f"{compact[:4]}-{compact[4:6]}-{compact[6:]}", compact)

    @property
    def birth_date_message(self) -> bytes:
        """The birth date as a google.type.Date would carry it in a payload."""
        compact = self.resident_id[6:14]
        year, month, day = int(compact[:4]), int(compact[4:6]), int(compact[6:])
        return date_pb2.Date(year=year, month=month, day=day).SerializeToString()


CUSTOMERS = (
    Customer("刘晓燕", "440306198505120028", "13671829305", "xiaoyan.liu@163.com"),
    Customer("欧阳建国", "11010519491231002X", "+86 139-1234-5670", "Jianguo.OuYang@qq.com"),
    Customer("张伟", "320102199003074528", "186 0101 2233", "zhang.wei90@126.com"),
)
NAMES = tuple(c.name for c in CUSTOMERS)
IDENTIFIERS = tuple(value for c in CUSTOMERS for value in c.identifiers)
BIRTH_DATES = tuple(value for c in CUSTOMERS for value in c.birth_dates)


def record(system: str, record_id: str, **values: Any) -> pb.LinkSourceRecordRequest:
    key = party_pb2.SourceRecordKey(source_system=system, source_record_id=record_id)
    return pb.LinkSourceRecordRequest(source_record=party_pb2.SourceRecord(key=key, **values))


async def link_customer(stack: Stack, index: int, customer: Customer) -> str:
    """A verified core-banking record, then the mobile app's record of the same person."""
    party_id = (
        await stack.identity.LinkSourceRecord(
            record(
                "core",
                f"C-{index}",
                full_name=customer.name,
                id_type=party_pb2.ID_TYPE_RESIDENT_ID,
                id_number=customer.resident_id,
                phone=customer.phone,
                email=customer.email,
                address="上海市浦东新区世纪大道100号",
            ),
            timeout=5,
        )
    ).party_id
    mobile = await stack.identity.LinkSourceRecord(
        record(
            "mobile",
            f"M-{index}",
            full_name=customer.name,
            phone=customer.phone,
            email=customer.email,
        ),
        timeout=5,
    )
    assert mobile.party_id == party_id
    return str(party_id)


async def profile_name(stack: Stack, party_id: str) -> str:
    try:
        response = await stack.profile.GetProfile(
            profile_service_pb2.GetProfileRequest(party_id=party_id), timeout=2
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return ""
        raise
    return str(response.profile.display_name)


async def bank_journeys(stack: Stack) -> None:
    parties = [await link_customer(stack, i, c) for i, c in enumerate(CUSTOMERS)]
    for party_id, customer in zip(parties, CUSTOMERS, strict=True):

        async def named() -> bool:
            return await profile_name(stack, party_id) == customer.name  # noqa: B023

        await eventually(named, timeout=15)

    # Their accounts, from core banking: what ProfileChanged then tells offers and notifications.
    for index, party_id in enumerate(parties):
        await stack.profile.IngestSourceEvents(
            profile_service_pb2.IngestSourceEventsRequest(
                events=[
                    source_event("core", f"C-{index}", f"o-{index}", 1, **account_opened("SAV")),
                    source_event(
                        "core", f"C-{index}", f"b-{index}", 2, **balance_changed("SAV", "CNY", 8800)
                    ),
                    source_event("core", f"C-{index}", f"c-{index}", 1, **consent(True)),
                ]
            ),
            timeout=5,
        )

        async def told() -> bool:
            found = await stack.profile.GetProfile(
                profile_service_pb2.GetProfileRequest(party_id=party_id),  # noqa: B023
                timeout=2,
            )
            return len(found.profile.consents) == 1 and len(found.profile.holdings) == 1

        await eventually(told, timeout=15)

    # Searches by personal data, a masked read, and records refused as invalid.
    first = CUSTOMERS[0]
    found = await stack.identity.FindParties(
        pb.FindPartiesRequest(
            id_number=pb.IdNumberQuery(
                id_type=party_pb2.ID_TYPE_RESIDENT_ID, id_number=first.resident_id
            )
        ),
        timeout=5,
    )
    assert list(found.party_ids) == [parties[0]]
    await stack.identity.FindParties(pb.FindPartiesRequest(phone=CUSTOMERS[1].phone), timeout=5)
    await stack.identity.GetParty(pb.GetPartyRequest(party_id=parties[1]), timeout=5)
    # A teller pastes the ID number where the party id goes, in both services.
    for pasted in (
        stack.identity.GetParty(pb.GetPartyRequest(party_id=first.resident_id), timeout=5),
        stack.profile.GetProfile(
            profile_service_pb2.GetProfileRequest(party_id=first.resident_id), timeout=5
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pasted
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for bad in (
        record(
            "core",
            "BAD-1",
            full_name=first.name,
            id_type=party_pb2.ID_TYPE_RESIDENT_ID,
            id_number=first.resident_id[:-1] + "9",
        ),
        record(
            "core",
            "BAD-2",
            full_name=first.name,
            phone=first.phone + "(ext)",
            birth_date=date_pb2.Date(year=2200, month=1, day=1),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.identity.LinkSourceRecord(bad, timeout=5)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    # A steward's merge refused (two valid resident IDs), then a call-centre note of the third
    # customer (too little to link on its own) merged into that customer and split out again.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.identity.MergeParties(pb.MergePartiesRequest(party_ids=parties[:2]), timeout=5)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    third = CUSTOMERS[2]
    note = await stack.identity.LinkSourceRecord(
        record("call_centre", "CC-2", full_name=third.name, phone=third.phone), timeout=5
    )
    assert note.party_id != parties[2]
    merged = await stack.identity.MergeParties(
        pb.MergePartiesRequest(party_ids=[parties[2], note.party_id]), timeout=5
    )
    await stack.identity.SplitParty(
        pb.SplitPartyRequest(
            party_id=merged.surviving_party_id,
            source_records=[
                party_pb2.SourceRecordKey(source_system="call_centre", source_record_id="CC-2")
            ],
            reason="a different customer",
        ),
        timeout=5,
    )

    # An event the profile can never apply (no party id), carrying a customer's name.
    poison = identity_events.GoldenRecordChanged(
        golden_record=party_pb2.GoldenRecord(full_name=party_pb2.GoldenValue(value=first.name))
    )
    js = stack.identity_service.bus.js
    await js.publish(
        "zhike.identity.v1.golden_record_changed",
        poison.SerializeToString(),
        headers={
            h.MSG_ID: "poison-1",
            h.EVENT_ID: "poison-1",
            h.EVENT_TYPE: poison.DESCRIPTOR.full_name,
        },
    )

    # Parked, and then logged: the consumer counts and logs it once the letter is on its stream.
    async def dead_lettered() -> bool:
        parked = (await js.stream_info(DLQ_STREAM)).state.messages == 1
        return parked and sum(c.dead_lettered for c in stack.profile_service.consumers) == 1

    await eventually(dead_lettered, timeout=15)


@dataclasses.dataclass(frozen=True)
class Seen:
    stream: str
    headers: dict[str, str]
    payload: bytes


async def every_message(js: JetStreamContext, stream: str) -> list[Seen]:
    last = (await js.stream_info(stream)).state.last_seq
    seen = []
    for sequence in range(1, last + 1):
        message = await js.get_msg(stream, sequence)
        seen.append(Seen(stream, dict(message.headers or {}), message.data or b""))
    return seen


def hits(text: str, values: tuple[str, ...]) -> list[str]:
    return [value for value in values if value in text]


async def test_no_log_line_header_or_payload_carries_the_customers_identifiers(
    stack: Stack,
) -> None:
    with captured_json_logs() as lines:
        await bank_journeys(stack)
    js = stack.identity_service.bus.js
    messages = [
        message
        for stream in (IDENTITY_STREAM, "ZHIKE_SOURCE", "ZHIKE_PROFILE", DLQ_STREAM)
        for message in await every_message(js, stream)
    ]

    # The scan saw real traffic: both services logged calls and applied events; every kind of
    # identity event and the dead letter are on the streams.
    assert any('"rpc"' in line and "LinkSourceRecord" in line for line in lines)
    assert any("event applied" in line for line in lines)
    assert any("event dead-lettered" in line for line in lines)
    assert {m.headers.get(h.EVENT_TYPE, "").rsplit(".", 1)[-1] for m in messages} >= {
        "PartyCreated",
        "SourceRecordLinked",
        "PartiesMerged",
        "PartySplit",
        "GoldenRecordChanged",
        "SourceEvent",
        "ProfileChanged",
    }
    assert sum(m.stream == DLQ_STREAM for m in messages) == 1

    everything = NAMES + BIRTH_DATES + IDENTIFIERS
    assert [(hits(line, everything), line) for line in lines if hits(line, everything)] == []
    for message in messages:
        header_text = "\n".join(f"{k}: {v}" for k, v in message.headers.items())
        assert hits(header_text, everything) == [], message
        payload = message.payload.decode("utf-8", errors="replace")
        assert hits(payload, IDENTIFIERS) == [], message
        if hits(payload, NAMES + BIRTH_DATES):
            assert message.headers[h.EVENT_TYPE] == "zhike.identity.v1.GoldenRecordChanged"
        assert not [c for c in CUSTOMERS if c.birth_date_message in message.payload], message

    # The profile told the customers' ages (offers' eligibility reads them): the scan above saw
    # ProfileChanged carry them without a birth date.
    ages = [
        fact.age_changed
        for message in messages
        if message.headers.get(h.EVENT_TYPE) == "zhike.profile.v1.ProfileChanged"
        for fact in profile_events.ProfileChanged.FromString(message.payload).facts
        if fact.HasField("age_changed")
    ]
    assert len([age for age in ages if age.HasField("after_years")]) >= len(CUSTOMERS)


async def test_golden_record_changed_carries_the_name_and_birth_date_and_nothing_else(
    stack: Stack,
) -> None:
    customer = CUSTOMERS[0]
    party_id = await link_customer(stack, 0, customer)

    async def named() -> bool:
        return await profile_name(stack, party_id) == customer.name

    await eventually(named, timeout=15)  # the profile applied the event: it is on the stream
    js = stack.identity_service.bus.js
    changes = [
        identity_events.GoldenRecordChanged.FromString(m.payload)
        for m in await every_message(js, IDENTITY_STREAM)
        if m.headers[h.EVENT_TYPE] == "zhike.identity.v1.GoldenRecordChanged"
    ]
    assert changes
    for changed in changes:
        golden = changed.golden_record
        assert golden.full_name.value == customer.name
        assert golden.full_name.source.source_system == "core"
        # The birth date from the resident ID: the profile's segment rules read the age.
        assert golden.birth_date.value == customer.birth_dates[0]
        # No sex, address, ID number, phones or e-mails, not even masked.
        assert golden == party_pb2.GoldenRecord(
            full_name=golden.full_name, birth_date=golden.birth_date
        )
