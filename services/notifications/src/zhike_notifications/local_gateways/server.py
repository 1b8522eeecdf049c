"""Both local gateways — the HTTP SMS and push gateway and the SMTP server — in one event loop,
sharing their stores and fault controls. `running_gateways` runs them in-process (tests and
benchmarks); `python -m zhike_notifications.local_gateways` as a process (`make run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from zhike_notifications.domain.model import Channel
from zhike_notifications.http_server import HttpServer
from zhike_notifications.local_gateways.control import FaultControl
from zhike_notifications.local_gateways.http_gateway import http_gateway_app
from zhike_notifications.local_gateways.smtp_gateway import (
    AIOSMTPD_LOGGER,
    SmtpGatewayHandler,
    smtp_protocol,
)
from zhike_notifications.local_gateways.store import SUFFIXES, MessageStore, channel_directory

CHANNELS = (Channel.SMS, Channel.PUSH, Channel.EMAIL)


class LocalGateways:
    """Port 0 picks a free port; `http_port` and `smtp_port` are the bound ones once started."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        smtp_port: int = 0,
        api_key: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.host = host
        self.http_port = http_port
        self.smtp_port = smtp_port
        self.stores = {
            channel: MessageStore(channel_directory(state_dir, channel), SUFFIXES[channel])
            for channel in CHANNELS
        }
        self.controls = {channel: FaultControl(channel) for channel in CHANNELS}
        self._api_key = api_key
        self._smtp: asyncio.Server | None = None
        self._http: HttpServer | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def directory(self, channel: Channel) -> Path:
        return self.stores[channel].directory

    async def start(self) -> None:
        # aiosmtpd logs every envelope address at INFO.
        logger = logging.getLogger(AIOSMTPD_LOGGER)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        for store in self.stores.values():
            store.directory.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        handler = SmtpGatewayHandler(self.stores[Channel.EMAIL], self.controls[Channel.EMAIL])
        self._smtp = await loop.create_server(
            lambda: smtp_protocol(handler, loop), self.host, self.smtp_port
        )
        self.smtp_port = self._smtp.sockets[0].getsockname()[1]

        app = http_gateway_app(
            {c: self.stores[c] for c in (Channel.SMS, Channel.PUSH)}, self.controls, self._api_key
        )
        # The CLI stops it on SIGINT/SIGTERM, a test when its block ends.
        self._http = HttpServer(app, host=self.host, port=self.http_port)
        try:
            await self._http.start()
        except BaseException:  # the SMTP server is not left running
            await self.stop()
            raise
        self.http_port = self._http.port

    async def stop(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.stop()
        if self._smtp is not None:
            self._smtp.close()
            await self._smtp.wait_closed()
            self._smtp = None


@contextlib.asynccontextmanager
async def running_gateways(
    state_dir: Path,
    *,
    host: str = "127.0.0.1",
    http_port: int = 0,
    smtp_port: int = 0,
    api_key: str | None = None,
) -> AsyncIterator[LocalGateways]:
    """Both gateways in this event loop, storing under `state_dir/gateways/`, for the block."""
    gateways = LocalGateways(
        state_dir, host=host, http_port=http_port, smtp_port=smtp_port, api_key=api_key
    )
    await gateways.start()
    try:
        yield gateways
    finally:
        await gateways.stop()
