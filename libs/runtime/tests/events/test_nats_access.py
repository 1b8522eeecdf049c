"""S9, the connection itself: the bus and `zhike dlq` reach a TLS-only nats-server with the CA that
signs its certificate (and a client certificate where the server asks for one), and fail the
handshake without it; NKey and TLS settings are read once, checked together, and reach nats-py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.errors import Error as NatsError
from pydantic import ValidationError

from zhike_runtime import cli
from zhike_runtime.events.bus import EventBus, NatsAccess, StreamSpec, connect_to_nats
from zhike_runtime.settings import NatsSettings, describe_errors
from zhike_runtime.testing.certificates import CertificateAuthority
from zhike_runtime.testing.nats_users import permissioned_nats_server
from zhike_runtime.testing.processes import NatsServer, NatsTls

HANDSHAKE_ERRORS = (NatsError, OSError, TimeoutError)


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority("Bank NATS CA")
    server_cert, server_key = ca.server("127.0.0.1", "localhost").write(
        tmp_path / "server.crt", tmp_path / "server.key"
    )
    client_cert, client_key = ca.client(dns_names=["identity.zhike"]).write(
        tmp_path / "client.crt", tmp_path / "client.key"
    )
    return Pki(
        ca.write(tmp_path / "ca.crt"),
        server_cert,
        server_key,
        client_cert,
        client_key,
        CertificateAuthority("Someone else's CA").write(tmp_path / "other-ca.crt"),
    )


def started(server: NatsServer) -> Iterator[NatsServer]:
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_server(pki: Pki, tmp_path: Path) -> Iterator[NatsServer]:
    yield from started(NatsServer(tmp_path / "tls", tls=NatsTls(pki.server_cert, pki.server_key)))


@pytest.fixture
def mtls_server(pki: Pki, tmp_path: Path) -> Iterator[NatsServer]:
    tls = NatsTls(pki.server_cert, pki.server_key, ca_file=pki.ca_file, verify=True)
    yield from started(NatsServer(tmp_path / "mtls", tls=tls))


async def can_connect(server: NatsServer, access: NatsAccess) -> bool:
    connection = await connect_to_nats(
        server.url, "test", access, connect_timeout=2, allow_reconnect=False
    )
    await connection.close()
    return True


async def test_the_bus_connects_over_tls_with_the_ca_and_its_nkey(pki: Pki, tmp_path: Path) -> None:
    nats = permissioned_nats_server(tmp_path / "nats", tls=NatsTls(pki.server_cert, pki.server_key))
    nats.server.start()
    try:
        assert nats.url.startswith("tls://")
        bus = EventBus(
            nats.url, "zhike-identity", access=nats.access("identity", tls_ca_file=pki.ca_file)
        )
        bus.add_stream(StreamSpec("ZHIKE_IDENTITY", ("zhike.identity.v1.>",)))
        await asyncio.wait_for(bus.run(), timeout=15)
        assert bus.is_connected  # connected, and its streams declared
        await bus.close()
    finally:
        nats.server.stop()


async def test_without_the_ca_the_server_is_not_trusted(tls_server: NatsServer) -> None:
    with pytest.raises(HANDSHAKE_ERRORS):
        await can_connect(tls_server, NatsAccess())


async def test_a_server_certificate_from_another_ca_is_not_trusted(
    tls_server: NatsServer, pki: Pki
) -> None:
    with pytest.raises(HANDSHAKE_ERRORS):
        await can_connect(tls_server, NatsAccess(tls_ca_file=pki.other_ca_file))


async def test_a_server_that_verifies_clients_needs_our_certificate(
    mtls_server: NatsServer, pki: Pki
) -> None:
    with pytest.raises(HANDSHAKE_ERRORS):
        await can_connect(mtls_server, NatsAccess(tls_ca_file=pki.ca_file))
    mutual = NatsAccess(
        tls_ca_file=pki.ca_file, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key
    )
    assert await can_connect(mtls_server, mutual)


async def test_tls_first_needs_the_client_to_start_with_tls_too(pki: Pki, tmp_path: Path) -> None:
    tls = NatsTls(pki.server_cert, pki.server_key, handshake_first=True)
    server = NatsServer(tmp_path / "tls-first", tls=tls)
    server.start()
    try:
        assert await can_connect(
            server, NatsAccess(tls_ca_file=pki.ca_file, tls_handshake_first=True)
        )
        with pytest.raises(HANDSHAKE_ERRORS):
            await can_connect(server, NatsAccess(tls_ca_file=pki.ca_file))
    finally:
        server.stop()


def test_nats_settings_reach_the_connection(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, tmp_path: Path
) -> None:
    seed = tmp_path / "profile.nk"
    seed.write_text("SU...")
    for name, value in {
        "ZHIKE_NATS_URL": "tls://nats-0:4222,tls://nats-1:4222",
        "ZHIKE_NATS_NKEY_SEED_FILE": str(seed),
        "ZHIKE_NATS_TLS_CA_FILE": str(pki.ca_file),
        "ZHIKE_NATS_TLS_CERT_FILE": str(pki.client_cert),
        "ZHIKE_NATS_TLS_KEY_FILE": str(pki.client_key),
        "ZHIKE_NATS_TLS_HANDSHAKE_FIRST": "true",
    }.items():
        monkeypatch.setenv(name, value)
    options = NatsAccess.from_settings(NatsSettings(), user="profile").connect_options()
    assert options["nkeys_seed"] == str(seed)
    assert options["inbox_prefix"] == "_INBOX.profile"
    assert options["tls_handshake_first"] is True
    assert "user_credentials" not in options
    assert options["tls"].verify_mode.name == "CERT_REQUIRED"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            {"ZHIKE_NATS_CREDS_FILE": "{seed}", "ZHIKE_NATS_NKEY_SEED_FILE": "{seed}"},
            "ZHIKE_NATS_CREDS_FILE and ZHIKE_NATS_NKEY_SEED_FILE",
        ),
        ({"ZHIKE_NATS_TLS_CERT_FILE": "{cert}"}, "ZHIKE_NATS_TLS_CERT_FILE and"),
        ({"ZHIKE_NATS_TLS_CA_FILE": "{ca}"}, "needs tls:// URLs"),
        ({"ZHIKE_NATS_NKEY_SEED_FILE": "/nowhere/identity.nk"}, "ZHIKE_NATS_NKEY_SEED_FILE"),
    ],
)
def test_nats_settings_that_do_not_hold_together_are_refused_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch,
    pki: Pki,
    tmp_path: Path,
    variables: dict[str, str],
    named: str,
) -> None:
    seed = tmp_path / "any.nk"
    seed.write_text("SU...")
    files = {"seed": seed, "cert": pki.client_cert, "ca": pki.ca_file}
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(**files))
    with pytest.raises(ValidationError) as refused:
        NatsSettings()
    assert named in "\n".join(describe_errors(refused.value))


async def test_zhike_dlq_connects_with_the_configured_nkey_and_without_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nats = permissioned_nats_server(tmp_path / "nats")
    nats.server.start()
    try:
        anonymous = await asyncio.to_thread(cli.main, ["dlq", "list", "--nats", nats.url])
        assert anonymous == 1
        assert "Authorization Violation" in capsys.readouterr().err

        # From the environment, as inside a pod; the command line names the seed file too.
        monkeypatch.setenv("ZHIKE_NATS_URL", nats.url)
        monkeypatch.setenv("ZHIKE_NATS_NKEY_SEED_FILE", str(nats.seed_files["dlq-admin"]))
        assert await asyncio.to_thread(cli.main, ["dlq", "list"]) == 0
        assert capsys.readouterr().out.endswith("0 dead letter(s)\n")
        monkeypatch.delenv("ZHIKE_NATS_NKEY_SEED_FILE")
        seed = str(nats.seed_files["dlq-admin"])
        assert await asyncio.to_thread(cli.main, ["dlq", "list", "--nkey-seed", seed]) == 0
    finally:
        nats.server.stop()
