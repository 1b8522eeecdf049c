"""The provider-facing HTTP endpoints, served by a real uvicorn on a free port and called with
httpx: signed receipts and replies reach the use cases once; unsigned, forged, stale, replayed
and malformed requests are refused with a named reason and run nothing; unsubscribe links change
nothing on GET and unsubscribe on POST."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from zhike_notifications.domain.lifecycle import ReceiptKind
from zhike_notifications.domain.replies import ReplyAction, parse_reply
from zhike_notifications.domain.service import WebhookReplayed
from zhike_notifications.domain.unsubscribe_links import unsubscribe_token, unsubscribe_url
from zhike_notifications.http_server import serving
from zhike_notifications.transport.webhook_signatures import (
    SIGNATURE_HEADER,
    SignatureVerifier,
    sign,
)
from zhike_notifications.transport.webhooks import MAX_BODY_BYTES, webhook_app

NOW = dt.datetime(2025, 3, 3, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
PROVIDER = "sms-a"
SECRET = b"sms-a-webhook-secret"
NEXT_SECRET = b"sms-a-webhook-secret-2025"
UNSUBSCRIBE_SECRET = b"unsubscribe-secret"
KNOWN_MESSAGE = "sms-5f1c"  # a provider message id of an SMS we sent
KNOWN_NOTIFICATION = "ntf-0001"
RECEIPTS = f"/webhooks/v1/{PROVIDER}/receipts"
REPLIES = f"/webhooks/v1/{PROVIDER}/replies"


@dataclass
class RecordingActions:
    """The use cases, in memory: every call recorded, a few messages known."""

    receipts: list[tuple[str, str, ReceiptKind, dt.datetime, str]] = field(default_factory=list)
    replies: list[tuple[str, str, str, dt.datetime]] = field(default_factory=list)
    unsubscribed: list[tuple[str, dt.datetime]] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)

    async def record_receipt(
        self,
        delivery_id: str,
        provider: str,
        provider_message_id: str,
        kind: ReceiptKind,
        at: dt.datetime,
        error: str,
    ) -> bool:
        self._first_time(delivery_id)
        self.receipts.append((provider, provider_message_id, kind, at, error))
        return provider_message_id == KNOWN_MESSAGE

    async def record_reply(
        self, delivery_id: str, provider: str, in_reply_to: str, text: str, at: dt.datetime
    ) -> ReplyAction | None:
        self._first_time(delivery_id)
        self.replies.append((provider, in_reply_to, text, at))
        if in_reply_to != KNOWN_MESSAGE:
            return None
        return parse_reply(text).action

    async def unsubscribe(self, notification_id: str, at: dt.datetime) -> bool:
        self.unsubscribed.append((notification_id, at))
        return notification_id == KNOWN_NOTIFICATION

    def _first_time(self, delivery_id: str) -> None:
        if delivery_id in self.deliveries:
            raise WebhookReplayed
        self.deliveries.append(delivery_id)

    @property
    def actions_run(self) -> int:
        return len(self.receipts) + len(self.replies) + len(self.unsubscribed)


@pytest.fixture
def actions() -> RecordingActions:
    return RecordingActions()


@pytest.fixture
async def client(actions: RecordingActions) -> AsyncIterator[httpx.AsyncClient]:
    verifier = SignatureVerifier({PROVIDER: [SECRET, NEXT_SECRET]})
    app = webhook_app(actions, verifier, unsubscribe_secret=UNSUBSCRIBE_SECRET, now=lambda: NOW)
    async with (
        serving(app) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        yield http


def receipt_body(message_id: Any = KNOWN_MESSAGE, **fields: Any) -> bytes:
    body = {
        "provider_message_id": message_id,
        "kind": "delivered",
        "at": "2025-03-03T09:29:58+08:00",
        **fields,
    }
    return json.dumps(body).encode()


def reply_body(text: str, in_reply_to: str = KNOWN_MESSAGE) -> bytes:
    body = {"in_reply_to": in_reply_to, "text": text, "at": "2025-03-03T01:29:00Z"}
    return json.dumps(body, ensure_ascii=False).encode()


async def post_signed(
    client: httpx.AsyncClient,
    path: str,
    body: bytes,
    *,
    delivery_id: str = "dlv-1",
    secret: bytes = SECRET,
    signed_at: dt.datetime = NOW,
    signed_body: bytes | None = None,
) -> httpx.Response:
    headers = sign(secret, delivery_id, int(signed_at.timestamp()), signed_body or body)
    headers["Content-Type"] = "application/json"
    return await client.post(path, content=body, headers=headers)


# --- receipts --------------------------------------------------------------------------------


async def test_a_signed_receipt_reaches_the_action_once(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    response = await post_signed(client, RECEIPTS, receipt_body(error=""))
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": True}
    assert actions.receipts == [
        (PROVIDER, KNOWN_MESSAGE, ReceiptKind.DELIVERED, NOW - dt.timedelta(seconds=2), "")
    ]
    assert actions.deliveries == ["dlv-1"]


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        ("UNDELIV", "UNDELIV"),
        ("E_OFF", "E_OFF"),
        # A gateway echoing the number: recorded, without the number.
        ("UNDELIV: 13912345678 unreachable", "provider_text_withheld"),
        ("13912345678", "provider_text_withheld"),
        ("UNDELIV_13912345678", "provider_text_withheld"),
        ("MOBILE.139-1234-5678", "provider_text_withheld"),
        ("E_100234", "provider_text_withheld"),
        ("E_10023", "E_10023"),
    ],
)
async def test_a_receipts_error_is_kept_only_as_a_plain_code(
    client: httpx.AsyncClient, actions: RecordingActions, error: str, kept: str
) -> None:
    response = await post_signed(client, RECEIPTS, receipt_body(kind="undelivered", error=error))

    assert response.status_code == 200, response.text
    assert [receipt[4] for receipt in actions.receipts] == [kept]


async def test_the_same_delivery_again_is_refused_as_a_replay_and_not_run(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    first = await post_signed(client, RECEIPTS, receipt_body(), delivery_id="dlv-7")
    again = await post_signed(client, RECEIPTS, receipt_body(), delivery_id="dlv-7")
    assert first.status_code == 200
    assert again.status_code == 409
    assert again.json()["error"] == "replayed"
    assert again.json()["field"] == "Zhike-Webhook-Id"
    assert len(actions.receipts) == 1


async def test_an_unsigned_receipt_is_refused_naming_the_missing_header(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    response = await client.post(
        RECEIPTS, content=receipt_body(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert response.json()["check"] == "missing_header"
    assert "Zhike-Webhook-Id" in response.json()["detail"]
    assert actions.actions_run == 0
    assert actions.deliveries == []


async def test_a_receipt_signed_with_another_secret_is_refused(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    response = await post_signed(client, RECEIPTS, receipt_body(), secret=b"not-the-secret")
    assert response.status_code == 401
    assert response.json()["check"] == "bad_signature"
    assert actions.actions_run == 0


async def test_the_refusal_does_not_quote_the_signature(client: httpx.AsyncClient) -> None:
    headers = sign(b"not-the-secret", "dlv-1", int(NOW.timestamp()), receipt_body()) | {
        "Content-Type": "application/json"
    }
    response = await client.post(RECEIPTS, content=receipt_body(), headers=headers)
    assert response.status_code == 401
    assert headers[SIGNATURE_HEADER].removeprefix("v1=") not in response.text


@pytest.mark.parametrize("offset", [dt.timedelta(minutes=-6), dt.timedelta(minutes=6)])
async def test_a_timestamp_outside_the_tolerance_is_refused(
    client: httpx.AsyncClient, actions: RecordingActions, offset: dt.timedelta
) -> None:
    response = await post_signed(client, RECEIPTS, receipt_body(), signed_at=NOW + offset)
    assert response.status_code == 401
    assert response.json()["check"] == "timestamp_outside_tolerance"
    assert actions.actions_run == 0


async def test_a_tampered_body_is_refused(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    signed = receipt_body(kind="undelivered", error="E_OFF")
    tampered = receipt_body(kind="delivered")
    response = await post_signed(client, RECEIPTS, tampered, signed_body=signed)
    assert response.status_code == 401
    assert response.json()["check"] == "bad_signature"
    assert actions.actions_run == 0


async def test_a_provider_without_a_secret_is_refused(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    response = await post_signed(client, "/webhooks/v1/sms-b/receipts", receipt_body())
    assert response.status_code == 401
    assert response.json()["check"] == "unknown_provider"
    assert actions.actions_run == 0


async def test_during_a_rotation_a_signature_with_either_secret_is_accepted(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    body = receipt_body()
    stamp = int(NOW.timestamp())
    old = sign(b"retired-secret", "dlv-r", stamp, body)[SIGNATURE_HEADER]
    new = sign(NEXT_SECRET, "dlv-r", stamp, body)[SIGNATURE_HEADER]
    headers = sign(NEXT_SECRET, "dlv-r", stamp, body) | {
        SIGNATURE_HEADER: f"{old} {new}",
        "Content-Type": "application/json",
    }
    response = await client.post(RECEIPTS, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert len(actions.receipts) == 1


async def test_a_refused_signature_does_not_use_up_the_delivery_id(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    # Whoever guesses a delivery id cannot block the real delivery by sending it first.
    forged = await post_signed(client, RECEIPTS, receipt_body(), secret=b"forger", delivery_id="d")
    real = await post_signed(client, RECEIPTS, receipt_body(), delivery_id="d")
    assert (forged.status_code, real.status_code) == (401, 200)
    assert len(actions.receipts) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"provider_message_id": "sms-5f1c", "kind": ', "body"),
        (receipt_body(unexpected="x"), "unexpected"),
        (receipt_body(at="2025-03-03T09:29:58"), "at"),  # naive: which zone?
        (receipt_body(at=1741000000), "at"),  # unix seconds are not RFC 3339
        (receipt_body(kind="read"), "kind"),
        (receipt_body("m" * 201), "provider_message_id"),
        (receipt_body(12345), "provider_message_id"),
        (receipt_body(error="E" * 201), "error"),
        (b"[]", "body"),
    ],
    ids=[
        "malformed_json",
        "unknown_field",
        "naive_time",
        "unix_time",
        "unknown_kind",
        "id_too_long",
        "id_not_a_string",
        "error_too_long",
        "not_an_object",
    ],
)
async def test_a_signed_but_invalid_receipt_is_422_naming_the_field_and_runs_nothing(
    client: httpx.AsyncClient, actions: RecordingActions, body: bytes, field: str
) -> None:
    response = await post_signed(client, RECEIPTS, body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "invalid_request"
    assert field in [problem["field"] for problem in answer["problems"]]
    assert actions.actions_run == 0
    assert actions.deliveries == []  # nor is the delivery id used up


async def test_an_invalid_reply_is_answered_without_its_text(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    body = json.dumps(
        {"in_reply_to": KNOWN_MESSAGE, "text": "请别再发了 13800138000", "at": "yesterday"},
        ensure_ascii=False,
    ).encode()
    response = await post_signed(client, REPLIES, body)
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["problems"]] == ["at"]
    assert "13800138000" not in response.text
    assert "yesterday" not in response.text
    assert actions.actions_run == 0


async def test_a_receipt_for_a_message_we_do_not_know_is_404_naming_the_field(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    response = await post_signed(client, RECEIPTS, receipt_body("sms-unknown"))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert response.json()["field"] == "provider_message_id"
    assert [r[1] for r in actions.receipts] == ["sms-unknown"]


async def test_a_body_over_the_limit_is_refused_before_anything_else(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    body = receipt_body(error="E" * MAX_BODY_BYTES)
    response = await post_signed(client, RECEIPTS, body)
    assert response.status_code == 413
    assert actions.actions_run == 0


async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    body = receipt_body()
    headers = sign(SECRET, "dlv-1", int(NOW.timestamp()), body) | {"Content-Type": "text/plain"}
    response = await client.post(RECEIPTS, content=body, headers=headers)
    assert response.status_code == 415
    assert actions.actions_run == 0


# --- replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["TD", "退订", " t d "])
async def test_an_unsubscribe_reply_reaches_the_action_with_its_text_and_answers_unsubscribe(
    client: httpx.AsyncClient, actions: RecordingActions, text: str
) -> None:
    response = await post_signed(client, REPLIES, reply_body(text))
    assert response.status_code == 200, response.text
    assert response.json() == {"action": "unsubscribe"}
    assert actions.replies == [(PROVIDER, KNOWN_MESSAGE, text, NOW - dt.timedelta(minutes=1))]


async def test_any_other_reply_is_recorded_and_asks_for_nothing(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    response = await post_signed(client, REPLIES, reply_body("不要退订"))
    assert response.status_code == 200
    assert response.json() == {"action": "none"}
    assert len(actions.replies) == 1


async def test_a_reply_to_an_sms_we_do_not_know_is_404_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    response = await post_signed(client, REPLIES, reply_body("TD", in_reply_to="sms-unknown"))
    assert response.status_code == 404
    assert response.json()["field"] == "in_reply_to"


async def test_a_replayed_reply_is_refused_and_not_run(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    await post_signed(client, REPLIES, reply_body("TD"), delivery_id="dlv-td")
    again = await post_signed(client, REPLIES, reply_body("TD"), delivery_id="dlv-td")
    assert again.status_code == 409
    assert len(actions.replies) == 1


async def test_an_unsigned_reply_is_refused(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    response = await client.post(
        REPLIES, content=reply_body("TD"), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert actions.actions_run == 0


# --- unsubscribe links -----------------------------------------------------------------------


async def test_the_unsubscribe_page_changes_nothing(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    token = unsubscribe_token(UNSUBSCRIBE_SECRET, KNOWN_NOTIFICATION)
    response = await client.get(f"/unsubscribe/{token}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<form method="post">' in response.text
    assert "退订" in response.text
    assert "Unsubscribe" in response.text
    assert actions.unsubscribed == []


async def test_a_one_click_post_unsubscribes(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    # What a mail client sends for `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
    url = unsubscribe_url(str(client.base_url), UNSUBSCRIBE_SECRET, KNOWN_NOTIFICATION)
    response = await client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert "您已退订" in response.text
    assert actions.unsubscribed == [(KNOWN_NOTIFICATION, NOW)]


async def test_the_pages_form_unsubscribes(
    client: httpx.AsyncClient, actions: RecordingActions
) -> None:
    token = unsubscribe_token(UNSUBSCRIBE_SECRET, KNOWN_NOTIFICATION)
    response = await client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert actions.unsubscribed == [(KNOWN_NOTIFICATION, NOW)]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "token",
    [
        unsubscribe_token(b"another-secret", KNOWN_NOTIFICATION),
        unsubscribe_token(UNSUBSCRIBE_SECRET, KNOWN_NOTIFICATION)[:-1] + "A",
        "not-a-token",
        "x" * 3000,
    ],
    ids=["another_secret", "tampered", "not_a_token", "very_long"],
)
async def test_a_bad_unsubscribe_token_is_404_and_changes_nothing(
    client: httpx.AsyncClient, actions: RecordingActions, method: str, token: str
) -> None:
    response = await client.request(method, f"/unsubscribe/{token}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "链接无效" in response.text
    assert actions.unsubscribed == []


async def test_a_link_to_a_notification_we_do_not_have_is_404(
    client: httpx.AsyncClient,
) -> None:
    token = unsubscribe_token(UNSUBSCRIBE_SECRET, "ntf-deleted")
    response = await client.post(f"/unsubscribe/{token}")
    assert response.status_code == 404


# --- the document and the probe --------------------------------------------------------------


async def test_the_openapi_document_lists_the_paths(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["version"] == "1.0.0"
    assert set(document["paths"]) == {
        "/webhooks/v1/{provider}/receipts",
        "/webhooks/v1/{provider}/replies",
        "/unsubscribe/{token}",
    }
    receipts = document["paths"]["/webhooks/v1/{provider}/receipts"]["post"]
    headers = {p["name"] for p in receipts["parameters"] if p["in"] == "header"}
    assert headers == {"Zhike-Webhook-Id", "Zhike-Webhook-Timestamp", "Zhike-Webhook-Signature"}
    assert {"401", "404", "409", "422"} <= set(receipts["responses"])
    assert set(document["paths"]["/unsubscribe/{token}"]) == {"get", "post"}


async def test_healthz_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "serving"}
