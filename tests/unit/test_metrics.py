"""The operator's Prometheus metrics: names, units and labels; values after a reconcile; series
of deleted pools removed; failovers and decisions counted once; the HTTP endpoint; promtool."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferpool.controller import planning
from inferpool.controller.metrics import MetricsServer, OperatorMetrics
from inferpool.controller.report import Report
from inferpool.controller.settings import Settings
from inferpool.placement import Plan, place
from inferpool.scaling.recommender import DemandStatus, SourceState
from tests.unit.fake_cluster import H100, V6E, deployment, ipool, snapshot_doc

REPO = Path(__file__).resolve().parents[2]
BOUNDED_LABELS = {"namespace", "inferencepool", "variant", "family", "node_pool", "phase",
                  "solver", "result", "reason", "state", "product", "capacity_type", "source",
                  "kind", "code"}
# prometheus-client's process and platform collectors: the names every exporter uses
STANDARD = {"process_virtual_memory_bytes", "process_resident_memory_bytes",
            "process_start_time_seconds", "process_cpu_seconds", "process_open_fds",
            "process_max_fds", "python_info"}
# build info: labels are versions (one series per process)
INFO_LABELS = {"version", "python_version", "highspy_version"}


def observe(metrics: OperatorMetrics, doc: Mapping[str, Any],
            degraded: Mapping[str, Sequence[tuple[str, str]]] | None = None,
            demand_rps: float | None = 30.0) -> Plan:
    """One reconcile's worth of observations: the real engine on the fake cluster's views."""
    inputs = planning.read_cluster({n: doc[n] for n in planning.VIEW_NAMES})
    required = {p.key: planning.demand_from_status(p).required_rps for p in inputs.pools}
    call = planning.engine_call(inputs, required, Settings())
    plan = place(call.snapshot, call.demands, call.current, call.options)
    demands = {k: DemandStatus(required_rps=r, demand_rps=demand_rps, state=SourceState.OK,
                               reason="DemandObserved", message="", panic=False)
               for k, r in required.items()}
    report = Report(phases={"snapshot": 0.001, "demand": 0.0005, "engine": 0.02,
                            "apply": 0.003, "status": 0.002}, writes=3, plan=plan)
    metrics.observe_reconcile(
        report, pools=inputs.pools, snapshot=inputs.snapshot, demands=demands,
        targets=dict(plan.replicas), live=inputs.live, degraded=degraded or {},
        in_use={}, accelerator_pools=[])
    return plan


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def series(metrics: OperatorMetrics, name: str) -> list[dict[str, str]]:
    return [s.labels for family in metrics.registry.collect() for s in family.samples
            if s.name == name]


def chat(demand: float = 30) -> dict[str, Any]:
    return ipool("chat", demand, [H100, V6E], max_family_share=0.7)


def test_names_carry_prefix_units_and_bounded_labels() -> None:
    metrics = OperatorMetrics()
    observe(metrics, snapshot_doc([chat()]))
    families = {f.name: f for f in metrics.registry.collect()}
    assert families, "nothing registered"
    for name, family in families.items():
        if name in STANDARD:
            continue
        assert name.startswith("inferpool_"), name
        assert family.documentation, f"{name} has no help text"
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), name
        if family.type == "info":
            assert {k for s in family.samples for k in s.labels} == INFO_LABELS
            continue
        if family.type == "histogram" or "duration" in name:
            assert name.endswith("_seconds"), name
        if "capacity" in name or "demand_requests" in name or "shortfall" in name:
            assert name.endswith("_requests_per_second"), name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= BOUNDED_LABELS, (name, sample.labels)
    for expected in ("inferpool_reconcile", "inferpool_reconcile_duration_seconds",
                     "inferpool_planner_phase_duration_seconds",
                     "inferpool_solver_duration_seconds", "inferpool_replicas",
                     "inferpool_cost_dollars_per_hour", "inferpool_failovers",
                     "inferpool_node_pool_accelerators"):
        assert expected in families, expected


def test_a_reconcile_is_recorded_as_placed() -> None:
    metrics = OperatorMetrics()
    plan = observe(metrics, snapshot_doc([chat()]))
    # 30 req/s at 10 per replica; no family above 70%: 2 on TPU, 1 on H100 (as the operator)
    assert dict(plan.replicas) == {("serving/chat", "h100", "h100"): 1,
                                   ("serving/chat", "v6e", "v6e"): 2}
    assert value(metrics, "inferpool_reconcile_total", result="success") == 1
    assert value(metrics, "inferpool_reconcile_total", result="error") == 0
    assert value(metrics, "inferpool_reconcile_duration_seconds_count") == 1
    assert value(metrics, "inferpool_reconcile_duration_seconds_sum") == pytest.approx(0.0265)
    assert value(metrics, "inferpool_planner_phase_duration_seconds_count", phase="engine") == 1
    assert value(metrics, "inferpool_solver_duration_seconds_count", solver=plan.solver) == 1
    assert value(metrics, "inferpool_api_writes_total") == 3
    tpu = {"namespace": "serving", "inferencepool": "chat", "variant": "v6e", "family": "tpu",
           "node_pool": "v6e"}
    gpu = {**tpu, "variant": "h100", "family": "nvidia", "node_pool": "h100"}
    assert value(metrics, "inferpool_replicas", **tpu) == 2
    assert value(metrics, "inferpool_replicas", **gpu) == 1
    assert value(metrics, "inferpool_planned_replicas", **tpu) == 2
    assert value(metrics, "inferpool_ready_replicas", **tpu) == 0  # no Deployment yet
    pool = {"namespace": "serving", "inferencepool": "chat"}
    assert value(metrics, "inferpool_demand_requests_per_second", **pool) == 30
    assert value(metrics, "inferpool_required_capacity_requests_per_second", **pool) == 30
    assert value(metrics, "inferpool_planned_capacity_requests_per_second", **pool) == 30
    assert value(metrics, "inferpool_shortfall_requests_per_second", **pool) == 0
    assert value(metrics, "inferpool_cost_dollars_per_hour", **pool) == 2 * 20 + 40
    assert value(metrics, "inferpool_plan_moves", **pool) == 3  # all new
    assert value(metrics, "inferpool_inferencepools", state="valid") == 1
    h100 = {"node_pool": "h100", "family": "nvidia"}
    assert value(metrics, "inferpool_node_pool_nodes", **h100) == 2
    assert value(metrics, "inferpool_node_pool_accelerators", **h100) == 16
    assert value(metrics, "inferpool_node_pool_accelerators_available", **h100) == 16
    assert value(metrics, "inferpool_node_pool_accelerators_desired", **h100) == 8
    assert value(metrics, "inferpool_node_pool_info", **h100, product="NVIDIA-H100-80GB-HBM3",
                 capacity_type="on-demand", source="discovered") == 1


def test_ready_replicas_and_capacity_come_from_the_deployments() -> None:
    metrics = OperatorMetrics()
    observe(metrics, snapshot_doc([chat()], deployments=[
        deployment("chat", "v6e", "v6e", "tpu", 2, ready=1),
        deployment("chat", "h100", "h100", "nvidia", 1)]))
    tpu = {"namespace": "serving", "inferencepool": "chat", "variant": "v6e", "family": "tpu",
           "node_pool": "v6e"}
    assert value(metrics, "inferpool_ready_replicas", **tpu) == 1
    assert value(metrics, "inferpool_ready_capacity_requests_per_second",
                 namespace="serving", inferencepool="chat") == 20
    assert value(metrics, "inferpool_plan_moves", namespace="serving", inferencepool="chat") == 0


def test_series_of_a_deleted_pool_and_a_vanished_node_pool_disappear() -> None:
    metrics = OperatorMetrics()
    other = ipool("other", 10, [H100])
    observe(metrics, snapshot_doc([chat(), other]),
            degraded={"serving/other": [("Stockout", "node pool h100 is stocked out")]})
    assert any(s["inferencepool"] == "other" for s in series(metrics, "inferpool_replicas"))
    assert value(metrics, "inferpool_failovers_total", namespace="serving",
                 inferencepool="other", reason="Stockout") == 1

    # "other" deleted, and the TPU nodes gone
    h100_only = [n for n in snapshot_doc([])["nodes"] if n["metadata"]["name"].startswith("h")]
    observe(metrics, snapshot_doc([chat()], nodes=h100_only))
    for name in ("inferpool_replicas", "inferpool_planned_replicas", "inferpool_ready_replicas",
                 "inferpool_cost_dollars_per_hour", "inferpool_placement_changes_total",
                 "inferpool_failovers_total", "inferpool_degraded"):
        assert not any(s.get("inferencepool") == "other" for s in series(metrics, name)), name
    assert {s["node_pool"] for s in series(metrics, "inferpool_node_pool_accelerators")} == {
        "h100"}
    assert {s["node_pool"] for s in series(metrics, "inferpool_replicas")} == {"h100"}


def test_failovers_count_each_new_failure_once() -> None:
    metrics = OperatorMetrics()
    doc = snapshot_doc([chat()])
    lost = {"serving/chat": [("NodePoolLost", "node pool v6e has no healthy node")]}
    labels = {"namespace": "serving", "inferencepool": "chat", "reason": "NodePoolLost"}
    observe(metrics, doc)
    assert value(metrics, "inferpool_failovers_total", **labels) is None
    observe(metrics, doc, degraded=lost)
    observe(metrics, doc, degraded=lost)  # the same failure on the next tick
    assert value(metrics, "inferpool_failovers_total", **labels) == 1
    assert value(metrics, "inferpool_degraded", **labels) == 1
    observe(metrics, doc)  # recovered
    assert value(metrics, "inferpool_degraded", **labels) is None
    observe(metrics, doc, degraded=lost)  # and lost again
    assert value(metrics, "inferpool_failovers_total", **labels) == 2
    metrics.pods_replaced(3)
    assert value(metrics, "inferpool_pods_replaced_total") == 3


def test_placement_changes_count_decisions_not_ticks() -> None:
    metrics = OperatorMetrics()
    labels = {"namespace": "serving", "inferencepool": "chat"}
    observe(metrics, snapshot_doc([chat(30)]))
    assert value(metrics, "inferpool_placement_changes_total", **labels) == 3
    observe(metrics, snapshot_doc([chat(30)]))  # same plan while the replicas start
    assert value(metrics, "inferpool_placement_changes_total", **labels) == 3
    observe(metrics, snapshot_doc([chat(10)]))  # demand drops to one replica
    assert (value(metrics, "inferpool_placement_changes_total", **labels) or 0) > 3


def test_losing_leadership_removes_the_plan_series() -> None:
    metrics = OperatorMetrics()
    metrics.set_leader(True)
    observe(metrics, snapshot_doc([chat()]))
    assert series(metrics, "inferpool_replicas")
    assert value(metrics, "inferpool_leader") == 1
    metrics.set_leader(False)
    assert value(metrics, "inferpool_leader") == 0
    for name in ("inferpool_replicas", "inferpool_cost_dollars_per_hour",
                 "inferpool_node_pool_accelerators", "inferpool_placement_changes_total"):
        assert not series(metrics, name), name
    # the loop's own counters stay: they describe this process, not the plan
    assert value(metrics, "inferpool_reconcile_total", result="success") == 1


def test_unknown_demand_exports_no_demand_series() -> None:
    metrics = OperatorMetrics()
    observe(metrics, snapshot_doc([chat()]), demand_rps=None)
    assert not series(metrics, "inferpool_demand_requests_per_second")
    assert series(metrics, "inferpool_required_capacity_requests_per_second")


def test_exposition_passes_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    metrics = OperatorMetrics()
    metrics.set_leader(True)
    observe(metrics, snapshot_doc([chat(), ipool("other", 10, [H100])]),
            degraded={"serving/other": [("Stockout", "stocked out")]})
    metrics.reconcile_failed()
    text = generate_latest(metrics.registry)
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          check=False, timeout=30)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert not done.stdout.strip(), done.stdout.decode()  # no lint problem either
    assert not done.stderr.strip(), done.stderr.decode()
    parsed = {f.name for f in text_string_to_metric_families(text.decode())}
    assert "inferpool_replicas" in parsed


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, list[bool]]]:
    metrics = OperatorMetrics()
    ready = [False]
    srv = MetricsServer(metrics.registry, lambda: (ready[0], "why"), port=0,
                        host="127.0.0.1").start()
    try:
        yield srv, ready
    finally:
        srv.stop()


def get(port: int, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_http_endpoint_serves_metrics_readiness_and_health(
        server: tuple[MetricsServer, list[bool]]) -> None:
    srv, ready = server
    status, content_type, body = get(srv.port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "inferpool_reconcile_total" in body
    status, content_type, body = get(srv.port, "/metrics",
                                     {"Accept": "application/openmetrics-text"})
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")
    assert get(srv.port, "/readyz")[0] == 503
    ready[0] = True
    assert get(srv.port, "/readyz")[:1] == (200,)
    assert get(srv.port, "/healthz")[0] == 200
    assert get(srv.port, "/nope")[0] == 404


def test_every_metric_is_documented() -> None:
    doc = (REPO / "docs/observability.md").read_text()
    for family in OperatorMetrics().registry.collect():
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        assert f"`{name}`" in doc, name


# -- the process, the build, no _created, rejected writes -----------------------------------------

def exposition(metrics: OperatorMetrics) -> dict[str, Any]:
    """Family name -> family, as a scraper parses the text format."""
    text = generate_latest(metrics.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_no_created_series_are_exported() -> None:
    """`_created` doubles every counter and histogram series for a timestamp no dashboard or
    alert reads."""
    metrics = OperatorMetrics()
    observe(metrics, snapshot_doc([chat()]))
    metrics.write_failed("Deployment", 403)
    samples = [s.name for f in exposition(metrics).values() for s in f.samples]
    assert "inferpool_reconcile_total" in samples
    assert not [s for s in samples if s.endswith("_created")]


def test_process_platform_and_build_info_are_exported() -> None:
    import platform

    import inferpool

    families = exposition(OperatorMetrics())
    for name in ("process_cpu_seconds", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds", "python_info"):
        assert name in families, name
    (build,) = families["inferpool_build_info"].samples
    assert build.name == "inferpool_build_info"
    assert build.value == 1
    assert build.labels["version"] == inferpool.__version__
    assert build.labels["python_version"] == platform.python_version()
    assert build.labels["highspy_version"]


def test_rejected_writes_are_counted_by_kind_and_code() -> None:
    metrics = OperatorMetrics()
    metrics.write_failed("Deployment", 403)
    metrics.write_failed("Deployment", 403)
    metrics.write_failed("InferencePool", 422)
    metrics.write_failed("Pod", None)  # no HTTP answer at all
    assert value(metrics, "inferpool_api_write_errors_total", kind="Deployment",
                 code="403") == 2
    assert value(metrics, "inferpool_api_write_errors_total", kind="InferencePool",
                 code="422") == 1
    assert value(metrics, "inferpool_api_write_errors_total", kind="Pod", code="none") == 1
