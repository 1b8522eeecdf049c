"""S1: TLS and mTLS on the service port. A client with no certificate, a certificate from an
untrusted CA, an expired one, or one naming a client outside the allow-list never reaches a
handler; plaintext to the service port is refused; the health port stays plaintext; renewed
files are served to new connections without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import ValidationError

from zhike.testing.v1 import events_pb2
from zhike_runtime.app import Platform, RunningService, ServiceDefinition, Wiring
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.auth.permissions import MethodRule
from zhike_runtime.cli import build_parser, check_health
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.certificates import CertificateAuthority, Issued
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    SERVING,
    STAFF_ROLES,
    TEST_ISSUER,
    TEST_SETTINGS,
    authorised_channel,
    eventually,
    readiness,
    running_service,
)
from zhike_runtime.tls import (
    CertificateFiles,
    ClientNameAllowList,
    TlsConfigurationError,
    channel_credentials,
    client_credentials,
    server_credentials,
)

PROBE = "zhike.testing.v1.Probe"
ECHO = f"/{PROBE}/Echo"
TELLER = "teller-gateway.bank.test"
MOBILE = "spiffe://bank.test/ns/channels/sa/mobile-bff"


@dataclass
class Pki:
    """The bank's CA and, signed by it, the service's certificate for 127.0.0.1 and localhost."""

    bank: CertificateAuthority
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client(self, issued: Issued | None) -> grpc.ChannelCredentials:
        """Trusts the bank's CA; presents `issued` as the client certificate (None: none)."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.bank.pem,
            private_key=issued.key_pem if issued else None,
            certificate_chain=issued.cert_pem if issued else None,
        )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    bank = CertificateAuthority("Zhike Test Bank CA")
    cert_file, key_file = bank.server("localhost", "127.0.0.1").write(
        tmp_path / "tls.crt", tmp_path / "tls.key"
    )
    return Pki(bank, bank.write(tmp_path / "ca.crt"), cert_file, key_file)


def counting_probe(calls: list[str]) -> ServiceDefinition[ServiceSettings]:
    """A service whose one method counts its invocations."""

    async def echo(
        request: events_pb2.Ping, _context: grpc.aio.ServicerContext[Any, Any]
    ) -> events_pb2.Ping:
        calls.append(request.key)
        return request

    def wire(_platform: Platform[ServiceSettings]) -> Wiring:
        return Wiring(grpc_registrations=[lambda server: _register_echo(server, echo)])

    return ServiceDefinition(
        name="probe",
        settings_type=ServiceSettings,
        grpc_service_names=(PROBE,),
        migrations=None,
        stream=None,
        wire=wire,
        access_rules={ECHO: MethodRule("identity.party.read")},
    )


def _register_echo(server: grpc.aio.Server, behaviour: Any) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=events_pb2.Ping.FromString,
        response_serializer=events_pb2.Ping.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(PROBE, {"Echo": handler}),)
    )


@asynccontextmanager
async def tls_probe(
    tmp_path: Path, nats: NatsServer, **tls: Any
) -> AsyncIterator[tuple[RunningService[ServiceSettings], list[str]]]:
    calls: list[str] = []
    async with running_service(
        counting_probe(calls),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        nats_url=nats.url,
        **tls,
    ) as service:
        yield service, calls


@pytest.fixture
async def mtls(
    tmp_path: Path, nats_server: NatsServer, pki: Pki
) -> AsyncIterator[tuple[RunningService[ServiceSettings], list[str]]]:
    async with tls_probe(
        tmp_path,
        nats_server,
        tls_cert_file=pki.cert_file,
        tls_key_file=pki.key_file,
        tls_client_ca_file=pki.ca_file,
    ) as running:
        yield running


def secure_channel(port: int, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
    """A TLS channel carrying a valid bearer token, on a connection of its own (no subchannel
    shared with an earlier channel, so each one is a fresh handshake)."""
    token = TEST_ISSUER.mint(STAFF_ROLES, subject="test-user")
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}",
        credentials,
        options=[("grpc.use_local_subchannel_pool", 1)],
        interceptors=[BearerToken(token)],
    )


async def echo(ch: grpc.aio.Channel, key: str = "ping") -> str:
    stub = ch.unary_unary(
        ECHO,
        request_serializer=events_pb2.Ping.SerializeToString,
        response_deserializer=events_pb2.Ping.FromString,
    )
    response: events_pb2.Ping = await stub(events_pb2.Ping(key=key), timeout=5)
    return response.key


async def echo_over_tls(port: int, credentials: grpc.ChannelCredentials) -> str:
    async with secure_channel(port, credentials) as ch:
        return await echo(ch)


async def refusal(port: int, credentials: grpc.ChannelCredentials) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await echo_over_tls(port, credentials)
    return raised.value


# --- mTLS on a running service --------------------------------------------------------------


async def test_a_client_certificate_from_the_bank_ca_is_served(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki
) -> None:
    service, calls = mtls
    good = pki.bank.client(dns_names=[TELLER])
    assert await echo_over_tls(service.grpc_port, pki.client(good)) == "ping"
    assert calls == ["ping"]


async def test_a_client_without_a_certificate_fails_the_handshake(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki
) -> None:
    service, calls = mtls
    error = await refusal(service.grpc_port, pki.client(None))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert calls == []


async def test_a_client_certificate_from_an_untrusted_ca_fails_the_handshake(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki
) -> None:
    service, calls = mtls
    impostor = CertificateAuthority("Impostor CA").client(dns_names=[TELLER])
    error = await refusal(service.grpc_port, pki.client(impostor))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert calls == []


async def test_an_expired_client_certificate_fails_the_handshake(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki
) -> None:
    service, calls = mtls
    expired = pki.bank.client(dns_names=[TELLER], expired=True)
    error = await refusal(service.grpc_port, pki.client(expired))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert calls == []


async def test_plaintext_to_the_tls_port_is_refused(
    mtls: tuple[RunningService[ServiceSettings], list[str]],
) -> None:
    service, calls = mtls
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as plaintext:
            await echo(plaintext)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert calls == []


async def test_the_health_port_still_answers_plaintext(
    mtls: tuple[RunningService[ServiceSettings], list[str]],
) -> None:
    service, _calls = mtls

    async def ready() -> bool:
        return await readiness(service.health_port) == SERVING

    await eventually(ready)


async def test_a_renewed_server_certificate_reaches_new_connections_without_a_restart(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki
) -> None:
    service, calls = mtls
    client = pki.bank.client(dns_names=[TELLER])
    renewed_ca = CertificateAuthority("Zhike Renewed CA")
    trusts_only_renewed = grpc.ssl_channel_credentials(
        renewed_ca.pem, client.key_pem, client.cert_pem
    )
    await refusal(service.grpc_port, trusts_only_renewed)

    renewed_ca.server("localhost", "127.0.0.1").write(pki.cert_file, pki.key_file)

    assert await echo_over_tls(service.grpc_port, trusts_only_renewed) == "ping"
    await refusal(service.grpc_port, pki.client(client))  # the old chain is no longer served
    assert calls == ["ping"]


async def test_a_renewed_client_ca_decides_which_client_certificates_pass(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki
) -> None:
    service, calls = mtls
    next_ca = CertificateAuthority("Zhike Next Client CA")
    next_client = next_ca.client(dns_names=[TELLER])
    await refusal(service.grpc_port, pki.client(next_client))

    next_ca.write(pki.ca_file)

    assert await echo_over_tls(service.grpc_port, pki.client(next_client)) == "ping"
    await refusal(service.grpc_port, pki.client(pki.bank.client(dns_names=[TELLER])))
    assert calls == ["ping"]


async def test_a_certificate_that_does_not_match_its_key_is_not_taken(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki, tmp_path: Path
) -> None:
    service, calls = mtls
    client = pki.bank.client(dns_names=[TELLER])
    # Half a rotation: a new certificate lands, its key does not (yet).
    pki.bank.server("localhost", "127.0.0.1").write(pki.cert_file, tmp_path / "other.key")

    assert await echo_over_tls(service.grpc_port, pki.client(client)) == "ping"
    assert calls == ["ping"]


async def test_zhike_health_reaches_the_tls_port_with_a_client_certificate(
    mtls: tuple[RunningService[ServiceSettings], list[str]], pki: Pki, tmp_path: Path
) -> None:
    service, _calls = mtls
    cert_file, key_file = pki.bank.client(dns_names=["helm-test.bank.test"]).write(
        tmp_path / "client.crt", tmp_path / "client.key"
    )
    target = f"127.0.0.1:{service.grpc_port}"
    tls = [
        "--ca-file",
        str(pki.ca_file),
        "--cert-file",
        str(cert_file),
        "--key-file",
        str(key_file),
    ]
    args = build_parser().parse_args(["health", "--target", target, *tls])
    assert await check_health(target, "liveness", 5, client_credentials(args)) == "SERVING"


# --- TLS without client certificates --------------------------------------------------------


async def test_without_a_client_ca_any_tls_client_is_served(
    tmp_path: Path, nats_server: NatsServer, pki: Pki
) -> None:
    async with tls_probe(
        tmp_path, nats_server, tls_cert_file=pki.cert_file, tls_key_file=pki.key_file
    ) as (service, calls):
        assert await echo_over_tls(service.grpc_port, pki.client(None)) == "ping"
        with pytest.raises(grpc.aio.AioRpcError):
            async with authorised_channel(f"127.0.0.1:{service.grpc_port}") as plaintext:
                await echo(plaintext)
    assert calls == ["ping"]


# --- allow-list of client certificate names -------------------------------------------------


@asynccontextmanager
async def allow_listed_server(pki: Pki, allowed: list[str]) -> AsyncIterator[tuple[int, list[str]]]:
    """A bare grpc.aio server with mTLS and the allow-list in front of a counting handler (and
    health, which stays open)."""
    calls: list[str] = []

    async def behaviour(
        request: events_pb2.Ping, _context: grpc.aio.ServicerContext[Any, Any]
    ) -> events_pb2.Ping:
        calls.append(request.key)
        return request

    server = grpc.aio.server(interceptors=[ClientNameAllowList(allowed)])
    _register_echo(server, behaviour)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    files = CertificateFiles(pki.cert_file, pki.key_file, pki.ca_file)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(files))
    await server.start()
    try:
        yield port, calls
    finally:
        await server.stop(0)


async def test_a_client_certificate_outside_the_allow_list_is_unauthenticated(
    pki: Pki,
) -> None:
    async with allow_listed_server(pki, [TELLER, MOBILE]) as (port, calls):
        stranger = pki.bank.client(dns_names=["batch-export.bank.test"])
        error = await refusal(port, pki.client(stranger))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "client certificate" in (error.details() or "")
        assert calls == []


async def test_client_certificates_named_in_the_allow_list_are_served(pki: Pki) -> None:
    async with allow_listed_server(pki, [TELLER, MOBILE]) as (port, calls):
        by_dns = pki.bank.client(dns_names=[TELLER])
        by_uri = pki.bank.client(uris=[MOBILE])
        assert await echo_over_tls(port, pki.client(by_dns)) == "ping"
        assert await echo_over_tls(port, pki.client(by_uri)) == "ping"
        assert calls == ["ping", "ping"]


async def test_health_stays_open_to_any_client_the_ca_signed(pki: Pki) -> None:
    async with allow_listed_server(pki, [TELLER]) as (port, _calls):
        stranger = pki.bank.client(dns_names=["batch-export.bank.test"])
        async with secure_channel(port, pki.client(stranger)) as ch:
            response = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
        assert response.status == SERVING


async def test_a_running_service_refuses_a_client_outside_the_allow_list(
    tmp_path: Path, nats_server: NatsServer, pki: Pki
) -> None:
    async with tls_probe(
        tmp_path,
        nats_server,
        tls_cert_file=pki.cert_file,
        tls_key_file=pki.key_file,
        tls_client_ca_file=pki.ca_file,
        tls_allowed_client_names=[TELLER],
    ) as (service, calls):
        stranger = pki.bank.client(dns_names=["batch-export.bank.test"])
        error = await refusal(service.grpc_port, pki.client(stranger))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert calls == []


# --- configuration --------------------------------------------------------------------------


def settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(**(TEST_SETTINGS | overrides))


def test_a_certificate_without_its_key_stops_start_up_naming_both_variables(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="ZHIKE_TLS_CERT_FILE and ZHIKE_TLS_KEY_FILE"):
        settings(tls_cert_file=pki.cert_file)


def test_a_missing_certificate_file_stops_start_up(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ValidationError, match="tls_cert_file"):
        settings(tls_cert_file=tmp_path / "absent.crt", tls_key_file=pki.key_file)


def test_an_allow_list_needs_a_client_ca(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="ZHIKE_TLS_ALLOWED_CLIENT_NAMES needs"):
        settings(
            tls_cert_file=pki.cert_file,
            tls_key_file=pki.key_file,
            tls_allowed_client_names=[TELLER],
        )


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(
    tmp_path: Path, pki: Pki
) -> None:
    _, other_key = pki.bank.server("localhost").write(tmp_path / "o.crt", tmp_path / "o.key")
    with pytest.raises(TlsConfigurationError, match="ZHIKE_TLS_KEY_FILE does not match"):
        server_credentials(CertificateFiles(pki.cert_file, other_key, None))


def test_client_credentials_need_the_certificate_and_its_key_together(pki: Pki) -> None:
    with pytest.raises(ValueError, match="--cert-file and --key-file"):
        channel_credentials(ca_file=pki.ca_file, cert_file=pki.cert_file)
