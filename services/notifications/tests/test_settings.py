"""The notifications' settings: the dispatch policy's values are parsed into the domain's
objects, and a bad value stops the service naming its setting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from zhike_notifications.domain.gates import CapWindow
from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.quiet_hours import QuietHours
from zhike_notifications.domain.rate_limit import DEFAULT_RATE_LIMIT, RateWindow
from zhike_notifications.policy import PolicyError
from zhike_notifications.settings import NotificationsSettings
from zhike_runtime.testing.services import TEST_SETTINGS

LOCAL_SMS_AND_PUSH = [
    {"name": "local_sms", "channel": "sms", "url": "http://127.0.0.1:8025"},
    {"name": "local_push", "channel": "push", "url": "http://127.0.0.1:8025"},
]


def settings(**overrides: object) -> NotificationsSettings:
    return NotificationsSettings(**(TEST_SETTINGS | overrides))


def test_the_defaults_are_the_banks_policy() -> None:
    defaults = settings()
    policy = defaults.gate_policy()

    assert policy.frequency_cap == (CapWindow(7, 2), CapWindow(30, 6))
    assert policy.dedup_days == 7
    assert policy.send_window.marketing_window == "09:00–20:00"
    assert policy.default_quiet_hours == QuietHours(dt.time(21, 0), dt.time(8, 0))
    assert (policy.default_time_zone, policy.default_language) == ("Asia/Shanghai", "zh-CN")
    assert "mkt-sms-2026-01" in policy.consent_texts
    assert defaults.retention_days == 150
    assert defaults.rate_limit() == DEFAULT_RATE_LIMIT  # 10 a minute, 60 an hour, per party
    retry = defaults.retry_policy(Channel.SMS)
    assert (retry.max_attempts, retry.base_delay, retry.max_delay) == (
        6,
        dt.timedelta(seconds=2),
        dt.timedelta(minutes=5),
    )


def test_the_values_given_become_the_gate_and_retry_policies(tmp_path: Path) -> None:
    texts = tmp_path / "texts.yaml"
    texts.write_text(
        "texts:\n  - {version: bank-7, message_types: [fx], frequency: {limit: 1, days: 7}}\n",
        encoding="utf-8",
    )
    given = settings(
        frequency_cap="30:5, 7d:1",
        dedup_days=0,
        marketing_window_start="10:30",
        marketing_window_end="18:00",
        default_quiet_hours="none",
        default_time_zone="Asia/Hong_Kong",
        default_language="en",
        consent_texts_file=str(texts),
        providers=[
            *LOCAL_SMS_AND_PUSH,
            {"name": "smtp_primary", "channel": "email", "url": "smtp://mail-a.bank.example:25"},
            {"name": "smtp_backup", "channel": "email", "url": "smtps://mail-b.bank.example:465"},
        ],
        providers_email=["smtp_primary", "smtp_backup"],
        max_attempts=3,
        retry_base_seconds=1,
        retry_max_seconds=60,
    )

    policy = given.gate_policy()
    assert policy.frequency_cap == (CapWindow(7, 1), CapWindow(30, 5))
    assert policy.dedup_days == 0
    assert policy.send_window.marketing_window == "10:30–18:00"
    assert policy.default_quiet_hours is None
    assert (policy.default_time_zone, policy.default_language) == ("Asia/Hong_Kong", "en")
    assert set(policy.consent_texts) == {"bank-7"}
    retry = given.retry_policy(Channel.EMAIL)
    assert retry.providers == ("smtp_primary", "smtp_backup")
    assert (retry.max_attempts, retry.max_delay) == (3, dt.timedelta(seconds=60))


def test_the_rate_limit_reads_seconds_minutes_and_hours_in_any_order() -> None:
    given = settings(party_rate_limit="2h:100, 30s:3,5m:20")

    assert given.rate_limit() == (
        RateWindow(dt.timedelta(seconds=30), 3),
        RateWindow(dt.timedelta(minutes=5), 20),
        RateWindow(dt.timedelta(hours=2), 100),
    )


def test_the_rate_limit_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIKE_PARTY_RATE_LIMIT", "1m:5")
    assert settings().rate_limit() == (RateWindow(dt.timedelta(minutes=1), 5),)


def test_provider_lists_are_read_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ZHIKE_PROVIDERS",
        '[{"name": "aliyun_sms", "channel": "sms", "url": "https://sms-a.example"},'
        ' {"name": "tencent_sms", "channel": "sms", "url": "https://sms-b.example"},'
        ' {"name": "local_push", "channel": "push", "url": "http://127.0.0.1:8025"},'
        ' {"name": "local_email", "channel": "email", "url": "smtp://127.0.0.1:1025"}]',
    )
    monkeypatch.setenv("ZHIKE_PROVIDERS_SMS", '["aliyun_sms", "tencent_sms"]')
    assert settings().retry_policy(Channel.SMS).providers == ("aliyun_sms", "tencent_sms")


def test_a_failover_order_naming_no_provider_of_its_channel_is_refused() -> None:
    with pytest.raises(ValidationError, match="ZHIKE_PROVIDERS_SMS: 'local_email' is not a sms"):
        settings(providers_sms=["local_email"])


def test_a_provider_url_of_another_protocol_is_refused() -> None:
    with pytest.raises(
        ValidationError, match="mail: the url of an email provider is smtp or smtps"
    ):
        settings(providers=[{"name": "mail", "channel": "email", "url": "http://mail.example"}])


def test_the_inbox_has_no_retry_policy() -> None:
    with pytest.raises(ValueError, match="inbox"):
        settings().retry_policy(Channel.INBOX)


def test_an_empty_path_means_the_shipped_file() -> None:
    given = settings(templates_dir="", consent_texts_file="", calendar_file="")
    assert (given.templates_dir, given.consent_texts_file, given.calendar_file) == (None,) * 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frequency_cap", "2 in 7 days"),
        ("frequency_cap", "0:2"),
        ("frequency_cap", "7:2,7:3"),
        ("party_rate_limit", "10 per minute"),
        ("party_rate_limit", "60:10"),  # seconds or minutes? the unit is always written
        ("party_rate_limit", ""),
        ("party_rate_limit", "0s:1"),
        ("party_rate_limit", "25h:1"),
        ("party_rate_limit", "1m:0"),
        ("party_rate_limit", "1m:10,60s:5"),
        ("dedup_days", -1),
        ("marketing_window_start", "9am"),
        ("marketing_window_end", "24:00"),
        ("default_quiet_hours", "21:00"),
        ("default_quiet_hours", "21:00-25:00"),
        ("default_time_zone", "Mars/Olympus"),
        ("default_language", "fr"),
        ("providers_sms", []),
        ("providers_sms", ["a", "a"]),
        ("providers_push", ["Bad Name"]),
        ("max_attempts", 0),
        ("retry_base_seconds", 0),
        ("retention_days", 149),  # records are kept at least five months
        ("templates_dir", "/nowhere/templates"),
        ("consent_texts_file", "/nowhere/texts.yaml"),
        ("calendar_file", "/nowhere/cn.yaml"),
    ],
)
def test_a_bad_value_is_refused_naming_its_setting(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**{field: value})
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (
            {"marketing_window_start": "20:00", "marketing_window_end": "09:00"},
            "ZHIKE_MARKETING_WINDOW_START",
        ),
        ({"retry_base_seconds": 10, "retry_max_seconds": 5}, "ZHIKE_RETRY_MAX_SECONDS"),
        # A provider call is cut at half the lease: a longer time-out of its own would not hold.
        ({"dispatch_lease_seconds": 20}, "local_sms's timeout_seconds"),
    ],
)
def test_values_that_do_not_hold_together_are_refused_naming_them(
    overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        settings(**overrides)


def test_the_gates_look_back_as_far_as_the_longest_window_configured(tmp_path: Path) -> None:
    texts = tmp_path / "texts.yaml"
    texts.write_text(
        "texts:\n  - {version: bank-9, message_types: [fx], frequency: {limit: 4, days: 120}}\n",
        encoding="utf-8",
    )

    assert settings().gate_policy().history_days == 30  # the 30-day cap window
    assert settings(dedup_days=90).gate_policy().history_days == 90
    assert settings(frequency_cap="7:2,100:6").gate_policy().history_days == 100
    assert settings(consent_texts_file=str(texts)).gate_policy().history_days == 120


def test_a_window_longer_than_retention_keeps_sends_is_refused_naming_retention() -> None:
    with pytest.raises(PolicyError) as refused:
        settings(dedup_days=200, retention_days=150).gate_policy()

    [violation] = refused.value.violations
    assert violation.field == "ZHIKE_RETENTION_DAYS"
    assert "200 days" in violation.description
    assert settings(dedup_days=200, retention_days=200).gate_policy().history_days == 200
