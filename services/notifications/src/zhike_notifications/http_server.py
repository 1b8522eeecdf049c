"""An ASGI app served by uvicorn inside the running event loop, beside whatever else the program
runs there (the local gateways' SMTP server, the service's gRPC server and consumers).

uvicorn's own `run` owns the process: it installs SIGINT/SIGTERM handlers and leaves when they
fire. Here whoever started the server decides when it stops (the CLI on a signal, a test when its
block ends), and port 0 picks a free port whose number is known once `start` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT_SECONDS = 10.0


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """`port` is the bound one once started (port 0 picks a free one)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        # A slow answer does not hold up a stop for long.
        timeout_graceful_shutdown: int = 1,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._timeout_graceful_shutdown = timeout_graceful_shutdown
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Binds, then returns once uvicorn accepts connections. Raises OSError when the port
        cannot be bound, RuntimeError when uvicorn does not start."""
        if self._task is not None:
            raise RuntimeError("the HTTP server is already running")
        # Bound here rather than by uvicorn, so that port 0's choice is known.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,  # the process's own (JSON) logging
            access_log=False,  # request lines carry paths, and some paths carry tokens
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=self._timeout_graceful_shutdown,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        try:
            while not self._server.started:
                if self._task.done() or loop.time() > deadline:
                    await self.stop()  # raises uvicorn's own error when it failed with one
                    raise RuntimeError("the HTTP server did not start")
                await asyncio.sleep(0.01)
        except BaseException:  # cancelled while starting: nothing left listening
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stops accepting, lets requests in flight finish (up to the graceful timeout)."""
        server, task, listener = self._server, self._task, self._listener
        self._server = self._task = self._listener = None
        try:
            if server is not None and task is not None:
                server.should_exit = True
                await task
        finally:
            if listener is not None:
                listener.close()  # uvicorn closes it too; a second close does nothing


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[HttpServer]:
    """`app` served in this event loop for the block."""
    server = HttpServer(app, host=host, port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
