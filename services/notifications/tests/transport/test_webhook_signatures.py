"""The webhook signature checks on their own: each refusal names its check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest
from starlette.datastructures import Headers

from zhike_notifications.transport.webhook_signatures import (
    ID_HEADER,
    MAX_SIGNATURES,
    SIGNATURE_HEADER,
    SignatureCheck,
    SignatureRefused,
    SignatureVerifier,
    sign,
)

NOW = dt.datetime(2025, 3, 3, 1, 30, tzinfo=dt.UTC)
STAMP = int(NOW.timestamp())
SECRET = b"provider-secret"
BODY = b'{"provider_message_id": "m-1"}'
VERIFIER = SignatureVerifier({"sms-a": [SECRET]})


def refusal(headers: Mapping[str, str], body: bytes = BODY) -> SignatureCheck:
    with pytest.raises(SignatureRefused) as refused:
        VERIFIER.verify("sms-a", headers, body, NOW)
    return refused.value.check


def test_a_signed_webhook_is_verified_with_its_delivery_id() -> None:
    verified = VERIFIER.verify("sms-a", sign(SECRET, "d-1", STAMP, BODY), BODY, NOW)
    assert (verified.provider, verified.delivery_id, verified.signed_at) == ("sms-a", "d-1", NOW)


def test_header_names_are_matched_regardless_of_case() -> None:
    headers = {name.lower(): value for name, value in sign(SECRET, "d-1", STAMP, BODY).items()}
    assert VERIFIER.verify("sms-a", headers, BODY, NOW).delivery_id == "d-1"


def test_a_header_sent_twice_is_refused_as_malformed() -> None:
    pairs = [*sign(SECRET, "d-1", STAMP, BODY).items(), (ID_HEADER, "d-2")]
    # As the server hands them over: Starlette's Headers list a repeated header twice.
    headers = Headers(raw=[(name.lower().encode(), value.encode()) for name, value in pairs])
    assert refusal(headers) is SignatureCheck.MALFORMED_HEADER


def test_a_delivery_id_with_a_dot_is_refused() -> None:
    # "a.1" + "." + stamp would sign the same bytes as id "a" with "1.…" moved into the body.
    assert refusal(sign(SECRET, "a.1", STAMP, BODY)) is SignatureCheck.MALFORMED_HEADER


def test_signatures_of_other_versions_are_ignored() -> None:
    headers = sign(SECRET, "d-1", STAMP, BODY)
    v1 = headers[SIGNATURE_HEADER]
    headers[SIGNATURE_HEADER] = f"v2=whatever {v1}"
    assert VERIFIER.verify("sms-a", headers, BODY, NOW).delivery_id == "d-1"
    headers[SIGNATURE_HEADER] = "v2=whatever"
    assert refusal(headers) is SignatureCheck.BAD_SIGNATURE


@pytest.mark.parametrize(
    "signature",
    ["", "v1", "v1=abc", "v1=" + "g" * 64, " ".join(["v1=" + "0" * 64] * (MAX_SIGNATURES + 1))],
    ids=["empty", "no_mac", "short_mac", "not_hex", "too_many"],
)
def test_a_malformed_signature_header_is_refused(signature: str) -> None:
    headers = sign(SECRET, "d-1", STAMP, BODY) | {SIGNATURE_HEADER: signature}
    assert refusal(headers) is SignatureCheck.MALFORMED_HEADER


def test_a_timestamp_that_is_not_unix_seconds_is_refused() -> None:
    headers = sign(SECRET, "d-1", STAMP, BODY) | {"Zhike-Webhook-Timestamp": "2025-03-03"}
    assert refusal(headers) is SignatureCheck.MALFORMED_HEADER


def test_the_timestamp_is_signed() -> None:
    headers = sign(SECRET, "d-1", STAMP, BODY) | {"Zhike-Webhook-Timestamp": str(STAMP + 1)}
    assert refusal(headers) is SignatureCheck.BAD_SIGNATURE


def test_an_empty_secret_is_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="empty"):
        SignatureVerifier({"sms-a": [SECRET, b""]})


def test_a_provider_with_no_secrets_is_unknown() -> None:
    verifier = SignatureVerifier({"sms-a": []})
    with pytest.raises(SignatureRefused) as refused:
        verifier.verify("sms-a", sign(SECRET, "d-1", STAMP, BODY), BODY, NOW)
    assert refused.value.check is SignatureCheck.UNKNOWN_PROVIDER
