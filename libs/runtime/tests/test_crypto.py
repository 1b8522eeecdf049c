"""Field encryption and blind indexes (zhike_runtime.crypto) and their settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle

import pytest
from pydantic import ValidationError

from zhike_runtime.crypto import (
    BLIND_INDEX_HEX,
    BlindIndex,
    FieldKeys,
    KeyRing,
    UndecryptableValue,
    generate_key,
)
from zhike_runtime.settings import FieldKeySettings, describe_errors

OLD = bytes(range(32))
NEW = bytes(range(32, 64))
BLIND = bytes(range(64, 96))
COLUMN = "source_record.id_number"
ROW = ("core_deposits", "D-1")
VALUE = "11010519491231002X"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def ring(active: str = "k1") -> KeyRing:
    return KeyRing({"k1": OLD, "k2": NEW}, active)


def test_a_sealed_value_opens_in_its_place_and_shows_nothing_of_it() -> None:
    token = ring().encrypt(VALUE, COLUMN, ROW)

    assert ring().decrypt(token, COLUMN, ROW) == VALUE
    assert token.startswith("v1.k1.")
    assert VALUE not in token
    assert VALUE[:6] not in token
    # A fresh nonce each time: equal values do not give equal tokens.
    assert ring().encrypt(VALUE, COLUMN, ROW) != token


def test_an_empty_value_stays_empty() -> None:
    assert ring().encrypt("", COLUMN, ROW) == ""
    assert ring().decrypt("", COLUMN, ROW) == ""


def test_an_altered_token_is_refused_without_showing_the_value() -> None:
    token = ring().encrypt(VALUE, COLUMN, ROW)
    head, body = token.rsplit(".", 1)
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]

    with pytest.raises(UndecryptableValue) as refused:
        ring().decrypt(f"{head}.{flipped}", COLUMN, ROW)

    assert "authentication failed" in str(refused.value)
    assert COLUMN in str(refused.value)
    assert VALUE not in str(refused.value)
    assert body not in str(refused.value)


def test_a_value_copied_to_another_row_or_column_is_refused() -> None:
    token = ring().encrypt(VALUE, COLUMN, ROW)

    with pytest.raises(UndecryptableValue, match="another row or column"):
        ring().decrypt(token, COLUMN, ("core_deposits", "D-2"))
    with pytest.raises(UndecryptableValue, match="another row or column"):
        ring().decrypt(token, "source_record.phone", ROW)
    # The parts of the row key cannot be re-cut to forge the same place.
    with pytest.raises(UndecryptableValue):
        ring().decrypt(token, COLUMN, ("core_deposit", "sD-1"))


def test_a_token_under_an_unknown_key_id_is_refused_naming_the_key_id() -> None:
    token = KeyRing({"k9": bytes(32)}, "k9").encrypt(VALUE, COLUMN, ROW)

    with pytest.raises(UndecryptableValue, match="'k9', not in the ring"):
        ring().decrypt(token, COLUMN, ROW)


@pytest.mark.parametrize("token", ["11010519491231002X", "v2.k1.abc", "v1.k1.!!!", "v1.k1.AAAA"])
def test_what_is_not_a_token_is_refused(token: str) -> None:
    with pytest.raises(UndecryptableValue):
        ring().decrypt(token, COLUMN, ROW)


def test_after_rotation_old_values_open_and_new_ones_are_sealed_under_the_new_key() -> None:
    old_token = ring("k1").encrypt(VALUE, COLUMN, ROW)
    rotated = ring("k2")

    assert not rotated.is_current(old_token)
    assert rotated.key_id(old_token) == "k1"
    assert rotated.decrypt(old_token, COLUMN, ROW) == VALUE
    new_token = rotated.encrypt(rotated.decrypt(old_token, COLUMN, ROW), COLUMN, ROW)
    assert rotated.is_current(new_token)
    assert rotated.key_id(new_token) == "k2"
    # Once the old key has left the ring, only re-sealed values still open.
    assert KeyRing({"k2": NEW}, "k2").decrypt(new_token, COLUMN, ROW) == VALUE
    with pytest.raises(UndecryptableValue):
        KeyRing({"k2": NEW}, "k2").decrypt(old_token, COLUMN, ROW)


def test_blind_index_is_hmac_sha256_per_purpose_and_short() -> None:
    index = BlindIndex(BLIND)
    blocking = index.purpose("identity.blocking_key")
    derived = hmac.digest(BLIND, b"zhike blind index\x00identity.blocking_key", "sha256")

    digest = blocking("id:RESIDENT_ID:" + VALUE)

    assert (
        digest
        == hmac.new(derived, ("id:RESIDENT_ID:" + VALUE).encode(), hashlib.sha256).hexdigest()[
            :BLIND_INDEX_HEX
        ]
    )
    assert len(digest) == BLIND_INDEX_HEX
    assert blocking("id:RESIDENT_ID:" + VALUE) == digest  # deterministic: look-ups find it
    assert index.purpose("profile.phone")("id:RESIDENT_ID:" + VALUE) != digest
    assert (
        BlindIndex(bytes(32)).purpose("identity.blocking_key")("id:RESIDENT_ID:" + VALUE) != digest
    )


def test_a_signing_key_is_its_purposes_own_and_never_a_digest_key() -> None:
    index = BlindIndex(BLIND)
    key = index.signing_key("notifications.unsubscribe_link")

    assert key == hmac.digest(
        BLIND, b"zhike signing key\x00notifications.unsubscribe_link", "sha256"
    )
    assert BlindIndex(BLIND).signing_key("notifications.unsubscribe_link") == key  # every replica
    assert index.signing_key("another.purpose") != key
    # Not the key behind the digests of the same name.
    assert key != hmac.digest(
        BLIND, b"zhike blind index\x00notifications.unsubscribe_link", "sha256"
    )


def test_field_keys_survive_pickling_for_worker_processes() -> None:
    keys = FieldKeys(ring("k2"), BlindIndex(BLIND))
    copy = pickle.loads(pickle.dumps(keys))

    token = keys.ring.encrypt(VALUE, COLUMN, ROW)
    assert copy.ring.decrypt(token, COLUMN, ROW) == VALUE
    assert copy.ring.active_key_id == "k2"
    assert copy.blind_index.purpose("p")("x") == keys.blind_index.purpose("p")("x")


def settings_errors(monkeypatch: pytest.MonkeyPatch, **variables: str) -> list[str]:
    for name, value in variables.items():
        monkeypatch.setenv(f"ZHIKE_{name.upper()}", value)
    with pytest.raises(ValidationError) as error:
        FieldKeySettings()
    assert b64(OLD) not in str(error.value)  # never echoed, not even in pydantic's own text
    return describe_errors(error.value)


def test_field_key_settings_build_the_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIKE_DATA_KEYS", json.dumps({"k1": b64(OLD), "k2": b64(NEW)}))
    monkeypatch.setenv("ZHIKE_DATA_KEY_ID", "k2")
    monkeypatch.setenv("ZHIKE_BLIND_INDEX_KEY", generate_key())

    settings = FieldKeySettings()

    assert b64(OLD) not in repr(settings)
    keys = FieldKeys.from_config(
        settings.data_keys.get_secret_value() if settings.data_keys else "",
        settings.data_key_id or "",
        settings.blind_index_key.get_secret_value() if settings.blind_index_key else "",
    )
    assert keys.ring.active_key_id == "k2"
    assert keys.ring.key_ids == {"k1", "k2"}


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"data_keys": "not json"}, "ZHIKE_DATA_KEYS: Value error, must be a JSON object"),
        (
            {"data_keys": json.dumps({"k1": b64(OLD)[:20]})},
            "ZHIKE_DATA_KEYS: Value error, key 'k1' must decode to 32 bytes",
        ),
        (
            {"data_keys": json.dumps({"k.1": b64(OLD)})},
            "ZHIKE_DATA_KEYS: Value error, key id 'k.1'",
        ),
        (
            {"blind_index_key": "%%%"},
            "ZHIKE_BLIND_INDEX_KEY: Value error, the blind-index key is not base64",
        ),
        ({"data_keys": json.dumps({"k1": b64(OLD)})}, "set all three or none"),
        (
            {
                "data_keys": json.dumps({"k1": b64(OLD)}),
                "data_key_id": "k2",
                "blind_index_key": b64(BLIND),
            },
            "ZHIKE_DATA_KEY_ID: must be one of the key ids",
        ),
        (
            {
                "data_keys": json.dumps({"k1": b64(OLD)}),
                "data_key_id": "k1",
                "blind_index_key": b64(OLD),
            },
            "ZHIKE_BLIND_INDEX_KEY: must differ from every data key",
        ),
    ],
)
def test_a_bad_field_key_setting_is_named_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str
) -> None:
    errors = settings_errors(monkeypatch, **variables)

    assert any(expected in line for line in errors), errors
