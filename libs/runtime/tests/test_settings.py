from __future__ import annotations

import pytest

from zhike_runtime.settings import ServiceSettings, load_settings
from zhike_runtime.testing.services import process_environment


@pytest.fixture(autouse=True)
def platform_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What every service needs (a key set for callers' tokens), so each test fails for the
    reason it names."""
    for name, value in process_environment().items():
        monkeypatch.setenv(name, value)


def test_without_a_key_set_for_tokens_the_process_stops_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ZHIKE_AUTH_JWKS_FILE")
    with pytest.raises(SystemExit) as stopped:
        load_settings(ServiceSettings)
    assert stopped.value.code == 2
    assert "ZHIKE_AUTH_JWKS_FILE or ZHIKE_AUTH_JWKS_URL" in capsys.readouterr().err


def test_a_jwks_url_must_be_http(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ZHIKE_AUTH_JWKS_FILE")
    monkeypatch.setenv("ZHIKE_AUTH_JWKS_URL", "file:///etc/passwd")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert "ZHIKE_AUTH_JWKS_URL" in capsys.readouterr().err


def test_bad_values_stop_the_process_naming_each_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZHIKE_GRPC_PORT", "not-a-port")
    monkeypatch.setenv("ZHIKE_DATABASE_URL", "mysql://somewhere/db")
    monkeypatch.setenv("ZHIKE_LOG_LEVEL", "LOUD")
    with pytest.raises(SystemExit) as stopped:
        load_settings(ServiceSettings)
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "ZHIKE_GRPC_PORT" in message
    assert "ZHIKE_DATABASE_URL" in message
    assert "ZHIKE_LOG_LEVEL" in message


def test_settings_come_from_zhike_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIKE_GRPC_PORT", "6001")
    monkeypatch.setenv("ZHIKE_NATS_URL", "nats://a:4222,nats://b:4222")
    monkeypatch.setenv("ZHIKE_CONSUMER_BACKOFF_SECONDS", "[0.5, 1, 2]")
    settings = load_settings(ServiceSettings)
    assert settings.grpc_port == 6001
    assert settings.nats_url == "nats://a:4222,nats://b:4222"
    assert settings.backoff_for(1) == 0.5
    assert settings.backoff_for(3) == 2
    assert settings.backoff_for(9) == 2


def test_more_backoff_steps_than_redeliveries_is_rejected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZHIKE_CONSUMER_MAX_DELIVER", "2")
    monkeypatch.setenv("ZHIKE_CONSUMER_BACKOFF_SECONDS", "[1, 2, 3]")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert "ZHIKE_CONSUMER_BACKOFF_SECONDS" in capsys.readouterr().err


def test_nats_url_must_use_a_nats_scheme(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZHIKE_NATS_URL", "http://localhost:4222")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert "ZHIKE_NATS_URL" in capsys.readouterr().err


def test_audit_records_are_kept_at_least_three_years(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # They are processing records (unmasked reads, steward writes): S7 keeps them 3 years.
    monkeypatch.setenv("ZHIKE_AUDIT_RETENTION_DAYS", "1096")
    assert load_settings(ServiceSettings).audit_retention_days == 1096

    monkeypatch.setenv("ZHIKE_AUDIT_RETENTION_DAYS", "1095")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert "ZHIKE_AUDIT_RETENTION_DAYS" in capsys.readouterr().err


def test_public_calls_at_or_above_the_concurrency_limit_stop_the_process_naming_both(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Health and reflection, which need no token, could then hold every call slot.
    monkeypatch.setenv("ZHIKE_MAX_CONCURRENT_RPCS", "50")
    monkeypatch.setenv("ZHIKE_MAX_PUBLIC_CALLS", "50")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    error = capsys.readouterr().err
    assert "ZHIKE_MAX_PUBLIC_CALLS" in error
    assert "ZHIKE_MAX_CONCURRENT_RPCS" in error
