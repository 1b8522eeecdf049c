"""Throwaway X.509 certificates for TLS tests: a CA that issues server and client certificates.

EC P-256 keys, so a test builds a whole PKI in milliseconds. Files are written with an atomic
rename, the way a Kubernetes Secret volume swaps its contents, so a server that re-reads them
never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def write_atomically(path: Path, data: bytes) -> Path:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_bytes(data)
    os.replace(staging, path)
    return path


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_file: Path, key_file: Path) -> tuple[Path, Path]:
        """Writes (or replaces) the PEM files; the key file is readable by its owner only."""
        write_atomically(key_file, self.key_pem)
        key_file.chmod(0o600)
        return write_atomically(cert_file, self.cert_pem), key_file


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alternative_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class CertificateAuthority:
    """A self-signed CA; `server` and `client` issue leaf certificates signed by it."""

    def __init__(self, common_name: str = "Zhike Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        public_key = self.key.public_key()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        return write_atomically(path, self.pem)

    def server(self, *hosts: str, valid_for: dt.timedelta = dt.timedelta(days=1)) -> Issued:
        """A server certificate for `hosts` (DNS names or IP addresses)."""
        return self._issue(
            hosts[0],
            [_alternative_name(h) for h in hosts],
            ExtendedKeyUsageOID.SERVER_AUTH,
            valid_for=valid_for,
        )

    def client(
        self,
        *,
        dns_names: Sequence[str] = (),
        uris: Sequence[str] = (),
        expired: bool = False,
    ) -> Issued:
        """A client certificate naming its holder by SAN DNS names and URIs (e.g. SPIFFE ids)."""
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        common_name = (list(dns_names) + list(uris) + ["client"])[0][:64]
        return self._issue(
            common_name,
            names,
            ExtendedKeyUsageOID.CLIENT_AUTH,
            valid_for=dt.timedelta(days=1),
            expired=expired,
        )

    def _issue(
        self,
        common_name: str,
        names: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        *,
        valid_for: dt.timedelta,
        expired: bool = False,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        # An expired certificate: valid for a day that ended yesterday.
        start = now - dt.timedelta(days=2) if expired else now - dt.timedelta(minutes=5)
        end = now - dt.timedelta(days=1) if expired else now + valid_for
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)
