"""The notifications' gRPC API end to end, over the real stack (identity, the profile and
notifications in-process on SQLite, a real nats-server, the local gateways): bad input is
INVALID_ARGUMENT naming every field (google.rpc.BadRequest) and never echoing a value;
SendNotification is idempotent per key; notifications list newest first in pages; the in-app
inbox is delivered, counted and marked read once, a customer's token reading its own inbox only.

One stack serves the module: every test works on parties of its own.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from google.rpc import error_details_pb2, status_pb2

from zhike.notifications.v1 import notifications_pb2 as model_pb
from zhike.notifications.v1 import notifications_service_pb2 as pb
from zhike.notifications.v1 import notifications_service_pb2_grpc as pb_grpc
from zhike_notifications.testing import REQUEST_DIGEST
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import authorised_channel

from ..flows import link_person
from ..stack import NotificationsProcess, Stack, notifications_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

SMS = model_pb.NOTIFICATION_CHANNEL_SMS
EMAIL = model_pb.NOTIFICATION_CHANNEL_EMAIL
INBOX = model_pb.NOTIFICATION_CHANNEL_INBOX
TRANSACTIONAL = model_pb.NOTIFICATION_CATEGORY_TRANSACTIONAL
SERVICE = model_pb.NOTIFICATION_CATEGORY_SERVICE
SECRET_VALUE = "SECRET-VALUE-7731"  # must never come back in an error
CARD_DUE = {"card": "6225881234567890", "amount": "3,456.78", "due_date": "2026-04-08"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        async with notifications_stack(server, tmp_path_factory.mktemp("stack")) as running:
            yield running
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def party_id(stack: Stack) -> str:
    """A party with a phone, linked at identity (shared: the tests use their own keys)."""
    return await link_person(stack, "API-1", number=1)


Api = Callable[..., pb_grpc.NotificationsServiceStub]


@pytest_asyncio.fixture(loop_scope="module")
async def api(stack: Stack) -> AsyncIterator[Api]:
    """Stubs as a messaging system (by default) or as `roles` with a `party_id` claim; their
    channels are closed after the test."""
    opened: list[grpc.aio.Channel] = []

    def stub(
        roles: Sequence[str] = ("messaging_system",), party_id: str | None = None
    ) -> pb_grpc.NotificationsServiceStub:
        opened.append(
            authorised_channel(stack.address(stack.notifications), roles=roles, party_id=party_id)
        )
        return pb_grpc.NotificationsServiceStub(opened[-1])

    yield stub
    for channel in opened:
        await channel.close()


def bad_request(error: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            found = error_details_pb2.BadRequest()
            assert status_pb2.Status.FromString(value).details[0].Unpack(found)
            return found
    raise AssertionError("no google.rpc.BadRequest in the status details")


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def request(party_id: str, **fields: Any) -> pb.SendNotificationRequest:
    """A good OTP request with `fields` replaced."""
    values: Mapping[str, str] = fields.pop("values", {"code": "482913"})
    base: dict[str, Any] = {
        "party_id": party_id,
        "channel": SMS,
        "category": TRANSACTIONAL,
        "template_id": "otp_sms_v1",
        "idempotency_key": f"otp-{uuid.uuid4()}",
    }
    return pb.SendNotificationRequest(**(base | fields), values=dict(values))


BAD_SENDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "missing channel": ({"channel": model_pb.NOTIFICATION_CHANNEL_UNSPECIFIED}, ["channel"]),
    "missing category": ({"category": model_pb.NOTIFICATION_CATEGORY_UNSPECIFIED}, ["category"]),
    "party id not a UUID": ({"party_id": "party-42"}, ["party_id"]),
    "idempotency key with a space": ({"idempotency_key": "otp 1"}, ["idempotency_key"]),
    "idempotency key missing": ({"idempotency_key": ""}, ["idempotency_key"]),
    # Offers' decisions are queued under these: taken first, the decision's message never would.
    "idempotency key of an offer decision": (
        {"idempotency_key": f"offer-decision:{uuid.uuid4()}"},
        ["idempotency_key"],
    ),
    "unknown template": ({"template_id": "no_such_template_v1"}, ["template_id"]),
    "template of another channel": ({"channel": EMAIL}, ["template_id"]),
    "template of another category": ({"category": SERVICE}, ["template_id"]),
    "a template value missing": ({"values": {}}, ["values.code"]),
    "a template value empty": ({"values": {"code": ""}}, ["values.code"]),
    "a template value of spaces": ({"values": {"code": "   "}}, ["values.code"]),
    "a template value with a NUL": ({"values": {"code": "48\x002913"}}, ["values.code"]),
    "a template value with a right-to-left override": (
        {"values": {"code": "\u202e482913"}},
        ["values.code"],
    ),
    "a template value with a terminal escape": (
        {"values": {"code": "\x1b[2J482913"}},
        ["values.code"],
    ),
    "a template value too long": ({"values": {"code": "4" * 513}}, ["values.code"]),
    "an extra template value": (
        {"values": {"code": "482913", "account": SECRET_VALUE}},
        ["values.account"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SENDS))
async def test_a_bad_send_is_invalid_argument_naming_the_field_and_never_the_value(
    stack: Stack, api: Api, party_id: str, case: str
) -> None:
    fields, expected = BAD_SENDS[case]
    error = await refused(
        api().SendNotification(request(**({"party_id": party_id} | fields)), timeout=10)
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    violations = bad_request(error).field_violations
    assert [v.field for v in violations] == expected
    assert SECRET_VALUE not in (error.details() or "")
    assert all(SECRET_VALUE not in v.description for v in violations)


async def test_the_same_key_and_request_return_the_first_notification(
    stack: Stack, api: Api, party_id: str
) -> None:
    first_request = request(party_id)
    first: pb.SendNotificationResponse = await api().SendNotification(first_request, timeout=10)
    again: pb.SendNotificationResponse = await api().SendNotification(first_request, timeout=10)

    assert again.notification_id == first.notification_id
    assert again.notification.create_time == first.notification.create_time
    sent = await stack.status_becomes(first.notification_id, model_pb.NOTIFICATION_STATUS_SENT)
    assert [m["out_id"] for m in stack.sms()].count(first.notification_id) == 1
    assert sent.attempts == 1


async def test_the_same_key_with_other_values_is_failed_precondition(
    stack: Stack, api: Api, party_id: str
) -> None:
    key = f"otp-{uuid.uuid4()}"
    await api().SendNotification(
        request(party_id, idempotency_key=key, values={"code": "111111"}), timeout=10
    )

    error = await refused(
        api().SendNotification(
            request(party_id, idempotency_key=key, values={"code": "222222"}), timeout=10
        )
    )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "222222" not in (error.details() or "")


async def test_the_stored_request_digest_does_not_give_a_passcode_back_without_the_key(
    stack: Stack, api: Api, party_id: str
) -> None:
    # Beside the rest of the row in clear, an unkeyed hash of a six-digit code is undone in
    # seconds by trying every code; the digest is the blind index's keyed hash instead.
    sent = await api().SendNotification(request(party_id, values={"code": "482913"}), timeout=10)
    assert not isinstance(stack.notifications, NotificationsProcess)
    async with stack.notifications.database.session() as session:
        stored = (
            await session.execute(
                sa.text("SELECT request_digest FROM notification WHERE notification_id = :n"),
                {"n": sent.notification_id},
            )
        ).scalar_one()
    document = {
        "party_id": party_id,
        "channel": "sms",
        "template_id": "otp_sms_v1",
        "category": "transactional",
        "purpose": "service",
        "values": {"code": "482913"},
    }
    canonical = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    assert stored == REQUEST_DIGEST(canonical)
    assert stored != hashlib.sha256(canonical.encode()).hexdigest()


async def test_an_unknown_notification_is_not_found(stack: Stack, api: Api) -> None:
    error = await refused(
        api().GetNotification(
            pb.GetNotificationRequest(notification_id=str(uuid.uuid4())), timeout=10
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_lookups_and_listings_are_invalid_argument_naming_the_field(
    stack: Stack, api: Api, party_id: str
) -> None:
    customer = api(roles=("channel_app",), party_id=party_id)
    calls = [
        # A NUL byte would reach PostgreSQL, which refuses it in text (INTERNAL).
        (
            api().GetNotification(pb.GetNotificationRequest(notification_id="a\x00"), timeout=10),
            "notification_id",
        ),
        # The contract refuses a page size above the maximum.
        (
            api().ListNotifications(
                pb.ListNotificationsRequest(party_id=party_id, page_size=10**6), timeout=10
            ),
            "page_size",
        ),
        (
            customer.MarkInboxRead(
                pb.MarkInboxReadRequest(party_id=party_id, notification_ids=["offer-d-1", "a\x00"]),
                timeout=10,
            ),
            "notification_ids[1]",
        ),
    ]
    for call, field in calls:
        error = await refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in bad_request(error).field_violations] == [field]


async def test_notifications_list_newest_first_a_page_at_a_time(stack: Stack, api: Api) -> None:
    party_id = await link_person(stack, "API-LIST", number=2)
    sent = [
        (await api().SendNotification(request(party_id), timeout=10)).notification_id
        for _ in range(3)
    ]

    listed: list[str] = []
    token = ""
    pages = 0
    while True:
        page: pb.ListNotificationsResponse = await api().ListNotifications(
            pb.ListNotificationsRequest(party_id=party_id, page_size=1, page_token=token),
            timeout=10,
        )
        pages += 1
        assert len(page.notifications) == 1
        listed.extend(n.notification_id for n in page.notifications)
        token = page.next_page_token
        if not token:
            break

    assert listed == list(reversed(sent))
    assert pages == 3


async def test_a_page_token_of_another_partys_listing_is_refused(
    stack: Stack, api: Api, party_id: str
) -> None:
    other = await link_person(stack, "API-OTHER", number=3)
    for who in (party_id, party_id, other):
        await api().SendNotification(request(who), timeout=10)
    first: pb.ListNotificationsResponse = await api().ListNotifications(
        pb.ListNotificationsRequest(party_id=party_id, page_size=1), timeout=10
    )
    assert first.next_page_token

    error = await refused(
        api().ListNotifications(
            pb.ListNotificationsRequest(
                party_id=other, page_size=1, page_token=first.next_page_token
            ),
            timeout=10,
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request(error).field_violations] == ["page_token"]


async def deliver_to_inbox(stack: Stack, api: Api, party_id: str) -> str:
    answer: pb.SendNotificationResponse = await api().SendNotification(
        request(
            party_id,
            channel=INBOX,
            category=SERVICE,
            template_id="card_due_inbox_v1",
            values=CARD_DUE,
        ),
        timeout=10,
    )
    await stack.status_becomes(answer.notification_id, model_pb.NOTIFICATION_STATUS_DELIVERED)
    return answer.notification_id


async def test_an_inbox_message_is_delivered_counted_and_marked_read_once(
    stack: Stack, api: Api
) -> None:
    party_id = await link_person(stack, "API-INBOX", number=4)
    first = await deliver_to_inbox(stack, api, party_id)
    second = await deliver_to_inbox(stack, api, party_id)
    customer = api(roles=("channel_app",), party_id=party_id)

    inbox: pb.ListInboxResponse = await customer.ListInbox(
        pb.ListInboxRequest(party_id=party_id), timeout=10
    )
    assert [m.notification_id for m in inbox.messages] == [second, first]
    assert inbox.unread_count == 2
    assert "3,456.78" in inbox.messages[0].body
    assert "6225881234567890" not in inbox.messages[0].body  # the card stays masked

    marked: pb.MarkInboxReadResponse = await customer.MarkInboxRead(
        pb.MarkInboxReadRequest(party_id=party_id, notification_ids=[first]), timeout=10
    )
    read_once: pb.ListInboxResponse = await customer.ListInbox(
        pb.ListInboxRequest(party_id=party_id), timeout=10
    )
    again: pb.MarkInboxReadResponse = await customer.MarkInboxRead(
        pb.MarkInboxReadRequest(party_id=party_id, notification_ids=[first]), timeout=10
    )
    read_twice: pb.ListInboxResponse = await customer.ListInbox(
        pb.ListInboxRequest(party_id=party_id), timeout=10
    )

    assert marked.marked == 1
    assert again.marked == 0
    assert read_once.unread_count == read_twice.unread_count == 1
    first_read = {m.notification_id: m for m in read_once.messages}[first]
    assert first_read.HasField("read_time")
    assert {m.notification_id: m for m in read_twice.messages}[first] == first_read
    unread: pb.ListInboxResponse = await customer.ListInbox(
        pb.ListInboxRequest(party_id=party_id, unread_only=True), timeout=10
    )
    assert [m.notification_id for m in unread.messages] == [second]


async def test_a_customer_token_reads_its_own_inbox_only(stack: Stack, api: Api) -> None:
    party_id = await link_person(stack, "API-OWN", number=5)
    other = await link_person(stack, "API-NOT-MINE", number=6)
    mine = await deliver_to_inbox(stack, api, party_id)
    theirs = await deliver_to_inbox(stack, api, other)
    customer = api(roles=("channel_app",), party_id=party_id)

    own: pb.ListInboxResponse = await customer.ListInbox(
        pb.ListInboxRequest(party_id=party_id), timeout=10
    )
    listing = await refused(customer.ListInbox(pb.ListInboxRequest(party_id=other), timeout=10))
    marking = await refused(
        customer.MarkInboxRead(
            pb.MarkInboxReadRequest(party_id=other, notification_ids=[theirs]), timeout=10
        )
    )

    assert [m.notification_id for m in own.messages] == [mine]
    assert listing.code() == grpc.StatusCode.NOT_FOUND
    assert marking.code() == grpc.StatusCode.NOT_FOUND
    their_inbox: pb.ListInboxResponse = await api(roles=("channel_app",), party_id=other).ListInbox(
        pb.ListInboxRequest(party_id=other), timeout=10
    )
    assert their_inbox.unread_count == 1


async def test_marking_an_id_not_in_the_inbox_is_not_found_and_marks_nothing(
    stack: Stack,
    api: Api,
) -> None:
    party_id = await link_person(stack, "API-MARK", number=7)
    other = await link_person(stack, "API-MARK-OTHER", number=8)
    mine = await deliver_to_inbox(stack, api, party_id)
    theirs = await deliver_to_inbox(stack, api, other)
    customer = api(roles=("channel_app",), party_id=party_id)

    for missing in (str(uuid.uuid4()), theirs):
        error = await refused(
            customer.MarkInboxRead(
                pb.MarkInboxReadRequest(party_id=party_id, notification_ids=[mine, missing]),
                timeout=10,
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND

    inbox: pb.ListInboxResponse = await customer.ListInbox(
        pb.ListInboxRequest(party_id=party_id), timeout=10
    )
    assert inbox.unread_count == 1
    assert not inbox.messages[0].HasField("read_time")
