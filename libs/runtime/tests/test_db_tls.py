"""PostgreSQL over TLS with sslmode=verify-full: the service connects only to a server whose
certificate the configured CA signed, for the host name it dialled."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from zhike_runtime.db import Database, database_for, postgres_ssl
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.certificates import CertificateAuthority
from zhike_runtime.testing.processes import PostgresCluster, throwaway_postgres
from zhike_runtime.testing.services import TEST_SETTINGS


@dataclass
class TlsPostgres:
    cluster: PostgresCluster
    ca_file: Path  # signs the server's certificate, issued for "localhost" only
    other_ca_file: Path


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPostgres]:
    directory = tmp_path_factory.mktemp("pg-tls")
    database_ca = CertificateAuthority("Zhike Test Database CA")
    server = database_ca.server("localhost").write(
        directory / "server.crt", directory / "server.key"
    )
    with throwaway_postgres(server_certificate=server) as cluster:
        yield TlsPostgres(
            cluster,
            database_ca.write(directory / "ca.crt"),
            CertificateAuthority("Someone Else's CA").write(directory / "other-ca.crt"),
        )


async def connection_uses_tls(database: Database) -> bool:
    try:
        async with database.engine.connect() as connection:
            in_tls = await connection.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            return bool(in_tls)
    finally:
        await database.dispose()


async def test_verify_full_with_the_database_ca_connects_over_tls(
    tls_postgres: TlsPostgres,
) -> None:
    url = tls_postgres.cluster.create_database().replace("@127.0.0.1:", "@localhost:")
    settings = ServiceSettings(
        **(
            TEST_SETTINGS
            | {
                "database_url": url,
                "database_ssl_mode": "verify-full",
                "database_ssl_root_cert": tls_postgres.ca_file,
            }
        )
    )
    assert await connection_uses_tls(database_for(settings))


async def test_verify_full_refuses_a_server_the_configured_ca_did_not_sign(
    tls_postgres: TlsPostgres,
) -> None:
    url = tls_postgres.cluster.create_database().replace("@127.0.0.1:", "@localhost:")
    database = Database(url, tls=postgres_ssl("verify-full", tls_postgres.other_ca_file))
    with pytest.raises(ssl.SSLCertVerificationError) as raised:
        await connection_uses_tls(database)
    assert "unable to get local issuer certificate" in str(raised.value)  # i.e. untrusted


async def test_verify_full_refuses_a_server_reached_by_a_name_its_certificate_lacks(
    tls_postgres: TlsPostgres,
) -> None:
    url = tls_postgres.cluster.create_database()  # 127.0.0.1; the certificate names localhost
    database = Database(url, tls=postgres_ssl("verify-full", tls_postgres.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        await connection_uses_tls(database)


async def test_verify_ca_checks_the_chain_but_not_the_name(tls_postgres: TlsPostgres) -> None:
    url = tls_postgres.cluster.create_database()
    database = Database(url, tls=postgres_ssl("verify-ca", tls_postgres.ca_file))
    assert await connection_uses_tls(database)


def test_verify_full_without_a_root_certificate_stops_start_up() -> None:
    with pytest.raises(ValueError, match="ZHIKE_DATABASE_SSL_ROOT_CERT"):
        ServiceSettings(
            **(
                TEST_SETTINGS
                | {
                    "database_url": "postgresql+asyncpg://zhike@db.bank.test/zhike",
                    "database_ssl_mode": "verify-full",
                }
            )
        )
