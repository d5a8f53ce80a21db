"""Observability of a running operator: its /metrics pass promtool and feed a real Prometheus,
its logs are JSON with object references, its Events are not repeated, failovers are counted,
and `inferpool snapshot` + `inferpool plan` print the placement it applied."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.operator_process import OperatorProcess, running_operator
from tests.prometheus_harness import (
    PrometheusProcess,
    PrometheusUnavailableError,
    ensure_prometheus,
)
from tests.sandbox.test_operator import H100, V6E, apply, ipool, replicas, settle, status
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]

PLACED = {"chat-v6e-v6e": 2, "chat-h100-h100": 1}  # 30 req/s, no family above 70%


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    # debug: kopf's per-object records (kopf.objects) are logged too, to check their shape
    yield from running_operator(sandbox, tmp_path_factory.mktemp("observability"), "obs",
                                "--log-level=debug")


@pytest.fixture(scope="module")
def binary() -> Path:
    """Debian's Prometheus, installed on first use; the test is skipped where it cannot be."""
    try:
        return ensure_prometheus()
    except PrometheusUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def ns(sandbox: Sandbox, namespace: str, operator: OperatorProcess) -> Iterator[str]:
    yield namespace
    sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
    wait_for(lambda: not sandbox.get_json("pods", "-n", namespace)["items"], timeout=90,
             what="the test's pods to go")


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(operator: OperatorProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, text = http_get(operator.metrics_port, "/metrics")
    assert code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
               **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and labels.items() <= dict(ls).items())


def placed_chat(sandbox: Sandbox, ns: str, operator: OperatorProcess) -> None:
    apply(sandbox, ns, ipool("chat", 30, [H100, V6E], max_family_share=0.7))
    settle(sandbox, ns, PLACED)
    wait_for(lambda: sample_sum(scrape(operator), "inferpool_ready_replicas", namespace=ns) == 3,
             timeout=30, what="inferpool_ready_replicas == 3 on /metrics")


def test_scrape_passes_promtool_and_probes_answer(sandbox: Sandbox, ns: str,
                                                  operator: OperatorProcess) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    assert http_get(operator.metrics_port, "/readyz") == (200, "leader\n")
    assert http_get(operator.health_port, "/healthz")[0] == 200  # kopf's liveness
    placed_chat(sandbox, ns, operator)
    code, text = http_get(operator.metrics_port, "/metrics")
    assert code == 200
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                          capture_output=True, check=False, timeout=30)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert not done.stdout.strip(), done.stdout.decode()  # not even a lint warning
    samples = scrape(operator)
    assert sample_sum(samples, "inferpool_replicas", namespace=ns, family="tpu") == 2
    assert sample_sum(samples, "inferpool_replicas", namespace=ns, family="nvidia") == 1
    assert sample_sum(samples, "inferpool_cost_dollars_per_hour", namespace=ns) == 80
    assert sample_sum(samples, "inferpool_reconcile_total", result="success") > 0
    assert sample_sum(samples, "inferpool_leader") == 1


@pytest.mark.prometheus
def test_a_real_prometheus_sees_the_replicas(sandbox: Sandbox, ns: str,
                                             operator: OperatorProcess, binary: Path) -> None:
    placed_chat(sandbox, ns, operator)
    with PrometheusProcess([f"127.0.0.1:{operator.metrics_port}"], binary=binary) as prom:

        def by_family() -> dict[str, float]:
            result = prom.query(
                f'sum by (family) (inferpool_replicas{{namespace="{ns}", inferencepool="chat"}})')
            return {r["metric"]["family"]: float(r["value"][1]) for r in result}

        assert wait_for(lambda: by_family() == {"tpu": 2.0, "nvidia": 1.0} and by_family(),
                        timeout=20, what="replicas by family in Prometheus")
        total = prom.query(f'sum(inferpool_ready_replicas{{namespace="{ns}"}})')
        assert float(total[0]["value"][1]) == 3
        rate = prom.query('sum(inferpool_reconcile_total{result="success"})')
        assert float(rate[0]["value"][1]) > 0


def chart_rules(sandbox: Sandbox) -> dict[str, Any]:
    """The alerting rules as the chart renders them into its PrometheusRule."""
    done = sandbox.helm("template", "ip", str(REPO / "charts" / "inferpool-operator"),
                        "--set", "metrics.prometheusRule.enabled=true",
                        "--show-only", "templates/prometheusrule.yaml")
    spec: dict[str, Any] = yaml.safe_load(done.stdout)["spec"]
    return spec


@pytest.mark.prometheus
def test_the_charts_shortfall_alert_fires_in_a_real_prometheus(
        sandbox: Sandbox, ns: str, operator: OperatorProcess, tmp_path: Path,
        binary: Path) -> None:
    """The chart's rules, loaded into Prometheus scraping the live operator: the shortfall
    alert fires for the pool that is short, the operator-health alerts stay quiet. Every `for:`
    is cut to 0s here; how long each alert waits is what tests/unit/alerts-test.yaml checks."""
    spec = chart_rules(sandbox)
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec))
    # The sandbox has 4 TPU v6e nodes: at most 40 req/s of the 100 asked for.
    apply(sandbox, ns, ipool("big", 100, [V6E]))
    with PrometheusProcess([f"127.0.0.1:{operator.metrics_port}"], binary=binary,
                           rule_files=[rules]) as prom:

        def firing() -> dict[str, list[dict[str, str]]]:
            out: dict[str, list[dict[str, str]]] = {}
            for r in prom.query('ALERTS{alertstate="firing"}'):
                out.setdefault(r["metric"]["alertname"], []).append(r["metric"])
            return out

        alerts = wait_for(lambda: any(a.get("inferencepool") == "big" and
                                      a.get("namespace") == ns
                                      for a in firing().get("InferpoolCapacityShortfall", []))
                          and firing(), timeout=60, what="InferpoolCapacityShortfall firing")
        (short,) = [a for a in alerts["InferpoolCapacityShortfall"]
                    if a.get("namespace") == ns]
        assert short["severity"] == "warning"
        value = prom.query(f'inferpool_shortfall_requests_per_second{{namespace="{ns}"}}')
        assert float(value[0]["value"][1]) == pytest.approx(60)
        for quiet in ("InferpoolNoLeader", "InferpoolReconcileStale",
                      "InferpoolReconcileFailing"):
            assert quiet not in alerts, alerts[quiet]
        assert not [a for a in alerts.get("InferpoolDemandUnknown", [])
                    if a.get("namespace") == ns]


def test_logs_are_json_with_object_references(sandbox: Sandbox, ns: str,
                                              operator: OperatorProcess) -> None:
    placed_chat(sandbox, ns, operator)
    raw = operator.log_path.read_text(errors="replace").splitlines()
    not_json = [line for line in raw if not _is_json_object(line)]
    assert not not_json, f"{len(not_json)} log lines are not JSON, e.g. {not_json[:3]}"
    lines = [json.loads(line) for line in raw]
    assert all({"event", "level", "logger", "timestamp"} <= line.keys() for line in lines)
    ours = [line for line in lines if line["event"] == "applied deployment"
            and line.get("deployment", "").startswith(f"{ns}/")]
    assert {line["deployment"] for line in ours} >= {f"{ns}/chat-v6e-v6e", f"{ns}/chat-h100-h100"}
    refs = [line["object"] for line in lines if line["logger"].startswith("kopf")
            and isinstance(line.get("object"), dict)]
    assert {"kind": "InferencePool", "namespace": ns, "name": "chat",
            "uid": status_uid(sandbox, ns)} in refs


def status_uid(sandbox: Sandbox, ns: str) -> str:
    uid: str = sandbox.get_json("ipool", "chat", "-n", ns)["metadata"]["uid"]
    return uid


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_events_are_not_repeated(sandbox: Sandbox, ns: str, operator: OperatorProcess) -> None:
    apply(sandbox, ns, ipool("big", 100, [V6E]))  # a lasting shortfall: 4 nodes, 40 req/s
    settle(sandbox, ns, {"big-v6e-v6e": 4})
    wait_for(lambda: any(e["reason"] == "InsufficientAccelerators" for e in
                         sandbox.get_json("events", "-n", ns)["items"]),
             timeout=30, what="the shortfall Event")
    ticks = sample_sum(scrape(operator), "inferpool_reconcile_total", result="success")
    wait_for(lambda: sample_sum(scrape(operator), "inferpool_reconcile_total",
                                result="success") >= ticks + 2, timeout=30,
             what="two more reconciles")
    events = sandbox.get_json("events", "-n", ns)["items"]
    ours = Counter((e["involvedObject"]["name"], e["reason"], e["message"]) for e in events
                   if e.get("reportingComponent") == "inferpool-operator")
    assert ours, "no Events from the operator"
    assert max(ours.values()) == 1, ours
    assert sum(e.get("count", 1) for e in events if e.get("reportingComponent") ==
               "inferpool-operator") == len(ours)
    # each Event names the instance (the pod, in a cluster) that wrote it
    assert {e["reportingInstance"] for e in events
            if e.get("reportingComponent") == "inferpool-operator"} == {operator.identity}


def test_snapshot_and_plan_print_the_applied_placement(
        sandbox: Sandbox, ns: str, operator: OperatorProcess, tmp_path: Path) -> None:
    placed_chat(sandbox, ns, operator)
    wait_for(lambda: status(sandbox, ns, "chat").get("readyReplicas") == 3, timeout=30,
             what="status.readyReplicas == 3")
    path = tmp_path / "cluster.json"
    sandbox.inferpool("snapshot", "-f", str(path))
    doc = json.loads(path.read_text())
    assert {d["metadata"]["name"] for d in doc["deployments"]
            if d["metadata"]["namespace"] == ns} == set(PLACED)

    done = sandbox.inferpool("plan", "--snapshot", str(path), "--output", "json", "-n", ns)
    (pool,) = json.loads(done.stdout)["pools"]
    planned = {f"chat-{r['variant']}-{r['nodePool']}": r["planned"] for r in pool["placement"]}
    now = {f"chat-{r['variant']}-{r['nodePool']}": r["now"] for r in pool["placement"]}
    assert planned == replicas(sandbox, ns) == PLACED
    assert now == PLACED
    assert pool["costPerHour"] == 80
    assert pool["reasons"]

    table = sandbox.inferpool("plan", "--snapshot", str(path), "-n", ns).stdout
    assert f"{ns}/chat: 30.0 req/s required" in table
    assert [line.split()[:5] for line in table.splitlines() if line.startswith("v6e ")] == [
        ["v6e", "v6e", "tpu", "2", "2"]]
    live = sandbox.inferpool("plan", "--output", "json", "-n", ns).stdout  # the live cluster
    assert json.loads(live)["pools"][0]["placement"] == pool["placement"]

    rows = sandbox.inferpool("status", "-n", ns).stdout.splitlines()
    assert next(line.split() for line in rows if line.startswith(ns))[:3] == [ns, "chat", "3/3"]


def test_a_pool_failure_is_counted(sandbox: Sandbox, ns: str, operator: OperatorProcess
                                   ) -> None:
    placed_chat(sandbox, ns, operator)
    before = scrape(operator)
    sandbox.inferpool("sandbox", "fail", "--name", sandbox.name, "--pool", "v6e")
    try:
        failovers = wait_for(lambda: sample_sum(
            scrape(operator), "inferpool_failovers_total", namespace=ns, inferencepool="chat",
            reason="NodePoolLost"), timeout=40, what="a NodePoolLost failover on /metrics")
        assert failovers == 1
        after = scrape(operator)
        assert sample_sum(after, "inferpool_pods_replaced_total") >= sample_sum(
            before, "inferpool_pods_replaced_total") + 2
        assert sample_sum(after, "inferpool_node_pool_nodes_ready", node_pool="v6e") == 0
        assert sample_sum(after, "inferpool_degraded", namespace=ns, reason="NodePoolLost") >= 1
    finally:
        sandbox.inferpool("sandbox", "recover", "--name", sandbox.name, "--pool", "v6e")
        wait_for(lambda: sample_sum(scrape(operator), "inferpool_node_pool_nodes_ready",
                                    node_pool="v6e") == 4, timeout=40, what="v6e Ready again")
