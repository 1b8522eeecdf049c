"""A development token issuer for `make run` and the tests: a throwaway ES256 signing key and
its JWKS in a state directory, and tokens minted with it. The services verify these exactly as
they verify the bank's identity provider's tokens; only the key set differs. Never used in a
cluster: `zhike token` refuses when ZHIKE_PROFILE=production.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEVELOPMENT_ISSUER = "https://zhike.invalid/development-issuer"
DEVELOPMENT_AUDIENCE = "zhike"
KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"


class DevelopmentIssuer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key_file = directory / KEY_FILE
        self.jwks_file = directory / JWKS_FILE
        if self.key_file.exists():
            loaded = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.key_file}: not an EC private key")
            self._key = loaded
        else:
            self._key = ec.generate_private_key(ec.SECP256R1())
            directory.mkdir(parents=True, exist_ok=True)
            pem = self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(pem)
        public_jwk: dict[str, Any] = json.loads(
            jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key())
        )
        self.kid = "dev-" + public_jwk["x"][:16]
        public_jwk |= {"kid": self.kid, "alg": "ES256", "use": "sig"}
        self.jwks_file.write_text(json.dumps({"keys": [public_jwk]}, indent=2) + "\n")

    def mint(
        self,
        roles: Sequence[str],
        *,
        subject: str = "developer",
        party_id: str | None = None,
        ttl_seconds: int = 3600,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": DEVELOPMENT_ISSUER,
            "aud": DEVELOPMENT_AUDIENCE,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": str(uuid.uuid4()),
            "roles": list(roles),
        }
        if party_id is not None:
            payload["party_id"] = party_id
        payload |= claims
        return jwt.encode(payload, self._key, algorithm="ES256", headers={"kid": self.kid})

    def service_settings(self) -> dict[str, str]:
        """The ZHIKE_* variables that make a service accept this issuer's tokens."""
        return {
            "ZHIKE_AUTH_JWKS_FILE": str(self.jwks_file.resolve()),
            "ZHIKE_AUTH_ISSUER": DEVELOPMENT_ISSUER,
            "ZHIKE_AUTH_AUDIENCE": DEVELOPMENT_AUDIENCE,
        }
