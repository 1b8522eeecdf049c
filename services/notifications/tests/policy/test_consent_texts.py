"""The shipped consent texts: the versions the simulator and the FX journey's consents carry are
known and allow a marketing SMS about wealth; the older text that states no frequency does not;
a bad file is refused naming the file and the field."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from zhike_notifications.calendars import load_calendar
from zhike_notifications.domain.gates import (
    CapWindow,
    ConsentEvidence,
    ConsentRecord,
    Frequency,
    PartySnapshot,
    Send,
    Suppress,
    evaluate,
)
from zhike_notifications.domain.model import (
    Category,
    Channel,
    Message,
    Purpose,
    SuppressionReason,
)
from zhike_notifications.policy import (
    DEFAULT_CONSENT_TEXTS,
    PolicyError,
    load_consent_texts,
    load_gate_policy,
)

REPO = Path(__file__).resolve().parents[4]
SIMULATOR = REPO / "tools" / "simulator" / "src" / "zhike_simulator"
# Where the FX journeys (and `zhike fx-story`) take their customer's consent text from.
FX_JOURNEY = REPO / "tests" / "integration" / "source_systems.py"
# Tuesday 17 March 2026, 10:00 in Shanghai: a working day, inside the marketing window.
NOW = dt.datetime(2026, 3, 17, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
FX_SMS = Message(
    party_id="5b2f8c1e-7d4a-4e8b-9c3f-1a2b3c4d5e6f",
    channel=Channel.SMS,
    category=Category.MARKETING,
    purpose=Purpose.MARKETING,
    template_id="offer_usd_fx_wealth_sms_v1",
    topic="wealth",
    offer_id="usd_fx_wealth",
)


def versions_in(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'(?:text_version=|CONSENT_TEXT = )"([^"]+)"', text))
    return found


def fx_sms_verdict(version: str) -> Send | Suppress:
    evidence = ConsentEvidence("branch 0101", NOW - dt.timedelta(days=30), version)
    party = PartySnapshot(
        FX_SMS.party_id,
        consents=(ConsentRecord(Channel.SMS, Purpose.MARKETING, True, evidence),),
    )
    verdict = evaluate(FX_SMS, party, (), NOW, load_gate_policy(), load_calendar())
    assert isinstance(verdict, Send | Suppress)
    return verdict


def test_the_versions_the_simulator_and_the_fx_journey_give_allow_the_fx_sms() -> None:
    produced = versions_in([*sorted(SIMULATOR.rglob("*.py")), FX_JOURNEY])
    assert produced >= {"CT-2024.2", "mkt-sms-2026-01"}
    texts = load_consent_texts()
    for version in produced:
        assert "wealth" in texts[version].message_types, version
        assert texts[version].frequency is not None, version
        assert isinstance(fx_sms_verdict(version), Send), version


def test_the_older_text_without_a_frequency_does_not_allow_a_marketing_sms() -> None:
    assert load_consent_texts()["mkt-sms-2023-06"].frequency is None

    verdict = fx_sms_verdict("mkt-sms-2023-06")

    assert isinstance(verdict, Suppress)
    assert verdict.reason is SuppressionReason.CONSENT_SCOPE
    assert "states no frequency" in verdict.suppression.detail


def test_the_current_sms_text_states_four_messages_in_thirty_days() -> None:
    text = load_consent_texts()["mkt-sms-2026-01"]
    assert text.frequency == Frequency(4, 30)
    assert text.message_types == {"wealth", "cards", "deposits", "loans"}


def test_the_gate_policy_combines_the_texts_with_the_caps_given() -> None:
    policy = load_gate_policy(frequency_cap=(CapWindow(1, 1),), dedup_days=3)
    assert policy.frequency_cap == (CapWindow(1, 1),)
    assert policy.dedup_days == 3
    assert set(policy.consent_texts) == set(load_consent_texts())


def test_another_file_replaces_the_shipped_texts(tmp_path: Path) -> None:
    path = tmp_path / "texts.yaml"
    path.write_text(
        "texts:\n  - {version: bank-7, message_types: [fx], frequency: {limit: 1, days: 7}}\n",
        encoding="utf-8",
    )
    assert set(load_gate_policy(consent_texts_file=path).consent_texts) == {"bank-7"}


def test_a_bad_file_names_the_file_and_every_field(tmp_path: Path) -> None:
    shipped = DEFAULT_CONSENT_TEXTS.read_text(encoding="utf-8")
    path = tmp_path / "texts.yaml"
    path.write_text(
        shipped.replace("frequency: {limit: 4, days: 30}", "frequency: {limit: 0, days: 30}", 1)
        .replace("version: CT-2024.2", "version: mkt-sms-2026-01")
        .replace("frequency: null", "")
        + "  - {version: x, message_types: [Wealth], frequency: null, colour: red}\n",
        encoding="utf-8",
    )

    with pytest.raises(PolicyError) as raised:
        load_consent_texts(path)

    assert {v.field for v in raised.value.violations} == {
        f"{path}: texts[0].frequency.limit",
        f"{path}: texts[1].version",  # listed twice
        f"{path}: texts[2].frequency",  # missing: not read as "states none"
        f"{path}: texts[3].colour",
        f"{path}: texts[3].message_types[0]",
    }


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "texts.yaml"
    path.write_text("texts: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="cannot be read"):
        load_consent_texts(path)
    with pytest.raises(PolicyError, match="cannot be read"):
        load_consent_texts(tmp_path / "missing.yaml")
