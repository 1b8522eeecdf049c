"""Metrics as Prometheus sees them, from a real scrape of running services (issue 10): the
names and labels the alert rules and the runbook rely on, and promtool unit tests of every
alert with input series taken from that scrape."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.alert_rules import alert_names, rule_groups, run_promtool
from tests.deploy.chart import REPO_ROOT, SERVICES

from .alert_cases import alert_cases
from .metrics_scrape import Scrape, scrape_running_services

RUNBOOK = REPO_ROOT / "docs" / "operations.md"
RUNBOOK_SECTIONS = ("Observability", "Alerts")
# The series Prometheus derives from one histogram or counter family.
SUFFIXES = ("_bucket", "_sum", "_count", "_created")


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    yield from scrape_running_services(tmp_path_factory.mktemp("metrics"))


def test_every_series_names_its_service_and_durations_are_in_seconds(scrape: Scrape) -> None:
    ours = [s for s in scrape.samples if s.name.startswith("zhike_")]
    assert {s.labels.get("service") for s in ours} == {"identity", "profile"}
    assert scrape.find("zhike_rpc_duration_seconds_count", service="identity")
    assert not [s.name for s in ours if "milliseconds" in s.name]


def test_every_alert_fires_and_stays_silent_under_promtool_with_scraped_series(
    scrape: Scrape, tmp_path: Path
) -> None:
    groups = rule_groups()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    cases = alert_cases(scrape, SERVICES)
    # Exactly one case that fires and one that stays silent for every alert the chart renders.
    assert sorted((c.alert, c.fires) for c in cases) == sorted(
        (alert, fires) for alert in alert_names(groups) for fires in (True, False)
    )
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [case.promtool_test(rules[case.alert]) for case in cases],
    }
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False, allow_unicode=True))
    result = run_promtool("test", "rules", test_file)
    assert result.returncode == 0, f"{test_file}:\n{result.stdout}{result.stderr}"


def runbook_metric_names() -> set[str]:
    """Every zhike_ metric name the runbook's Observability and Alerts sections mention."""
    sections = re.split(r"^## ", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    text = "".join(s for s in sections if s.startswith(RUNBOOK_SECTIONS))
    return set(re.findall(r"\bzhike_[a-z0-9_]*[a-z0-9]", text))


def test_the_runbook_names_exactly_the_metrics_the_services_export(scrape: Scrape) -> None:
    exported = {name for name in scrape.names() if name.startswith("zhike_")}
    families = exported | {name.removesuffix(s) for name in exported for s in SUFFIXES}
    documented = runbook_metric_names()
    assert documented - families == set(), "the runbook names metrics no service exports"
    undocumented = {
        name
        for name in exported
        if name not in documented and not any(name.removesuffix(s) in documented for s in SUFFIXES)
    }
    assert undocumented == set(), "the services export metrics the runbook does not explain"
