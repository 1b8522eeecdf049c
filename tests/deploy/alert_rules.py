"""The chart's alerting rules as Prometheus reads them, and promtool to check and test them.

The rules file promtool sees is always rendered from the chart's PrometheusRule template, never
kept beside it, so the rules tested are exactly the rules installed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART_DIR, Values, merge_values, render

# What Prometheus needs to scrape the services and load the rules.
MONITORING_VALUES: Values = {
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    }
}
_OPERATOR_GATE = '(.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")'


def render_monitoring(values: Values | None = None) -> list[dict[str, Any]]:
    """Renders the chart as on a cluster with the Prometheus Operator (whose API an offline
    render lacks: helm-python-sdk cannot declare it, so the gate is opened in a copy)."""
    with tempfile.TemporaryDirectory(prefix="zhike-chart-") as scratch:
        chart = Path(scratch) / "zhike"
        shutil.copytree(CHART_DIR, chart)
        for template in ("servicemonitor.yaml", "prometheusrule.yaml"):
            path = chart / "templates" / template
            text = path.read_text(encoding="utf-8")
            assert _OPERATOR_GATE in text, f"{template} is no longer gated on the operator API"
            path.write_text(text.replace(_OPERATOR_GATE, "true"), encoding="utf-8")
        return render(merge_values(MONITORING_VALUES, values or {}), chart_dir=chart)


def rule_groups(values: Values | None = None) -> list[dict[str, Any]]:
    """The `spec.groups` of the rendered PrometheusRule: a Prometheus rules file's `groups`."""
    rules = [m for m in render_monitoring(values) if m["kind"] == "PrometheusRule"]
    assert len(rules) == 1, f"expected one PrometheusRule, rendered {len(rules)}"
    groups: list[dict[str, Any]] = rules[0]["spec"]["groups"]
    return groups


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def write_rules_file(path: Path, values: Values | None = None) -> Path:
    path.write_text(yaml.safe_dump({"groups": rule_groups(values)}, sort_keys=False))
    return path


def promtool() -> str:
    """promtool's path; a missing promtool fails the test (CI must have it, never skip)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package "
            "(apt-get install --no-install-recommends prometheus); .ci/run does when missing"
        )
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
