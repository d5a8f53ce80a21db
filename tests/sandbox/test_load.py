"""Rebalancing on load: a real Prometheus scrapes an exporter the test drives, the operator reads
demand from it and grows and shrinks replicas across accelerator families."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from inferpool.sandbox.prometheus import Exporter, PrometheusProcess
from tests.operator_process import OperatorProcess, running_operator
from tests.sandbox.test_operator import H100, V6E, apply, condition, ipool, replicas, settle
from tests.support import Sandbox, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.prometheus]

MODEL = "load-test-model"
QUERY = f'sum(rate(vllm:request_success_total{{model_name="{MODEL}"}}[5s]))'


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter() as exp:
        exp.set_rate(15.0, model_name=MODEL)  # between capacity steps, like the tests' rates
        yield exp


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter) -> Iterator[PrometheusProcess]:
    with PrometheusProcess([exporter.target]) as prom:
        yield prom


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, prometheus: PrometheusProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    yield from running_operator(sandbox, tmp_path_factory.mktemp("load"), "load",
                                f"--prometheus-url={prometheus.url}", "--tick-seconds=2")


def load_pool(scale_down_seconds: int) -> dict[str, Any]:
    pool = ipool("llm", 0, [H100, V6E], max_=12)
    pool["spec"]["demand"] = {
        "prometheus": {"query": QUERY, "timeoutSeconds": 2},
        "targetUtilization": 1.0,
        "scaleDown": {"stabilizationSeconds": scale_down_seconds},
    }
    return pool


def test_spike_grows_across_families_and_a_drop_shrinks_only_after_the_window(
    sandbox: Sandbox, namespace: str, exporter: Exporter, operator: OperatorProcess
) -> None:
    try:
        # rates sit between capacity steps (10 req/s per replica): a scrape's jitter must not
        # decide the replica count
        exporter.set_rate(15.0, model_name=MODEL)
        apply(sandbox, namespace, load_pool(scale_down_seconds=20))
        settle(sandbox, namespace, {"llm-v6e-v6e": 2}, timeout=60)
        # 55 req/s: the 4 TPU nodes give 40, the rest spills onto the next family
        exporter.set_rate(55.0, model_name=MODEL)
        spiked = time.monotonic()
        settle(sandbox, namespace, {"llm-v6e-v6e": 4, "llm-h100-h100": 2}, timeout=60)
        grow_seconds = time.monotonic() - spiked
        assert grow_seconds < 30
        # back to 15 req/s: nothing shrinks inside the 20 s window ...
        exporter.set_rate(15.0, model_name=MODEL)
        dropped = time.monotonic()
        while time.monotonic() - dropped < 12:
            assert sum(replicas(sandbox, namespace).values()) == 6
            time.sleep(1)
        # ... then the expensive H100 replicas go first
        settle(sandbox, namespace, {"llm-v6e-v6e": 2}, timeout=60)
        assert time.monotonic() - dropped >= 20
    finally:
        sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)


def test_prometheus_down_holds_replicas_and_sets_demand_unknown(
    sandbox: Sandbox, namespace: str, exporter: Exporter, prometheus: PrometheusProcess,
    operator: OperatorProcess
) -> None:
    try:
        exporter.set_rate(25.0, model_name=MODEL)
        apply(sandbox, namespace, load_pool(scale_down_seconds=0))
        settle(sandbox, namespace, {"llm-v6e-v6e": 3}, timeout=60)
        prometheus.stop()
        # While it shuts down Prometheus answers 503 for a moment (HTTPError); once it is gone
        # the reason must be that it cannot be reached.
        down = ("SourceUnreachable", "SourceTimeout")
        cond = wait_for(lambda: (c := condition(sandbox, namespace, "llm", "DemandUnknown"))
                        .get("status") == "True" and c.get("reason") in down and c,
                        timeout=30, what=f"DemandUnknown=True with a reason in {down}")
        assert cond["reason"] in down
        for _ in range(5):  # held, never scaled to zero
            assert replicas(sandbox, namespace) == {"llm-v6e-v6e": 3}
            time.sleep(1)
        prometheus.start()
        wait_for(lambda: condition(sandbox, namespace, "llm", "DemandUnknown").get(
            "status") == "False", timeout=40, what="DemandUnknown cleared")
        assert replicas(sandbox, namespace) == {"llm-v6e-v6e": 3}
    finally:
        if not prometheus.running:
            prometheus.start()
        sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
