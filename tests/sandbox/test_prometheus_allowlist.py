"""The operator queries only allowed Prometheus URLs: a pool naming another one gets
DemandUnknown/PrometheusURLNotAllowed, while a pool with an allowed URL is served."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from inferpool.sandbox.prometheus import Exporter, PrometheusProcess
from tests.operator_process import OperatorProcess, running_operator
from tests.sandbox.test_operator import V6E, apply, condition, ipool, settle, status
from tests.support import Sandbox, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.prometheus]

MODEL = "allowlist-model"
QUERY = f'sum(rate(vllm:request_success_total{{model_name="{MODEL}"}}[5s]))'


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusProcess]:
    with Exporter() as exporter:
        exporter.set_rate(15.0, model_name=MODEL)
        with PrometheusProcess([exporter.target]) as prom:
            yield prom


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, prometheus: PrometheusProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    # No --prometheus-url: the allow-list alone decides.
    yield from running_operator(sandbox, tmp_path_factory.mktemp("allowlist"), "allowlist",
                                f"--prometheus-allowed-urls={prometheus.url}/",
                                "--tick-seconds=2")


def prometheus_pool(name: str, url: str) -> dict[str, Any]:
    pool = ipool(name, 0, [V6E], max_=4)
    pool["spec"]["demand"] = {"prometheus": {"query": QUERY, "url": url, "timeoutSeconds": 2},
                              "targetUtilization": 1.0}
    return pool


def test_a_pool_with_a_url_off_the_list_gets_demand_unknown_and_the_others_are_served(
    sandbox: Sandbox, namespace: str, prometheus: PrometheusProcess, operator: OperatorProcess
) -> None:
    # The same Prometheus under another host name: it would answer, were it allowed.
    refused_url = prometheus.url.replace("127.0.0.1", "localhost")
    try:
        apply(sandbox, namespace, prometheus_pool("allowed", prometheus.url))
        apply(sandbox, namespace, prometheus_pool("refused", refused_url))
        # 15 req/s at 10 per replica: 2 replicas; the refused pool holds its minimum, 1
        settle(sandbox, namespace, {"allowed-v6e-v6e": 2, "refused-v6e-v6e": 1}, timeout=60)
        wait_for(lambda: condition(sandbox, namespace, "allowed", "DemandUnknown").get(
            "status") == "False", timeout=30, what="allowed pool's demand observed")
        assert status(sandbox, namespace, "allowed")["demand"] > 0
        cond = wait_for(lambda: condition(sandbox, namespace, "refused", "DemandUnknown").get(
            "status") == "True" and condition(sandbox, namespace, "refused", "DemandUnknown"),
            timeout=30, what="DemandUnknown=True on the refused pool")
        assert cond["reason"] == "PrometheusURLNotAllowed"
        assert refused_url in cond["message"]
        assert "--prometheus-allowed-urls" in cond["message"]
        events = sandbox.get_json("events", "-n", namespace)["items"]
        assert any(e["reason"] == "PrometheusURLNotAllowed"
                   and e["involvedObject"]["name"] == "refused" for e in events)
    finally:
        sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
