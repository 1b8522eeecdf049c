"""Client side: a channel interceptor that sends `authorization: Bearer <token>` (and the purpose
of the call, which the audit log records) with every unary call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from zhike_runtime.auth.access import PURPOSE_HEADER


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """`token`: the token, or a function that answers the current one, asked before each call
    (a service's token read from a mounted Secret that is rotated while the channel is open)."""

    def __init__(self, token: str | Callable[[], str], purpose: str = "") -> None:
        self._token = token
        self._purpose = [(PURPOSE_HEADER, purpose)] if purpose else []

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        token = self._token if isinstance(self._token, str) else self._token()
        metadata = [
            *(details.metadata or []),
            ("authorization", f"Bearer {token}"),
            *self._purpose,
        ]
        details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(details, request)
