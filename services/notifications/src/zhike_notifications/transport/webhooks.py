"""The provider-facing HTTP endpoints (FastAPI): delivery receipts and inbound SMS replies from
the SMS, push and e-mail providers, and the unsubscribe links our e-mails carry.

    POST /webhooks/v1/{provider}/receipts   a delivery receipt            (signed)
    POST /webhooks/v1/{provider}/replies    an inbound SMS reply          (signed)
    GET  /unsubscribe/{token}               a confirmation page; changes nothing
    POST /unsubscribe/{token}               unsubscribes (RFC 8058 one-click, or the page's form)
    GET  /healthz                           for probes
    GET  /openapi.json

A webhook goes through, in order: its size (413, 411 without a Content-Length) and media type
(415 unless application/json); its signature
over the raw body (401 naming the failed check, `webhook_signatures`); its body (422 naming the
fields, never their values); its delivery id (409 when seen before: a replay, and nothing runs);
then the action (404 when it names a message we do not know). Nothing is changed by a refused
request. The use cases behind the endpoints are `WebhookActions`.

Unsubscribe links are not signed by a provider: the token in the link is
(`domain.unsubscribe_links`). A GET only shows a page, because mail scanners and link previews
follow links; the POST (a deliberate act, or the mail client's RFC 8058 one-click) unsubscribes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from zhike_notifications.domain.lifecycle import ReceiptKind
from zhike_notifications.domain.model import ERROR_TEXT_WITHHELD, is_error_code
from zhike_notifications.domain.replies import ReplyAction
from zhike_notifications.domain.service import WebhookReplayed
from zhike_notifications.domain.unsubscribe_links import notification_of
from zhike_notifications.transport.webhook_signatures import (
    HEADERS,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureCheck,
    SignatureRefused,
    SignatureVerifier,
    Verified,
)

logger = logging.getLogger(__name__)

TITLE = "Zhike notifications — provider webhooks and unsubscribe links"
API_VERSION = "1.0.0"
MAX_BODY_BYTES = 64 * 1024
MAX_ID_LENGTH = 200
MAX_ERROR_LENGTH = 200
MAX_REPLY_TEXT_LENGTH = 4000  # a long concatenated SMS; `parse_reply` reads commands in 1,000
PROVIDER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class WebhookActions(Protocol):
    """The use cases behind the endpoints (the service wires its own; tests an in-memory one)."""

    async def record_receipt(
        self,
        delivery_id: str,
        provider: str,
        provider_message_id: str,
        kind: ReceiptKind,
        at: dt.datetime,
        error: str,
    ) -> bool:
        """False: no notification has that provider message id (and the delivery id is not
        used up: the provider's retry may find it). Raises `WebhookReplayed` when the delivery
        id was recorded before; it is recorded in the same transaction as the receipt."""
        ...

    async def record_reply(
        self, delivery_id: str, provider: str, in_reply_to: str, text: str, at: dt.datetime
    ) -> ReplyAction | None:
        """What the reply asked for (an UNSUBSCRIBE withdraws consent and publishes it); None: no
        SMS sent through `provider` has the provider message id `in_reply_to`. Raises
        `WebhookReplayed` as `record_receipt` does."""
        ...

    async def unsubscribe(self, notification_id: str, at: dt.datetime) -> bool:
        """False: no such notification."""
        ...


# --- request and response bodies --------------------------------------------------------------

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: object) -> object:
    # Only a string with its zone: not unix seconds, not a naive time taken for UTC.
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("an RFC 3339 time with its zone offset, such as 2025-01-31T09:30:00+08:00")
    return value


Rfc3339Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class ReceiptBody(BaseModel):
    """A provider's word on what became of a message it accepted."""

    model_config = ConfigDict(extra="forbid")

    provider_message_id: Id = Field(description="the id the provider answered the send with")
    kind: ReceiptKind
    at: Rfc3339Time = Field(description="when the provider learnt it")
    error: Annotated[StrictStr, Field(max_length=MAX_ERROR_LENGTH)] = Field(
        default="", description="the provider's error code, for an undelivered message"
    )


class ReplyBody(BaseModel):
    """An SMS the customer sent back to one of ours."""

    model_config = ConfigDict(extra="forbid")

    in_reply_to: Id = Field(
        description="the provider message id of the SMS replied to (gateways tell replies apart "
        "by the sending extension or serial)"
    )
    text: Annotated[StrictStr, Field(max_length=MAX_REPLY_TEXT_LENGTH)]
    at: Rfc3339Time = Field(description="when the provider received the reply")


class ReceiptRecorded(BaseModel):
    recorded: bool = True


class ReplyRecorded(BaseModel):
    action: ReplyAction


class Health(BaseModel):
    status: str = "serving"


class FieldProblem(BaseModel):
    field: str
    problem: str


class ErrorBody(BaseModel):
    error: str
    detail: str
    check: SignatureCheck | None = None  # which signature check failed (401)
    field: str | None = None  # which field or header the error is about
    problems: list[FieldProblem] | None = None  # 422: every invalid field


Provider = Annotated[str, Path(pattern=PROVIDER_PATTERN, description="as configured")]
Token = Annotated[str, Path(description="from the link in the e-mail")]


def _error(status: int, body: ErrorBody) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status)


def _unknown(field: str, what: str) -> JSONResponse:
    return _error(
        404, ErrorBody(error="not_found", field=field, detail=f"no {what} has this {field}")
    )


WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "unknown provider, missing or bad signature, stale"},
    404: {"model": ErrorBody, "description": "no message has this provider message id"},
    409: {"model": ErrorBody, "description": "this delivery id was received before (a replay)"},
    411: {"model": ErrorBody, "description": "no Content-Length"},
    413: {"model": ErrorBody, "description": f"a body over {MAX_BODY_BYTES} bytes"},
    415: {"model": ErrorBody, "description": "a body that is not application/json"},
    422: {"model": ErrorBody, "description": "the body is not JSON or not of this schema"},
}
SIGNATURE_PARAMETERS = {
    "parameters": [
        {
            "name": name,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": description,
        }
        for name, description in (
            (ID_HEADER, "the delivery's unique id; a second delivery with it is refused (409)"),
            (TIMESTAMP_HEADER, "unix seconds when it was signed; at most 5 minutes off"),
            (
                SIGNATURE_HEADER,
                'v1=<hex HMAC-SHA256(secret, f"{id}.{timestamp}.".encode() + raw body)>; '
                "several space-separated during a secret rotation",
            ),
        )
    ]
}


# --- the app ---------------------------------------------------------------------------------


def webhook_app(
    actions: WebhookActions,
    verifier: SignatureVerifier,
    *,
    unsubscribe_secret: bytes,
    now: Callable[[], dt.datetime],
) -> FastAPI:
    """The ASGI app. `unsubscribe_secret` is the key unsubscribe links were made with; `now` the
    clock (aware) that timestamps are checked against and actions are stamped with."""
    if not unsubscribe_secret:
        raise ValueError("the unsubscribe link secret is empty")
    app = FastAPI(
        title=TITLE,
        version=API_VERSION,
        description=(
            "Delivery receipts and inbound SMS replies from providers, signed per provider with "
            f"HMAC-SHA256 over the raw body (headers {', '.join(HEADERS)}; the Standard Webhooks "
            "scheme with a hex MAC); the unsubscribe links in our e-mails (RFC 8058 one-click)."
        ),
        docs_url=None,  # the interactive pages load scripts from a CDN
        redoc_url=None,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the input (a reply's text): fields and problems only.
        problems = [
            FieldProblem(field=_field(problem), problem=problem["msg"])
            for problem in error.errors()
        ]
        fields = ", ".join(dict.fromkeys(p.field for p in problems))
        return _error(
            422,
            ErrorBody(error="invalid_request", detail=f"invalid: {fields}", problems=problems),
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Health:
        return Health()

    signed = APIRouter(route_class=_verifying_route(verifier, now))

    def replayed(request: Request) -> JSONResponse:
        verified: Verified = request.state.verified_webhook
        logger.info("webhook replay refused", extra={"provider": verified.provider})
        return _error(
            409,
            ErrorBody(
                error="replayed", field=ID_HEADER, detail="this delivery was received before"
            ),
        )

    def delivery_id(request: Request) -> str:
        verified: Verified = request.state.verified_webhook
        return verified.delivery_id

    @signed.post(
        "/webhooks/v1/{provider}/receipts",
        response_model=ReceiptRecorded,
        responses=WEBHOOK_RESPONSES,
        openapi_extra=SIGNATURE_PARAMETERS,
        summary="A delivery receipt",
    )
    async def receipt(
        provider: Provider, body: ReceiptBody, request: Request
    ) -> ReceiptRecorded | JSONResponse:
        try:
            known = await actions.record_receipt(
                delivery_id(request),
                provider,
                body.provider_message_id,
                body.kind,
                body.at,
                # Kept only as a plain code (a gateway may echo the number or the text).
                body.error if not body.error or is_error_code(body.error) else ERROR_TEXT_WITHHELD,
            )
        except WebhookReplayed:
            return replayed(request)
        if not known:
            return _unknown("provider_message_id", "notification")
        return ReceiptRecorded()

    @signed.post(
        "/webhooks/v1/{provider}/replies",
        response_model=ReplyRecorded,
        responses=WEBHOOK_RESPONSES,
        openapi_extra=SIGNATURE_PARAMETERS,
        summary="An inbound SMS reply (TD or 退订 withdraws consent to marketing SMS)",
    )
    async def reply(
        provider: Provider, body: ReplyBody, request: Request
    ) -> ReplyRecorded | JSONResponse:
        try:
            action = await actions.record_reply(
                delivery_id(request), provider, body.in_reply_to, body.text, body.at
            )
        except WebhookReplayed:
            return replayed(request)
        if action is None:
            return _unknown("in_reply_to", "SMS")
        return ReplyRecorded(action=action)

    app.include_router(signed)

    @app.get(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        responses={404: {"description": "not a link of ours", "content": {"text/html": {}}}},
        summary="The unsubscribe confirmation page (changes nothing)",
    )
    async def unsubscribe_page(token: Token) -> HTMLResponse:
        if notification_of(unsubscribe_secret, token) is None:
            return _page(NOT_FOUND_PAGE, 404)
        return _page(CONFIRM_PAGE, 200)

    @app.post(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        responses={404: {"description": "not a link of ours", "content": {"text/html": {}}}},
        summary="Unsubscribe (RFC 8058 one-click `List-Unsubscribe=One-Click`, or the form)",
    )
    async def unsubscribe(token: Token) -> HTMLResponse:
        # Any POST to a valid link unsubscribes: the token is the authority, and the body is
        # `List-Unsubscribe=One-Click` from a mail client or the page's form alike.
        notification_id = notification_of(unsubscribe_secret, token)
        if notification_id is None:
            logger.info("unsubscribe refused: not a token of ours")
            return _page(NOT_FOUND_PAGE, 404)
        if not await actions.unsubscribe(notification_id, now()):
            logger.info("unsubscribe refused: no such notification")
            return _page(NOT_FOUND_PAGE, 404)
        return _page(DONE_PAGE, 200)

    return app


def _verifying_route(verifier: SignatureVerifier, now: Callable[[], dt.datetime]) -> type[APIRoute]:
    """A route class that checks size and signature on the raw body before FastAPI parses it
    (a dependency would run only after the body is parsed and validated)."""

    class VerifyingRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def verified_first(request: Request) -> Response:
                length = request.headers.get("content-length")
                if length is None or not length.isdigit():
                    return _error(
                        411, ErrorBody(error="length_required", detail="send a Content-Length")
                    )
                if int(length) > MAX_BODY_BYTES:
                    return _error(
                        413,
                        ErrorBody(
                            error="too_large", detail=f"the body is over {MAX_BODY_BYTES} bytes"
                        ),
                    )
                media_type = request.headers.get("content-type", "").partition(";")[0].strip()
                if media_type.lower() != "application/json":
                    # FastAPI would not parse it, and answer with a puzzling 422.
                    return _error(
                        415,
                        ErrorBody(
                            error="unsupported_media_type",
                            detail="send the body as Content-Type: application/json",
                        ),
                    )
                # The same Request goes on to FastAPI, which reads the body cached here.
                body = await request.body()
                provider = request.path_params.get("provider", "")
                try:
                    request.state.verified_webhook = verifier.verify(
                        provider, request.headers, body, now()
                    )
                except SignatureRefused as refused:
                    logger.info(
                        "webhook refused",
                        extra={
                            "check": refused.check.value,
                            # A name we do not know is whatever the caller put in the path.
                            "provider": (
                                provider
                                if refused.check is not SignatureCheck.UNKNOWN_PROVIDER
                                else None
                            ),
                        },
                    )
                    return _error(
                        401,
                        ErrorBody(
                            error="signature_refused", check=refused.check, detail=refused.detail
                        ),
                    )
                return await handle(request)

            return verified_first

    return VerifyingRoute


def _field(problem: Any) -> str:
    location = [str(part) for part in problem["loc"]]
    if problem["type"] == "json_invalid" or len(location) < 2:
        return location[0]  # "body": the body as a whole
    return ".".join(location[1:])


# --- pages -----------------------------------------------------------------------------------

PAGE_HEADERS = {
    # The token in the address must not leak to another site, and the page is nobody's to frame.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}

_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body {{ font-family: sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem;
line-height: 1.6; }} button {{ font-size: 1rem; padding: .5rem 1.5rem; }}</style>
</head>
<body>
{body}
</body>
</html>
"""

CONFIRM_PAGE = _PAGE.format(
    title="退订营销邮件 · Unsubscribe",
    body="""<h1>退订营销邮件</h1>
<p>确认后，您将不再收到我们的营销邮件。服务和交易通知（如账户安全提醒）不受影响。</p>
<div lang="en">
<h1>Unsubscribe from marketing e-mails</h1>
<p>Once you confirm, we will send you no more marketing e-mails. Service and transaction notices
(such as account security alerts) still reach you.</p>
</div>
<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">确认退订 · Unsubscribe</button>
</form>""",
)

DONE_PAGE = _PAGE.format(
    title="已退订 · Unsubscribed",
    body="""<h1>您已退订</h1>
<p>我们将不再向您发送营销邮件。</p>
<div lang="en">
<h1>You are unsubscribed</h1>
<p>We will send you no more marketing e-mails.</p>
</div>""",
)

NOT_FOUND_PAGE = _PAGE.format(
    title="链接无效 · Link not valid",
    body="""<h1>链接无效</h1>
<p>这个退订链接无效。请使用邮件中的完整链接，或联系我们的客服。</p>
<div lang="en">
<h1>This link is not valid</h1>
<p>This unsubscribe link is not valid. Please use the whole link from the e-mail, or contact our
customer service.</p>
</div>""",
)


def _page(page: str, status: int) -> HTMLResponse:
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
