"""The chart's alerting rules load in Prometheus (`promtool check rules`), and the ServiceMonitor
stores series under the labels the rules group by. What each alert does is tested with promtool
against a real scrape in tests/integration/test_metrics_and_alerts.py."""

from __future__ import annotations

from pathlib import Path

from .alert_rules import alert_names, render_monitoring, rule_groups, run_promtool, write_rules_file


def test_rendered_alert_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = write_rules_file(tmp_path / "rules.yaml")
    result = run_promtool("check", "rules", rules)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_links_the_runbook_and_has_a_severity() -> None:
    for group in rule_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert "docs/operations.md#alerts" in rule["annotations"]["description"], rule["alert"]


def test_target_alerts_watch_only_the_enabled_services() -> None:
    groups = rule_groups({"services": {"offers": {"enabled": False}}})
    exprs = {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}
    assert 'job="zhike-identity"' in exprs["ZhikeTargetAbsent"]
    assert "zhike-offers" not in exprs["ZhikeTargetAbsent"]
    assert "offers" not in exprs["ZhikeTargetDown"]


def test_scrape_target_alerts_render_only_when_prometheus_scrapes_the_services() -> None:
    # Over OTLP there is no scrape target, so `up` never exists and absent() would always fire.
    groups = rule_groups({"metrics": {"enabled": False}})
    assert not {"ZhikeTargetDown", "ZhikeTargetAbsent"} & alert_names(groups)
    assert "ZhikeRPCErrorRateHigh" in alert_names(groups)


def test_service_monitor_keeps_the_service_label_the_metrics_carry() -> None:
    # The operator labels every target with `service` = the Kubernetes Service name; without
    # honorLabels Prometheus would rename the exposition's `service` to exported_service and the
    # rules' `by (service)` would group by the Service name instead.
    monitor = next(m for m in render_monitoring() if m["kind"] == "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["honorLabels"] is True
    assert {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
        "targetLabel": "service",
    } in endpoint["relabelings"]
