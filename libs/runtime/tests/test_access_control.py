"""Caller identity and authorisation on a real in-process server (RELIABILITY S2, S3, S4): every
refused call is refused before its handler runs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from zhike.testing.v1 import events_pb2
from zhike_runtime.app import Platform, RunningService, ServiceDefinition, Wiring
from zhike_runtime.auth.access import current_call
from zhike_runtime.auth.audit import AuditEntry
from zhike_runtime.auth.client import BearerToken
from zhike_runtime.auth.development import (
    DEVELOPMENT_AUDIENCE,
    DEVELOPMENT_ISSUER,
    DevelopmentIssuer,
)
from zhike_runtime.auth.permissions import MethodRule
from zhike_runtime.auth.tokens import KeySet, TokenRejected, TokenVerifier
from zhike_runtime.errors import NotFound
from zhike_runtime.settings import ServiceSettings
from zhike_runtime.testing.processes import NatsServer
from zhike_runtime.testing.services import (
    SERVING,
    TEST_ISSUER,
    authorised_channel,
    readiness,
    running_service,
)

PROBE = "zhike.testing.v1.Probe"
ROLES = {
    "reader": ["probe.read"],
    "reader_with_pii": ["probe.read", "probe.read_pii"],
    "writer": ["probe.write"],
    # The default customer role (ZHIKE_AUTH_CUSTOMER_ROLES).
    "channel_app": ["probe.read"],
}


class Calls:
    """How many times each handler ran."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def handler(self, name: str, delay: float = 0.0) -> Any:
        async def behaviour(
            request: events_pb2.Ping, _context: grpc.aio.ServicerContext[Any, Any]
        ) -> events_pb2.Ping:
            self.count[name] = self.count.get(name, 0) + 1
            if delay:
                await asyncio.sleep(delay)
            if name == "Refuse":
                # As a handler refuses another party's notification or decision.
                raise NotFound("notification", "someone-elses")
            if name == "Forwarded":
                # As a handler finds the party asked for was merged into another.
                current_call().about_party(f"survivor-of-{request.key}")
            return request

        return behaviour

    def total(self) -> int:
        return sum(self.count.values())


# Ping.key stands in for a party id in these tests.
RULES = {
    f"/{PROBE}/Read": MethodRule(
        "probe.read",
        party_field="key",
        unmask_permission="probe.read_pii",
        unmasked_fields=("phone",),
    ),
    f"/{PROBE}/Search": MethodRule("probe.read"),
    f"/{PROBE}/Write": MethodRule("probe.write", audited=True),
    f"/{PROBE}/Slow": MethodRule("probe.read"),
    f"/{PROBE}/Refuse": MethodRule("probe.read", party_field="key"),
    f"/{PROBE}/Forwarded": MethodRule("probe.read", party_field="key", audited=True),
    # /Unlisted has a handler but no rule.
}


def probe_definition(calls: Calls) -> ServiceDefinition[ServiceSettings]:
    def wire(_platform: Platform[ServiceSettings]) -> Wiring:
        def register(server: grpc.aio.Server) -> None:
            names = {
                "Read": 0.0,
                "Search": 0.0,
                "Write": 0.0,
                "Unlisted": 0.0,
                "Slow": 5.0,
                "Refuse": 0.0,
                "Forwarded": 0.0,
            }
            handlers = {
                name: grpc.unary_unary_rpc_method_handler(
                    calls.handler(name, delay),
                    request_deserializer=events_pb2.Ping.FromString,
                    response_serializer=events_pb2.Ping.SerializeToString,
                )
                for name, delay in names.items()
            }
            handlers["Stream"] = grpc.unary_stream_rpc_method_handler(
                calls.handler("Stream"),
                request_deserializer=events_pb2.Ping.FromString,
                response_serializer=events_pb2.Ping.SerializeToString,
            )
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(PROBE, handlers),)
            )

        return Wiring(grpc_registrations=[register])

    return ServiceDefinition(
        name="probe",
        settings_type=ServiceSettings,
        grpc_service_names=(PROBE,),
        migrations=None,
        stream=None,
        wire=wire,
        access_rules=RULES,
    )


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def probe(
    tmp_path: Path, nats_server: NatsServer, calls: Calls
) -> AsyncIterator[RunningService[ServiceSettings]]:
    roles_file = tmp_path / "roles.json"
    roles_file.write_text(json.dumps(ROLES))
    async with running_service(
        probe_definition(calls),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        nats_url=nats_server.url,
        auth_roles_file=roles_file,
        max_rpc_seconds=0.5,
    ) as service:
        yield service


async def call(
    port: int,
    method: str,
    key: str = "party-a",
    metadata: tuple[tuple[str, str], ...] = (),
) -> events_pb2.Ping:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(
            f"/{PROBE}/{method}",
            request_serializer=events_pb2.Ping.SerializeToString,
            response_deserializer=events_pb2.Ping.FromString,
        )
        response: events_pb2.Ping = await stub(
            events_pb2.Ping(key=key), metadata=metadata, timeout=5
        )
        return response


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def code_of(port: int, method: str, **kwargs: Any) -> grpc.StatusCode:
    try:
        await call(port, method, **kwargs)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": DEVELOPMENT_ISSUER,
        "aud": DEVELOPMENT_AUDIENCE,
        "sub": "agent-7",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "roles": ["reader"],
    } | overrides


def unsigned_token() -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": TEST_ISSUER.kid}).encode())
    return f"{header}.{b64(json.dumps(claims()).encode())}."


def hs256_with_the_public_key() -> str:
    """Algorithm confusion: an HMAC token keyed with the issuer's published public key."""
    public_pem = (
        serialization.load_pem_private_key(TEST_ISSUER.key_file.read_bytes(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": TEST_ISSUER.kid}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def signed(issuer: DevelopmentIssuer, **overrides: Any) -> str:
    key = serialization.load_pem_private_key(issuer.key_file.read_bytes(), password=None)
    return jwt.encode(claims(**overrides), key, algorithm="ES256", headers={"kid": issuer.kid})  # type: ignore[arg-type]


def token_variants(tmp_path: Path) -> dict[str, tuple[tuple[str, str], ...]]:
    stranger = DevelopmentIssuer(tmp_path / "stranger")
    now = int(time.time())
    valid = signed(TEST_ISSUER)
    return {
        "missing": (),
        "alg none": bearer(unsigned_token()),
        "HS256 keyed with the public key": bearer(hs256_with_the_public_key()),
        "expired": bearer(signed(TEST_ISSUER, exp=now - 3600, nbf=now - 7200, iat=now - 7200)),
        "not yet valid": bearer(signed(TEST_ISSUER, nbf=now + 3600)),
        "wrong audience": bearer(signed(TEST_ISSUER, aud="another-system")),
        "wrong issuer": bearer(signed(TEST_ISSUER, iss="https://evil.invalid")),
        "unknown kid": bearer(signed(stranger)),
        "two authorization headers": (*bearer(valid), *bearer(valid)),
        "empty bearer": (("authorization", "Bearer "),),
        "not a JWT": bearer("garbage"),
        "basic scheme": (("authorization", "Basic dXNlcjpwYXNz"),),
        "no subject": bearer(signed(TEST_ISSUER, sub="")),
        # Present means confined: null must not read as "any party".
        "a null party claim": bearer(signed(TEST_ISSUER, party_id=None)),
    }


async def test_every_bad_token_is_unauthenticated_and_no_handler_runs(
    probe: RunningService[ServiceSettings], calls: Calls, tmp_path: Path
) -> None:
    outcomes = {
        name: await code_of(probe.grpc_port, "Read", metadata=metadata)
        for name, metadata in token_variants(tmp_path).items()
    }
    assert outcomes == dict.fromkeys(outcomes, grpc.StatusCode.UNAUTHENTICATED)
    assert calls.total() == 0


async def test_a_valid_token_reaches_the_handler(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    response = await call(probe.grpc_port, "Read", metadata=bearer(signed(TEST_ISSUER)))
    assert response.key == "party-a"
    assert calls.count == {"Read": 1}


async def test_a_token_without_the_methods_permission_is_denied_and_audited(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    token = signed(TEST_ISSUER, roles=["reader"])
    assert await code_of(probe.grpc_port, "Write", metadata=bearer(token)) is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert calls.total() == 0
    [entry] = await probe.audit.read()
    assert (entry.actor, entry.method, entry.outcome) == (
        "agent-7",
        f"/{PROBE}/Write",
        "PERMISSION_DENIED",
    )


async def test_a_method_missing_from_the_access_table_is_denied(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    token = signed(TEST_ISSUER, roles=["reader", "reader_with_pii", "writer"])
    assert await code_of(probe.grpc_port, "Unlisted", metadata=bearer(token)) is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert calls.total() == 0


async def test_a_streaming_method_is_refused_until_it_has_an_access_rule(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    async with authorised_channel(f"127.0.0.1:{probe.grpc_port}", roles=["reader"]) as channel:
        stream = channel.unary_stream(
            f"/{PROBE}/Stream",
            request_serializer=events_pb2.Ping.SerializeToString,
            response_deserializer=events_pb2.Ping.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stream(events_pb2.Ping(key="x"), timeout=5):
                pass
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert calls.total() == 0


async def test_health_needs_no_token(probe: RunningService[ServiceSettings]) -> None:
    assert await readiness(probe.grpc_port, "liveness") == SERVING


async def test_a_delegated_token_reads_only_its_own_party(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    token = signed(TEST_ISSUER, party_id="party-a")
    own = await call(probe.grpc_port, "Read", key="party-a", metadata=bearer(token))
    assert own.key == "party-a"
    refusals: list[tuple[grpc.StatusCode, str | None]] = []
    for other in ["party-b", "party-c", "", "party-a ", "*"]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(probe.grpc_port, "Read", key=other, metadata=bearer(token))
        refusals.append((raised.value.code(), raised.value.details()))
    assert [code for code, _ in refusals] == [grpc.StatusCode.NOT_FOUND] * 5
    assert refusals[0][1] == "party 'party-b' not found"
    assert calls.count == {"Read": 1}
    audited = await probe.audit.read()
    assert [(e.party_id, e.outcome) for e in audited] == [
        ("party-b", "NOT_FOUND"),
        ("party-c", "NOT_FOUND"),
        ("", "NOT_FOUND"),
        ("party-a ", "NOT_FOUND"),
        ("*", "NOT_FOUND"),
    ]


async def test_a_refusal_by_the_handler_of_a_delegated_call_is_audited_and_of_staff_not(
    probe: RunningService[ServiceSettings],
) -> None:
    customer = signed(TEST_ISSUER, sub="app-user", party_id="party-a")
    staff = signed(TEST_ISSUER, sub="agent-7")
    for token in (customer, staff):
        assert await code_of(probe.grpc_port, "Refuse", metadata=bearer(token)) is (
            grpc.StatusCode.NOT_FOUND
        )

    audited = await probe.audit.read()
    assert [(e.actor, e.method, e.party_id, e.outcome) for e in audited] == [
        ("app-user", f"/{PROBE}/Refuse", "party-a", "NOT_FOUND")
    ]


async def test_a_refusal_for_a_missing_permission_is_audited_with_the_party_asked_for(
    probe: RunningService[ServiceSettings],
) -> None:
    token = signed(TEST_ISSUER, roles=["writer"])
    assert await code_of(probe.grpc_port, "Read", key="party-b", metadata=bearer(token)) is (
        grpc.StatusCode.PERMISSION_DENIED
    )

    [entry] = await probe.audit.read()
    assert (entry.party_id, entry.outcome) == ("party-b", "PERMISSION_DENIED")


async def test_a_customer_role_without_the_party_claim_is_unauthenticated(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    alone = signed(TEST_ISSUER, roles=["channel_app"])
    with_staff_role = signed(TEST_ISSUER, roles=["reader", "channel_app"])
    refusals = []
    for token in (alone, with_staff_role):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(probe.grpc_port, "Read", key="party-b", metadata=bearer(token))
        refusals.append((raised.value.code(), raised.value.details()))
    assert (
        refusals
        == [
            (
                grpc.StatusCode.UNAUTHENTICATED,
                "the role channel_app acts for one customer: the token needs the party_id claim",
            )
        ]
        * 2
    )
    assert calls.total() == 0
    confined = signed(TEST_ISSUER, roles=["channel_app"], party_id="party-b")
    assert (await call(probe.grpc_port, "Read", key="party-b", metadata=bearer(confined))).key == (
        "party-b"
    )


async def test_a_party_merged_into_another_is_not_found_for_its_customer_and_served_to_staff(
    probe: RunningService[ServiceSettings],
) -> None:
    customer = signed(TEST_ISSUER, sub="app-user", roles=["channel_app"], party_id="party-b")
    staff = signed(TEST_ISSUER, sub="agent-7")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(probe.grpc_port, "Forwarded", key="party-b", metadata=bearer(customer))
    served = await call(probe.grpc_port, "Forwarded", key="party-b", metadata=bearer(staff))

    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "party 'party-b' not found",
    )
    assert served.key == "party-b"
    audited = await probe.audit.read()
    assert sorted((e.actor, e.party_id, e.outcome) for e in audited) == [
        ("agent-7", "survivor-of-party-b", "OK"),
        ("app-user", "party-b", "NOT_FOUND"),
    ]


async def test_a_delegated_token_may_not_call_a_method_without_a_party(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    token = signed(TEST_ISSUER, party_id="party-a")
    assert await code_of(probe.grpc_port, "Search", metadata=bearer(token)) is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert calls.total() == 0


async def test_an_unmasked_read_and_an_audited_write_each_leave_one_audit_record(
    probe: RunningService[ServiceSettings],
) -> None:
    reader = signed(TEST_ISSUER, sub="teller-1", roles=["reader_with_pii"])
    masked_reader = signed(TEST_ISSUER, sub="agent-2", roles=["reader"])
    writer = signed(TEST_ISSUER, sub="steward-3", roles=["writer"])
    purpose = (("x-zhike-purpose", "account opening"),)
    await call(probe.grpc_port, "Read", key="party-a", metadata=bearer(reader) + purpose)
    await call(probe.grpc_port, "Read", key="party-a", metadata=bearer(masked_reader))
    await call(probe.grpc_port, "Write", key="party-z", metadata=bearer(writer))
    entries = await probe.audit.read()
    assert [_summary(e) for e in entries] == [
        (
            "teller-1",
            "reader_with_pii",
            f"/{PROBE}/Read",
            "party-a",
            "phone",
            "account opening",
            "OK",
        ),
        ("steward-3", "writer", f"/{PROBE}/Write", "", "", "", "OK"),
    ]


def _summary(entry: AuditEntry) -> tuple[str, ...]:
    return (
        entry.actor,
        ",".join(entry.roles),
        entry.method,
        entry.party_id,
        ",".join(entry.fields),
        entry.purpose,
        entry.outcome,
    )


async def test_a_call_without_a_deadline_is_stopped_at_the_servers_cap(
    probe: RunningService[ServiceSettings], calls: Calls
) -> None:
    async with authorised_channel(f"127.0.0.1:{probe.grpc_port}", roles=["reader"]) as channel:
        slow = channel.unary_unary(
            f"/{PROBE}/Slow",
            request_serializer=events_pb2.Ping.SerializeToString,
            response_deserializer=events_pb2.Ping.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await slow(events_pb2.Ping(key="x"))  # no deadline from the client
    # The handler sleeps 5 s and would answer OK: only the server's 0.5 s cap ends it so.
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert calls.count == {"Slow": 1}


class _KeySetServer:
    """A real HTTP server publishing a JWKS, as an identity provider does."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"


@pytest.fixture
def key_set_server() -> Iterator[_KeySetServer]:
    server = _KeySetServer(TEST_ISSUER.jwks_file.read_bytes())
    server.thread.start()
    yield server
    server.server.shutdown()


async def test_a_key_set_url_is_fetched_again_for_a_new_kid_at_most_once_per_interval(
    tmp_path: Path, nats_server: NatsServer, calls: Calls, key_set_server: _KeySetServer
) -> None:
    roles_file = tmp_path / "roles.json"
    roles_file.write_text(json.dumps(ROLES))
    async with running_service(
        probe_definition(calls),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        nats_url=nats_server.url,
        auth_roles_file=roles_file,
        auth_jwks_file=None,
        auth_jwks_url=key_set_server.url,
        # Long enough that the first calls fall inside one interval on a slow machine too.
        auth_jwks_refresh_seconds=3,
    ) as service:
        port = service.grpc_port
        assert (await call(port, "Read", metadata=bearer(signed(TEST_ISSUER)))).key == "party-a"
        rotated = DevelopmentIssuer(tmp_path / "rotated")
        token = signed(rotated)
        assert await code_of(port, "Read", metadata=bearer(token)) is (
            grpc.StatusCode.UNAUTHENTICATED
        )
        # The provider publishes the new key; after the refresh interval a new kid is fetched.
        key_set_server.body = rotated.jwks_file.read_bytes()
        await asyncio.sleep(3.1)
        assert (await call(port, "Read", metadata=bearer(token))).key == "party-a"
        # The first fetch, then one after the interval: the unknown kid seen within the interval
        # did not fetch again (a stream of forged kids cannot hammer the identity provider).
        assert key_set_server.requests == 2


def verifier_for(keys: KeySet) -> TokenVerifier:
    return TokenVerifier(keys, issuer=DEVELOPMENT_ISSUER, audience=DEVELOPMENT_AUDIENCE)


async def test_a_key_withdrawn_from_the_key_file_stops_a_verified_token_at_once(
    tmp_path: Path,
) -> None:
    # A compromised key is withdrawn: the tokens it signed must stop at once, cached or not.
    key_file = tmp_path / "jwks.json"
    key_file.write_bytes(TEST_ISSUER.jwks_file.read_bytes())
    verifier = verifier_for(KeySet(file=key_file))
    token = signed(TEST_ISSUER)
    assert (await verifier.verify(token)).subject == "agent-7"

    key_file.write_bytes(DevelopmentIssuer(tmp_path / "successor").jwks_file.read_bytes())

    with pytest.raises(TokenRejected, match="unknown signing key id"):
        await verifier.verify(token)


async def test_a_key_withdrawn_from_the_key_set_url_stops_a_verified_token_once_it_is_stale(
    tmp_path: Path, key_set_server: _KeySetServer
) -> None:
    keys = KeySet(url=key_set_server.url, refresh_seconds=0.1, max_age_seconds=0.3)
    verifier = verifier_for(keys)
    token = signed(TEST_ISSUER)
    assert (await verifier.verify(token)).subject == "agent-7"

    key_set_server.body = DevelopmentIssuer(tmp_path / "successor").jwks_file.read_bytes()
    assert (await verifier.verify(token)).subject == "agent-7"  # not stale yet: cached
    await asyncio.sleep(0.4)

    with pytest.raises(TokenRejected, match="unknown signing key id"):
        await verifier.verify(token)


async def test_a_key_set_url_that_fails_keeps_the_keys_held(key_set_server: _KeySetServer) -> None:
    # An outage of the identity provider must not refuse every caller.
    keys = KeySet(url=key_set_server.url, refresh_seconds=0.1, max_age_seconds=0.2)
    verifier = verifier_for(keys)
    token = signed(TEST_ISSUER)
    assert (await verifier.verify(token)).subject == "agent-7"

    key_set_server.server.shutdown()
    key_set_server.server.server_close()
    await asyncio.sleep(0.3)

    assert (await verifier.verify(token)).subject == "agent-7"


async def test_the_bearer_token_client_interceptor_sends_the_purpose(
    probe: RunningService[ServiceSettings],
) -> None:
    token = signed(TEST_ISSUER, sub="teller-9", roles=["reader_with_pii"])
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{probe.grpc_port}", interceptors=[BearerToken(token, purpose="kyc review")]
    ) as channel:
        read = channel.unary_unary(
            f"/{PROBE}/Read",
            request_serializer=events_pb2.Ping.SerializeToString,
            response_deserializer=events_pb2.Ping.FromString,
        )
        await read(events_pb2.Ping(key="party-q"), timeout=5)
    [entry] = await probe.audit.read()
    assert (entry.actor, entry.purpose) == ("teller-9", "kyc review")
