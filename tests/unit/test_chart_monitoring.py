"""The chart's monitoring bundle: the PrometheusRule's alerts pass `promtool check rules` and
their unit tests (`promtool test rules`, tests/unit/alerts-test.yaml), the Grafana dashboard
ships as a ConfigMap for the sidecar, the PodMonitor beside the ServiceMonitor; and every metric
the alerts and the dashboard query is one the operator exports.

promtool is Debian's `prometheus` package (`make prometheus`, which `make test` runs first). It
is skipped only outside CI: with `CI` set a missing promtool fails these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferpool.controller.metrics import OperatorMetrics
from tests.unit.test_chart_helm import CHART, NAMESPACE, RELEASE, helm, kinds, only, render

ALERTS_TEST = Path(__file__).with_name("alerts-test.yaml")
DASHBOARD = CHART / "files" / "grafana" / "inferpool-dashboard.json"
# what the issue asks the bundle to alert on
REQUIRED_ALERTS = {"InferpoolNoLeader", "InferpoolReconcileStale", "InferpoolReconcileFailing",
                   "InferpoolCapacityShortfall", "InferpoolVariantDegraded",
                   "InferpoolDemandUnknown", "InferpoolAPIWritesRejected"}
# metric names in PromQL: the operator's and the standard process/platform collectors'
METRIC = re.compile(r"\b(?:inferpool|process|python)_[a-z_]+\b")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (make prometheus installs it)")
        pytest.skip("promtool not installed (make prometheus)")
    return path


def run_promtool(*args: str, cwd: Path) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def rules_spec() -> dict[str, Any]:
    """The rules as the chart renders them into its PrometheusRule."""
    docs = render({"metrics.prometheusRule.enabled": "true",
                   "metrics.prometheusRule.labels.release": "kube-prometheus"})
    rule = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    spec: dict[str, Any] = rule["spec"]
    return spec


def alerts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in spec["groups"] for r in group["rules"] if "alert" in r]


def exported() -> set[str]:
    """Every sample name the operator's registry exposes (counters as ..._total, histograms as
    _bucket/_sum/_count, info as _info)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "info": ("_info",)}
    return {f.name + suffix for f in OperatorMetrics().registry.collect()
            for suffix in suffixes[f.type]}


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query", "")
        if var.get("type") == "query":
            exprs.append(query.get("query", "") if isinstance(query, dict) else query)
    return exprs


# --- alerts ---------------------------------------------------------------------------------

def test_monitoring_objects_are_optional() -> None:
    assert not {"PrometheusRule", "PodMonitor", "ServiceMonitor", "ConfigMap"} & \
        set(kinds(render()))


def test_rules_pass_promtool_check_and_their_unit_tests(tmp_path: Path) -> None:
    spec = rules_spec()
    assert {a["alert"] for a in alerts(spec)} >= REQUIRED_ALERTS
    (tmp_path / "prometheus-rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    assert "SUCCESS: 8 rules found" in run_promtool(
        "check", "rules", "prometheus-rules.yaml", cwd=tmp_path)
    assert "SUCCESS" in run_promtool("test", "rules", ALERTS_TEST.name, cwd=tmp_path)


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """A broken rule is caught: the shortfall alert no longer waits 10 minutes."""
    text = yaml.safe_dump(rules_spec()).replace("for: 10m", "for: 1m")
    (tmp_path / "prometheus-rules.yaml").write_text(text)
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    done = subprocess.run([promtool(), "test", "rules", ALERTS_TEST.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "InferpoolCapacityShortfall" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_documented() -> None:
    spec = rules_spec()
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    names = {a["alert"] for a in alerts(spec)}
    assert names == fired, f"alerts without a firing test: {names - fired}"
    doc = (CHART.parents[1] / "docs" / "observability.md").read_text()
    for alert in alerts(spec):
        assert f"`{alert['alert']}`" in doc, alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description"} <= set(alert["annotations"])


def test_alerts_query_only_exported_metrics() -> None:
    used = {m for a in alerts(rules_spec()) for m in METRIC.findall(a["expr"])}
    assert len(used) >= 7
    assert used <= exported(), used - exported()


def test_the_degraded_variant_alert_covers_every_reason_a_replica_cannot_exist() -> None:
    from inferpool.controller import failures

    (alert,) = [a for a in alerts(rules_spec()) if a["alert"] == "InferpoolVariantDegraded"]
    match = re.search(r'reason=~"([^"]+)"', alert["expr"])
    assert match, alert["expr"]
    assert set(match.group(1).split("|")) == {"VariantDegraded", *failures.REASONS}


# --- dashboard ------------------------------------------------------------------------------

def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {m for expr in dashboard_exprs(dashboard) for m in METRIC.findall(expr)}
    assert len(used) >= 20
    assert {"inferpool_api_write_errors_total", "process_cpu_seconds_total",
            "inferpool_build_info"} <= used
    assert used <= exported(), used - exported()


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query, with Grafana's variables filled in, parses (as recording rules)."""
    fill = {"$__rate_interval": "5m", "$namespace": ".*", "$inferencepool": ".*"}
    exprs = []
    for expr in dashboard_exprs(json.loads(DASHBOARD.read_text())):
        for var, val in fill.items():
            expr = expr.replace(var, val)
        if expr.startswith("label_values("):  # Grafana's, not PromQL: its selector is
            expr = expr.removeprefix("label_values(").rsplit(",", 1)[0]
        assert "$" not in expr, expr
        exprs.append(expr)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules))
    run_promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    docs = render({"metrics.grafanaDashboard.enabled": "true",
                   "metrics.grafanaDashboard.annotations.grafana_folder": "inferpool"})
    configmap = only(docs, "ConfigMap")
    meta = configmap["metadata"]
    assert meta["namespace"] == NAMESPACE
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["annotations"] == {"grafana_folder": "inferpool"}
    (name, text), = configmap["data"].items()
    assert name.endswith(".json")
    assert json.loads(text) == json.loads(DASHBOARD.read_text())

    elsewhere = render({"metrics.grafanaDashboard.enabled": "true",
                        "metrics.grafanaDashboard.namespace": "monitoring",
                        "metrics.grafanaDashboard.labels.grafana_dashboard": "inferpool"})
    meta = only(elsewhere, "ConfigMap")["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana_dashboard"] == "inferpool"


# --- scraping -------------------------------------------------------------------------------

def test_pod_monitor_scrapes_the_operator_pods() -> None:
    docs = render({"metrics.podMonitor.enabled": "true",
                   "metrics.podMonitor.labels.release": "kube-prometheus",
                   "metrics.podMonitor.interval": "15s"})
    monitor = only(docs, "PodMonitor")
    pod = only(docs, "Deployment")["spec"]["template"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert endpoint["port"] == "metrics"
    assert "metrics" in ports
    assert endpoint["interval"] == "15s"
    assert endpoint["honorLabels"] is True


def test_both_monitors_keep_the_inferencepool_namespace_label() -> None:
    """The operator's `namespace` label is the InferencePool's; without honorLabels Prometheus
    would rename it exported_namespace and every alert and panel would group by the
    operator's namespace."""
    monitor = only(render({"metrics.serviceMonitor.enabled": "true"}), "ServiceMonitor")
    assert [e["honorLabels"] for e in monitor["spec"]["endpoints"]] == [True]


def test_pod_monitor_and_service_monitor_exclude_each_other() -> None:
    done = helm("template", RELEASE, str(CHART), "--set", "metrics.podMonitor.enabled=true",
                "--set", "metrics.serviceMonitor.enabled=true", check=False)
    assert done.returncode != 0
    assert "choose one" in done.stderr
