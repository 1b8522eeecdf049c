"""Client side: a channel interceptor that sends `authorization: Bearer <token>` (and the purpose
of the call, which the audit log records) with every unary call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from zhike_runtime.auth.access import PURPOSE_HEADER


class BearerToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str, purpose: str = "") -> None:
        self._metadata = [("authorization", f"Bearer {token}")]
        if purpose:
            self._metadata.append((PURPOSE_HEADER, purpose))

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = list(details.metadata or []) + self._metadata
        details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(details, request)
