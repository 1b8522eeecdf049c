"""Bad input to every profile RPC is INVALID_ARGUMENT naming the field, and changes nothing; an
event id used for another event is FAILED_PRECONDITION naming it; a malformed event on the source
stream is dead-lettered with its reason, and nothing of it is applied (the profile in-process on
a real nats-server, SQLite)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import sqlalchemy as sa
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2
from google.type.timeofday_pb2 import TimeOfDay

from zhike.identity.v1 import party_pb2
from zhike.profile.v1 import profile_service_pb2 as pb
from zhike.profile.v1 import profile_service_pb2_grpc
from zhike.source.v1 import source_event_pb2 as source_pb
from zhike_profile.app import DEFINITION
from zhike_profile.settings import ProfileSettings
from zhike_profile.storage import schema
from zhike_runtime.app import RunningService
from zhike_runtime.events import headers as h
from zhike_runtime.events.bus import DLQ_STREAM
from zhike_runtime.grpc_errors import rich_status
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    authorised_channel,
    eventually,
    running_service,
    wait_serving,
)

from ..source_facts import (
    account_closed,
    account_opened,
    adapter_headers,
    balance_changed,
    consent,
    publish,
    risk_assessed,
    salary_paid,
    source_event,
    timestamp,
)
from ..streams import declare_notifications_stream

PARTY = str(uuid.uuid4())


@pytest.fixture
async def profile(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningService[ProfileSettings]]:
    # Identity's stream, as identity declares it: the profile's consumers wait for it.
    connection = await nats.connect(nats_server.url)
    await connection.jetstream().add_stream(name="ZHIKE_IDENTITY", subjects=["zhike.identity.v1.>"])
    await declare_notifications_stream(connection)
    await connection.close()
    async with running_service(
        DEFINITION,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'profile.db'}",
        nats_url=nats_server.url,
    ) as service:
        await wait_serving(service.grpc_port)
        yield service


@pytest.fixture
async def api(profile: RunningService[ProfileSettings]) -> AsyncIterator[Any]:
    async with authorised_channel(f"127.0.0.1:{profile.grpc_port}") as channel:
        yield profile_service_pb2_grpc.ProfileServiceStub(channel)


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rich_status(error)
    assert status is not None, "no status details"
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [v.field for v in bad_request.field_violations]


def precondition_subjects(error: grpc.aio.AioRpcError) -> list[str]:
    status = rich_status(error)
    assert status is not None, "no status details"
    failure = error_details_pb2.PreconditionFailure()
    assert status.details[0].Unpack(failure)
    return [v.subject for v in failure.violations]


def good(event_id: str = "e-1", **overrides: Any) -> source_pb.SourceEvent:
    event = source_event("core", "C-1", event_id, 1, **account_opened("ACC-1", "USD"))
    for name, value in overrides.items():
        if name == "source_record":
            event.source_record.CopyFrom(value)
        else:
            setattr(event, name, value)
    return event


def with_fact(**fact: Any) -> source_pb.SourceEvent:
    return source_event("core", "C-1", "e-9", 3, **fact)


def pan_account() -> source_pb.SourceEvent:
    return with_fact(**balance_changed("4111111111111111", "USD", 100))


def no_evidence() -> source_pb.SourceEvent:
    event = with_fact(**consent(True))
    event.consent_given.ClearField("evidence")
    return event


def same_id_twice() -> list[source_pb.SourceEvent]:
    second = with_fact(**balance_changed("ACC-1", "USD", 5))
    second.event_id = "same"
    return [good("same"), second]


def quiet_hours(start: TimeOfDay, end: TimeOfDay) -> dict[str, Any]:
    return {
        "preference_changed": source_pb.PreferenceChanged(
            quiet_hours_start=start, quiet_hours_end=end
        )
    }


def far_future() -> source_pb.SourceEvent:
    event = good()
    event.event_time.CopyFrom(timestamp(dt.datetime.now(dt.UTC) + dt.timedelta(days=3)))
    return event


INGEST_CASES: list[tuple[str, list[source_pb.SourceEvent], list[str]]] = [
    ("empty batch", [], ["events"]),
    ("too many", [good(f"e-{n}") for n in range(501)], ["events"]),
    (
        "lower-case currency in the fourth event",
        [good("a"), good("b"), good("c"), with_fact(**balance_changed("ACC-1", "usd", 1))],
        ["events[3].balance_changed.currency"],
    ),
    (
        "no source record",
        [source_pb.SourceEvent(event_id="x", sequence=1)],
        [
            "events[0].source_record",
            "events[0].event_time",
            "events[0].fact",
        ],
    ),
    (
        "a subject wildcard as source system",
        [
            good(
                source_record=party_pb2.SourceRecordKey(
                    source_system="core.>", source_record_id="1"
                )
            )
        ],
        ["events[0].source_record.source_system"],
    ),
    ("sequence 0", [good(sequence=0)], ["events[0].sequence"]),
    ("event id with a space", [good("e 1")], ["events[0].event_id"]),
    ("event id too long for the inbox", [good("e" * 60)], ["events[0].event_id"]),
    ("an event from the future", [far_future()], ["events[0].event_time"]),
    (
        "unknown product line",
        [with_fact(**account_opened("ACC-1", "USD", line=99))],
        ["events[0].account_opened.product_line"],
    ),
    ("a card number as account id", [pan_account()], ["events[0].balance_changed.account_id"]),
    *(
        (
            f"a card number written {how} as account id",
            [with_fact(**balance_changed(written, "USD", 100))],
            ["events[0].balance_changed.account_id"],
        )
        for how, written in (
            ("with dashes", "4111-1111-1111-1111"),
            ("in full-width digits", "４１１１１１１１１１１１１１１１"),
            ("with no-break spaces", "4111\u00a01111\u00a01111\u00a01111"),
            ("with dots", "4111.1111.1111.1111"),
            ("with underscores", "4111_1111_1111_1111"),
            ("with hyphens (U+2010)", "4111\u20101111\u20101111\u20101111"),
            ("with en dashes", "4111\u20131111\u20131111\u20131111"),
            ("with minus signs", "4111\u22121111\u22121111\u22121111"),
            ("with commas", "4111,1111,1111,1111"),
            ("with middle dots", "4111\u00b71111\u00b71111\u00b71111"),
            ("with asterisks", "4111*1111*1111*1111"),
            ("with ideographic commas", "4111\u30011111\u30011111\u30011111"),
            ("in Arabic-Indic digits", "\u0664" + "\u0661" * 15),
            ("after a prefix", "CARD-4111 1111 1111 1111"),
        )
    ),
    # Summed into BIGINT columns later: an event past the cap was taken, then lost.
    (
        "a transaction beyond the amount cap",
        [with_fact(**salary_paid("ACC-1", amount=10**15 + 1))],
        ["events[0].transaction_posted.amount_minor_units"],
    ),
    (
        "a balance beyond the amount cap",
        [with_fact(**balance_changed("ACC-1", "USD", -(10**15) - 1))],
        ["events[0].balance_changed.balance_minor_units"],
    ),
    (
        "a balance change of int64's minimum",
        [with_fact(**balance_changed("ACC-1", "USD", 100, change=-(2**63)))],
        ["events[0].balance_changed.change_minor_units"],
    ),
    (
        "a balance change beyond the amount cap",
        [with_fact(**balance_changed("ACC-1", "USD", 100, change=10**15 + 1))],
        ["events[0].balance_changed.change_minor_units"],
    ),
    (
        "quiet hours starting at -5 nanoseconds",
        [with_fact(**quiet_hours(TimeOfDay(hours=22, nanos=-5), TimeOfDay(hours=7)))],
        ["events[0].preference_changed.quiet_hours_start.nanos"],
    ),
    (
        "quiet hours ending at two billion nanoseconds",
        [with_fact(**quiet_hours(TimeOfDay(hours=22), TimeOfDay(hours=7, nanos=2_000_000_000)))],
        ["events[0].preference_changed.quiet_hours_end.nanos"],
    ),
    # The newest capture wins: one dated centuries ahead would outrank a later opt-out.
    (
        "a consent captured centuries ahead",
        [with_fact(**consent(True, at=dt.datetime(2205, 1, 1, tzinfo=dt.UTC)))],
        ["events[0].consent_given.evidence.capture_time"],
    ),
    (
        "a time zone that is a folder of the zone database",
        [with_fact(preference_changed=source_pb.PreferenceChanged(time_zone="Asia"))],
        ["events[0].preference_changed.time_zone"],
    ),
    ("consent without evidence", [no_evidence()], ["events[0].consent_given.evidence"]),
    (
        "risk expiring before it was assessed",
        [with_fact(**risk_assessed(3, dt.date(2026, 5, 1), dt.date(2026, 4, 1)))],
        ["events[0].risk_assessment_completed.expire_date"],
    ),
    # 0001-01-01, a "no date" default (.NET's DateTime.MinValue): taken, it failed every
    # assessment of the party, and every later link of the record was dead-lettered.
    (
        "an account closed on 0001-01-01",
        [with_fact(**account_closed("ACC-1", dt.date(1, 1, 1)))],
        ["events[0].account_closed.close_date"],
    ),
    # The events' day is 2 November 2026 in Shanghai: the account counted as open, for the
    # tier's average assets, until the close date.
    (
        "an account closed 400 days after the event",
        [with_fact(**account_closed("ACC-1", dt.date(2027, 12, 7)))],
        ["events[0].account_closed.close_date"],
    ),
    # 2062 for 2026: the newest assessment, it hid a valid one of another record.
    (
        "risk assessed decades after the event",
        [with_fact(**risk_assessed(3, dt.date(2062, 11, 1), dt.date(2063, 11, 1)))],
        ["events[0].risk_assessment_completed.assess_date"],
    ),
    ("one event id, two events", same_id_twice(), ["events[1].event_id"]),
]


@pytest.mark.parametrize(
    ("events", "fields"), [(e, f) for _, e, f in INGEST_CASES], ids=[c[0] for c in INGEST_CASES]
)
async def test_bad_source_events_are_refused_naming_the_field_and_nothing_is_published(
    profile: RunningService[ProfileSettings],
    api: Any,
    events: list[source_pb.SourceEvent],
    fields: list[str],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.IngestSourceEvents(pb.IngestSourceEventsRequest(events=events), timeout=10)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == fields
    stored = await profile.bus.js.stream_info("ZHIKE_SOURCE")
    assert stored.state.messages == 0


READ_CASES: list[tuple[str, str, Any, list[str]]] = [
    ("GetProfile", "no party", pb.GetProfileRequest(), ["party_id"]),
    ("GetProfile", "not a uuid", pb.GetProfileRequest(party_id="' OR 1=1 --"), ["party_id"]),
    (
        "GetProfile",
        "both party and record",
        pb.GetProfileRequest(
            party_id=PARTY,
            source_record=party_pb2.SourceRecordKey(source_system="core", source_record_id="1"),
        ),
        ["source_record"],
    ),
    (
        "GetProfile",
        "record without id",
        pb.GetProfileRequest(source_record=party_pb2.SourceRecordKey(source_system="core")),
        ["source_record.source_record_id"],
    ),
    (
        "GetProfile",
        "unknown mask path",
        pb.GetProfileRequest(party_id=PARTY, read_mask=FieldMask(paths=["tier", "salary", "*"])),
        ["read_mask.paths[1]", "read_mask.paths[2]"],
    ),
    ("ListHoldings", "not a uuid", pb.ListHoldingsRequest(party_id="a.b.>"), ["party_id"]),
    (
        "ListInteractions",
        "negative page size and a forged token",
        pb.ListInteractionsRequest(party_id=PARTY, page_size=-1, page_token="forged"),
        ["page_size", "page_token"],
    ),
    ("SearchProfiles", "no criteria", pb.SearchProfilesRequest(), ["tier"]),
    (
        "SearchProfiles",
        "names that are not names",
        pb.SearchProfilesRequest(tier="Gold!", segment="a b", value_band="x" * 40),
        ["tier", "segment", "value_band"],
    ),
    (
        "SearchProfiles",
        "a range upside down",
        pb.SearchProfilesRequest(min_total_assets_minor_units=10, max_total_assets_minor_units=5),
        ["max_total_assets_minor_units"],
    ),
    (
        "SearchProfiles",
        "a negative bound",
        pb.SearchProfilesRequest(min_total_assets_minor_units=-1),
        ["min_total_assets_minor_units"],
    ),
]


@pytest.mark.parametrize(
    ("method", "request_message", "fields"),
    [(m, r, f) for m, _, r, f in READ_CASES],
    ids=[f"{m}: {what}" for m, what, _, _ in READ_CASES],
)
async def test_bad_reads_are_refused_naming_the_field(
    api: Any, method: str, request_message: Any, fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(api, method)(request_message, timeout=5)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == fields


async def dead_letters(profile: RunningService[ProfileSettings]) -> list[Any]:
    js = profile.bus.js
    try:
        count = (await js.stream_info(DLQ_STREAM)).state.messages
    except Exception:  # noqa: BLE001 - not declared yet: none
        return []
    return [await js.get_msg(DLQ_STREAM, seq=seq) for seq in range(1, count + 1)]


async def test_malformed_source_events_are_dead_lettered_with_their_reason_and_not_applied(
    profile: RunningService[ProfileSettings],
) -> None:
    js = profile.bus.js
    bad_currency = source_event("core", "C-1", "bad-1", 2, **balance_changed("ACC-1", "usd", 1))
    await publish(js, bad_currency)
    await js.publish(  # not a SourceEvent at all
        "zhike.source.v1.core",
        b"\x0a\xff",
        headers={h.MSG_ID: "core:bad-2", h.EVENT_TYPE: "zhike.source.v1.SourceEvent"},
    )
    on_another_subject = source_event("cards", "C-1", "bad-3", 1, **account_opened("A", "CNY"))
    await js.publish(
        "zhike.source.v1.core",
        on_another_subject.SerializeToString(),
        headers=adapter_headers(on_another_subject) | {h.MSG_ID: "cards:bad-3"},
    )
    wrong_id = source_event("core", "C-1", "bad-4", 1, **account_opened("A", "CNY"))
    await js.publish(
        "zhike.source.v1.core",
        wrong_id.SerializeToString(),
        headers=adapter_headers(wrong_id) | {h.MSG_ID: "some-other-id"},
    )
    await js.publish("zhike.source.v1.core", b"", headers={h.MSG_ID: "core:bad-5"})  # no type
    # A good one behind them still applies.
    await publish(js, source_event("core", "C-1", "good-1", 1, **account_opened("ACC-1", "USD")))

    async def accounts() -> list[str]:
        async with profile.database.session() as session:
            return list(await session.scalars(sa.select(schema.account.c.account_id)))

    # The good one may commit after the letters are parked: a failed batch goes again one
    # event at a time, in stream order.
    async def all_handled() -> bool:
        return len(await dead_letters(profile)) == 5 and bool(await accounts())

    await eventually(all_handled, timeout=15)
    reasons = {
        letter.headers[h.EVENT_ID]: letter.headers[h.LAST_ERROR]
        for letter in await dead_letters(profile)
    }
    assert "balance_changed.currency" in reasons["core:bad-1"]
    assert "SourceEvent" in reasons["core:bad-2"]
    assert "subject" in reasons["cards:bad-3"]
    assert "Nats-Msg-Id" in reasons["some-other-id"]
    assert "event type" in reasons["core:bad-5"]
    async with profile.database.session() as session:
        balances = (await session.execute(sa.select(schema.account_balance))).all()
    assert await accounts() == ["ACC-1"]  # the good one only
    assert balances == []


async def test_the_ingestion_door_and_the_stream_door_apply_an_event_once(
    profile: RunningService[ProfileSettings], api: Any
) -> None:
    event = source_event("core", "C-1", "twice", 1, **account_opened("ACC-1", "USD"))
    await publish(profile.bus.js, event)  # the adapter's door

    response = await api.IngestSourceEvents(pb.IngestSourceEventsRequest(events=[event]))

    assert [r.duplicate for r in response.receipts] == [True]
    assert (await profile.bus.js.stream_info("ZHIKE_SOURCE")).state.messages == 1


def another_event(event_id: str) -> source_pb.SourceEvent:
    """Not `good(event_id)`: another fact under that event id."""
    event = with_fact(**balance_changed("ACC-1", "USD", 5))
    event.event_id = event_id
    return event


def with_unknown_field(event: source_pb.SourceEvent, payload: bytes) -> source_pb.SourceEvent:
    """`event` carrying field 999 (length-delimited), which the contract does not know: what a
    newer or careless sender adds. Its tag, 999 << 3 | 2 = 7994, is the varint BA 3E."""
    assert len(payload) < 128  # its length fits in one byte
    extra = b"\xba\x3e" + bytes([len(payload)]) + payload
    return source_pb.SourceEvent.FromString(event.SerializeToString() + extra)


async def test_an_event_id_used_again_for_another_event_is_refused_naming_it(api: Any) -> None:
    await api.IngestSourceEvents(pb.IngestSourceEventsRequest(events=[good("e-1")]), timeout=10)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.IngestSourceEvents(
            pb.IngestSourceEventsRequest(events=[good("e-2"), another_event("e-1")]), timeout=10
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert precondition_subjects(caught.value) == ["events[1].event_id"]


async def test_an_event_id_an_adapter_used_for_another_event_is_refused_at_the_ingestion_door(
    profile: RunningService[ProfileSettings], api: Any
) -> None:
    await publish(profile.bus.js, good("e-1"))  # the adapter's door

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.IngestSourceEvents(
            pb.IngestSourceEventsRequest(events=[another_event("e-1")]), timeout=10
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert precondition_subjects(caught.value) == ["events[0].event_id"]


async def test_a_batch_refused_for_a_reused_event_id_is_taken_once_that_event_has_a_new_id(
    api: Any,
) -> None:
    # The events beside the refused one were stored: sent again, they are duplicates.
    await api.IngestSourceEvents(pb.IngestSourceEventsRequest(events=[good("e-1")]), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await api.IngestSourceEvents(
            pb.IngestSourceEventsRequest(events=[good("e-2"), another_event("e-1")]), timeout=10
        )

    response = await api.IngestSourceEvents(
        pb.IngestSourceEventsRequest(events=[good("e-2"), another_event("e-3")]), timeout=10
    )

    assert [(r.event_id, r.duplicate) for r in response.receipts] == [
        ("e-2", True),
        ("e-3", False),
    ]


async def test_an_event_sent_again_with_other_unknown_fields_is_a_duplicate(api: Any) -> None:
    first = with_unknown_field(good("e-1"), b"first")
    await api.IngestSourceEvents(pb.IngestSourceEventsRequest(events=[first]), timeout=10)

    again = with_unknown_field(good("e-1"), b"again")
    response = await api.IngestSourceEvents(
        pb.IngestSourceEventsRequest(events=[again]), timeout=10
    )

    assert [r.duplicate for r in response.receipts] == [True]


async def test_an_ingested_event_is_published_without_the_fields_the_contract_does_not_know(
    profile: RunningService[ProfileSettings], api: Any
) -> None:
    event = with_unknown_field(good("e-1"), b"smuggled bytes")

    await api.IngestSourceEvents(pb.IngestSourceEventsRequest(events=[event]), timeout=10)

    stored = await profile.bus.js.get_msg("ZHIKE_SOURCE", seq=1)
    assert b"smuggled bytes" not in (stored.data or b"")


async def test_ingestion_answers_unavailable_when_the_stream_cannot_store(
    nats_server: NatsServer, profile: RunningService[ProfileSettings], api: Any
) -> None:
    nats_server.stop()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await api.IngestSourceEvents(pb.IngestSourceEventsRequest(events=[good()]), timeout=15)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        nats_server.start()
