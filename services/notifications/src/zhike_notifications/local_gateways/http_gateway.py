"""The local HTTP SMS and push gateway: the provider API `providers/http.py` speaks, and the
control endpoint that makes it misbehave.

    POST /v1/sms  /v1/push     store the message (once per idempotency key) → {"message_id"}
    GET  /_control             the fault in force per channel
    POST /_control             {"channel": "sms", "mode": "5xx", "count": 3} or {"delay_ms": 500};
                               no channel: every channel (e-mail included: the SMTP server too)
    DELETE /_control           back to normal, every channel
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from zhike_notifications.domain.model import Channel
from zhike_notifications.local_gateways.control import Fault, FaultControl, FaultMode
from zhike_notifications.local_gateways.store import MessageStore
from zhike_notifications.providers.http import IDEMPOTENCY_HEADER, PATHS

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 200


class SmsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out_id: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    to: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1, max_length=4000)


class PushRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out_id: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    device_token: str = Field(min_length=1, max_length=4096)
    title: str = Field(default="", max_length=256)
    body: str = Field(min_length=1, max_length=4000)


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel | None = None  # None: every channel
    mode: FaultMode = FaultMode.OK
    count: int | None = None
    delay_ms: int = 0
    status: int | None = None
    retry_after: int | None = None


def http_gateway_app(
    stores: Mapping[Channel, MessageStore],
    controls: Mapping[Channel, FaultControl],
    api_key: str | None = None,
) -> FastAPI:
    """The gateway's ASGI app over the stores and fault controls of every channel."""
    app = FastAPI(title="Zhike local SMS and push gateway", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the input (the phone number, the text): fields only here.
        detail = [
            {"field": ".".join(str(part) for part in problem["loc"][1:]), "problem": problem["msg"]}
            for problem in error.errors()
        ]
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    async def receive(
        channel: Channel,
        out_id: str,
        idempotency_key: str | None,
        authorization: str | None,
        fields: dict[str, str],
    ) -> JSONResponse:
        if api_key is not None and not secrets.compare_digest(
            (authorization or "").encode(), f"Bearer {api_key}".encode()
        ):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        if idempotency_key is not None and idempotency_key != out_id:
            return JSONResponse({"error": "idempotency_key_mismatch"}, status_code=400)
        fault = controls[channel].take()
        status = fault.answer_status(channel)
        if status is not None:
            await asyncio.sleep(fault.delay_ms / 1000)
            headers = {}
            retry_after = fault.retry_after if fault.retry_after is not None else 1
            if status == 429 or status >= 500:
                headers["Retry-After"] = str(retry_after)
            logger.info(
                "gateway answered with a fault",
                extra={"channel": channel.value, "out_id": out_id, "status": status},
            )
            return JSONResponse({"error": "gateway_control"}, status_code=status, headers=headers)
        record = {
            "channel": channel.value,
            "out_id": out_id,
            "message_id": f"{channel.value}-{uuid.uuid4().hex}",
            "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            **fields,
        }
        content = json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8")
        stored = stores[channel].put(out_id, content)
        if not stored.created:
            record = json.loads(stored.path.read_text(encoding="utf-8"))
        logger.info(
            "gateway stored a message" if stored.created else "gateway already had the message",
            extra={"channel": channel.value, "out_id": out_id, "file": stored.path.name},
        )
        # Late answer: the message is stored, the sender may give up waiting for the answer.
        await asyncio.sleep(fault.delay_ms / 1000)
        return JSONResponse({"message_id": record["message_id"], "duplicate": not stored.created})

    @app.post(PATHS[Channel.SMS])
    async def send_sms(
        request: SmsRequest,
        idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        return await receive(
            Channel.SMS,
            request.out_id,
            idempotency_key,
            authorization,
            {"to": request.to, "text": request.text},
        )

    @app.post(PATHS[Channel.PUSH])
    async def send_push(
        request: PushRequest,
        idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        return await receive(
            Channel.PUSH,
            request.out_id,
            idempotency_key,
            authorization,
            {"device_token": request.device_token, "title": request.title, "body": request.body},
        )

    def control_state() -> dict[str, Any]:
        return {channel.value: control.state() for channel, control in controls.items()}

    @app.get("/_control")
    async def get_control() -> dict[str, Any]:
        return control_state()

    @app.post("/_control")
    async def set_control(request: ControlRequest) -> dict[str, Any]:
        fault = Fault(
            mode=request.mode,
            count=request.count,
            delay_ms=request.delay_ms,
            status=request.status,
            retry_after=request.retry_after,
        )
        if request.channel is not None and request.channel not in controls:
            names = ", ".join(c.value for c in controls)
            raise HTTPException(
                status_code=422, detail=[{"field": "channel", "problem": f"one of {names}"}]
            )
        targets = [request.channel] if request.channel is not None else list(controls)
        # A problem found for several channels is named once.
        problems = {problem: None for channel in targets for problem in fault.problems(channel)}
        if problems:
            detail = [{"field": field, "problem": why} for field, why in problems]
            raise HTTPException(status_code=422, detail=detail)
        for channel in targets:
            controls[channel].set(fault)
        logger.info(
            "gateway fault set",
            extra={"channels": [c.value for c in targets], "mode": fault.mode.value},
        )
        return control_state()

    @app.delete("/_control")
    async def reset_control() -> dict[str, Any]:
        for control in controls.values():
            control.reset()
        return control_state()

    return app
