"""TLS on the gRPC service port (RELIABILITY S1): server credentials from files, reloaded when the
files change, optional mTLS with a client CA, an optional allow-list of client identities, and the
client side for our own command lines.

- `ZHIKE_TLS_CERT_FILE` + `ZHIKE_TLS_KEY_FILE`: the service port speaks TLS only.
- `ZHIKE_TLS_CLIENT_CA_FILE`: mTLS; a client without a certificate signed by this CA (or with an
  expired one) fails the handshake, before any handler can run.
- `ZHIKE_TLS_ALLOWED_CLIENT_NAMES`: of those clients, only certificates naming one of these SAN DNS
  names or URIs (e.g. SPIFFE ids) may call; others get UNAUTHENTICATED, per call.

The files are re-read on the first connection after they change (a Kubernetes Secret volume
swaps them atomically; cert-manager renews them), so a rotation needs no restart. A new pair that
does not hold together (a key that does not match the certificate, half-written files) is not
taken: the server keeps the last good one and says so in the log.

The separate health port stays plaintext, for the kubelet's probes.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zhike_runtime.auth.permissions import PUBLIC_PREFIXES
from zhike_runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

# auth_context() keys grpc fills from the client certificate's subjectAltName.
_PEER_NAME_KEYS = ("peer_dns", "peer_uri")


class TlsConfigurationError(ValueError):
    """The TLS files cannot serve: unreadable, not PEM, or a key that does not match."""


@dataclass(frozen=True)
class _Material:
    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None


def _describe(files: Iterable[Path | None]) -> tuple[tuple[int, int, int, int], ...]:
    """What changes when a file is replaced: its inode, size and modification time. stat follows
    symlinks, so a Secret volume's `..data` swap shows up as a new inode."""
    described = []
    for path in files:
        if path is None:
            continue
        info = os.stat(path)
        described.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(described)


def _check(material: _Material) -> None:
    """Raises TlsConfigurationError naming the variable whose file is wrong."""
    try:
        chain = x509.load_pem_x509_certificates(material.certificate_chain)
    except ValueError as error:
        raise TlsConfigurationError("ZHIKE_TLS_CERT_FILE: not a PEM certificate chain") from error
    try:
        key = serialization.load_pem_private_key(material.private_key, password=None)
    except (ValueError, TypeError) as error:
        raise TlsConfigurationError(
            "ZHIKE_TLS_KEY_FILE: not an unencrypted PEM private key"
        ) from error
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise TlsConfigurationError(
            "ZHIKE_TLS_KEY_FILE does not match the first certificate in ZHIKE_TLS_CERT_FILE"
        )
    if material.client_ca is not None:
        try:
            x509.load_pem_x509_certificates(material.client_ca)
        except ValueError as error:
            raise TlsConfigurationError(
                "ZHIKE_TLS_CLIENT_CA_FILE: not a PEM certificate bundle"
            ) from error


class CertificateFiles:
    """The service port's certificate chain, private key and client CA, as files on disk.

    `fetch` is grpc's certificate-configuration fetcher: grpc calls it before every new
    connection's handshake, from its own threads. It answers None (keep what you have) unless a
    file changed and the new set holds together.
    """

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self._lock = threading.Lock()
        self._seen: tuple[tuple[int, int, int, int], ...] = ()
        self._current: _Material | None = None

    @property
    def requires_client_certificate(self) -> bool:
        return self.client_ca_file is not None

    def _paths(self) -> tuple[Path | None, ...]:
        return (self.cert_file, self.key_file, self.client_ca_file)

    def _read(self) -> _Material:
        return _Material(
            self.cert_file.read_bytes(),
            self.key_file.read_bytes(),
            self.client_ca_file.read_bytes() if self.client_ca_file else None,
        )

    def load(self) -> grpc.ServerCertificateConfiguration:
        """The configuration to start with; raises TlsConfigurationError when it cannot serve."""
        with self._lock:
            try:
                seen = _describe(self._paths())
                material = self._read()
            except OSError as error:
                raise TlsConfigurationError(
                    f"cannot read a TLS file: {error.strerror} ({error.filename})"
                ) from error
            _check(material)
            self._seen, self._current = seen, material
            return _configuration(material)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                seen = _describe(self._paths())
                if seen == self._seen:
                    return None
                material = self._read()
            except OSError as error:
                # Mid-rotation a file can be missing for a moment: keep serving, look again
                # on the next connection.
                log.warning(
                    "TLS files unreadable; keeping the current certificate",
                    extra={"reason": error.strerror, "file": str(error.filename)},
                )
                return None
            # Looked at once per change, whatever the outcome: a bad set is not re-read (and
            # re-logged) on every connection until the files change again.
            self._seen = seen
            if material == self._current:
                return None
            try:
                _check(material)
            except TlsConfigurationError as error:
                log.error(
                    "new TLS files refused; keeping the current certificate",
                    extra={"reason": str(error)},
                )
                return None
            self._current = material
            log.info("TLS certificate reloaded", extra={"file": str(self.cert_file)})
            return _configuration(material)


def _configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.certificate_chain)],
        root_certificates=material.client_ca,
    )


def certificate_files(settings: ServiceSettings) -> CertificateFiles | None:
    """The configured TLS files, or None when the service port is plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return CertificateFiles(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )


def server_credentials(files: CertificateFiles) -> grpc.ServerCredentials:
    """Credentials for `server.add_secure_port`, reloading from `files` on change."""
    initial = files.load()
    return grpc.dynamic_ssl_server_credentials(
        initial,
        files.fetch,
        require_client_authentication=files.requires_client_certificate,
    )


# --- allow-list of client identities -------------------------------------------------------


def client_names(context: grpc.aio.ServicerContext[Any, Any]) -> set[str]:
    """The SAN DNS names and URIs of the caller's verified client certificate (empty without)."""
    auth = context.auth_context() or {}
    return {
        value.decode("utf-8", "replace") for key in _PEER_NAME_KEYS for value in auth.get(key, ())
    }


Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]


class ClientNameAllowList(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses, with UNAUTHENTICATED and before the handler (or any inner interceptor) runs,
    every call whose client certificate names none of `allowed_names`. Public methods (health,
    reflection) stay open, as they do for tokens. Chain it first in the server's interceptors."""

    def __init__(self, allowed_names: Iterable[str]) -> None:
        self._allowed = frozenset(allowed_names)

    async def _admit(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        names = client_names(context)
        if names & self._allowed:
            return
        # Client certificates name services and channels, not customers: safe to log.
        log.warning(
            "client certificate not in the allow-list",
            extra={"method": method, "client_names": sorted(names)[:10]},
        )
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "the client certificate is not allowed to call this service",
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._guard_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._guard_unary(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._guard_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._guard_stream(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _guard_unary(self, method: str, behavior: Handler) -> Handler:
        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await self._admit(method, context)
            return await behavior(request, context)

        return guarded

    def _guard_stream(self, method: str, behavior: Handler) -> Handler:
        async def guarded(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            await self._admit(method, context)
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:  # a handler that writes with context.write and returns nothing
                await result

        return guarded


def allow_list_interceptors(settings: ServiceSettings) -> list[grpc.aio.ServerInterceptor]:
    """[ClientNameAllowList] when ZHIKE_TLS_ALLOWED_CLIENT_NAMES is set, else []."""
    if not settings.tls_allowed_client_names:
        return []
    return [ClientNameAllowList(settings.tls_allowed_client_names)]


# --- client side: our own command lines ----------------------------------------------------


def channel_credentials(
    *, ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> grpc.ChannelCredentials:
    """TLS to a service: `ca_file` verifies it (None: the system's roots); `cert_file` and
    `key_file` are the client certificate a service with mTLS asks for."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("--cert-file and --key-file go together")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes() if ca_file else None,
        private_key=key_file.read_bytes() if key_file else None,
        certificate_chain=cert_file.read_bytes() if cert_file else None,
    )


def add_client_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """--ca-file/--cert-file/--key-file; any of them switches the connection to TLS."""
    parser.add_argument(
        "--ca-file", type=Path, help="PEM CA bundle that signs the service's certificate (TLS)"
    )
    parser.add_argument(
        "--cert-file", type=Path, help="PEM client certificate, for a service that requires mTLS"
    )
    parser.add_argument("--key-file", type=Path, help="PEM private key of --cert-file")


def client_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """The credentials the TLS arguments ask for; None (plaintext) when none is given.
    Raises ValueError or OSError for an incomplete pair or an unreadable file."""
    if args.ca_file is None and args.cert_file is None and args.key_file is None:
        return None
    return channel_credentials(
        ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file
    )


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None, **kwargs: Any
) -> grpc.aio.Channel:
    """A TLS channel when `credentials` is given, plaintext otherwise."""
    if credentials is None:
        return grpc.aio.insecure_channel(target, **kwargs)
    return grpc.aio.secure_channel(target, credentials, **kwargs)
