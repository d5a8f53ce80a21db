"""Tenancy mode against a real Prometheus: a tenant in namespace A cannot read a metric of
namespace B through its demand query (the operator scopes every selector to A, and refuses a
query that names B)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from inferpool.sandbox.prometheus import Exporter, PrometheusProcess
from tests.operator_process import OperatorProcess, running_operator
from tests.sandbox.test_operator import V6E, apply, condition, ipool, settle, status
from tests.support import Sandbox, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.prometheus]

METRIC = "vllm:request_success_total"
OTHER = "tenant-b"  # the other tenant's namespace, as its series are labelled


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter() as exporter:
        yield exporter


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter) -> Iterator[PrometheusProcess]:
    with PrometheusProcess([exporter.target]) as prom:
        yield prom


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, prometheus: PrometheusProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    yield from running_operator(sandbox, tmp_path_factory.mktemp("tenancy"), "tenancy",
                                f"--prometheus-url={prometheus.url}", "--prometheus-tenancy",
                                "--tick-seconds=2")


def prometheus_pool(name: str, query: str) -> dict[str, Any]:
    pool = ipool(name, 0, [V6E], max_=8)
    pool["spec"]["demand"] = {"prometheus": {"query": query, "timeoutSeconds": 2},
                              "targetUtilization": 1.0}
    return pool


def test_a_tenant_reads_only_its_own_namespaces_series(
    sandbox: Sandbox, namespace: str, exporter: Exporter, prometheus: PrometheusProcess,
    operator: OperatorProcess,
) -> None:
    exporter.set_rate(15.0, model_name="m", namespace=namespace)
    exporter.set_rate(50.0, model_name="m", namespace=OTHER)  # what the tenant must not see
    try:
        # Unscoped, this query would read 65 req/s; scoped, the tenant's own 15.
        apply(sandbox, namespace, prometheus_pool(
            "mine", f'sum(rate({METRIC}{{model_name="m"}}[5s]))'))
        apply(sandbox, namespace, prometheus_pool(
            "theirs", f'sum(rate({METRIC}{{namespace="{OTHER}"}}[5s])) or vector(0)'))
        settle(sandbox, namespace, {"mine-v6e-v6e": 2, "theirs-v6e-v6e": 1}, timeout=60)
        wait_for(lambda: condition(sandbox, namespace, "mine", "DemandUnknown").get(
            "status") == "False", timeout=30, what="the scoped pool's demand observed")
        assert status(sandbox, namespace, "mine")["demand"] == pytest.approx(15.0, rel=0.2)
        cond = wait_for(lambda: condition(sandbox, namespace, "theirs", "DemandUnknown").get(
            "status") == "True" and condition(sandbox, namespace, "theirs", "DemandUnknown"),
            timeout=30, what="DemandUnknown=True on the pool that names another namespace")
        assert cond["reason"] == "QueryNotScoped"
        assert f'namespace="{namespace}"' in cond["message"]
        assert f'namespace="{OTHER}"' in cond["message"]
        assert "demand" not in status(sandbox, namespace, "theirs")
        events = sandbox.get_json("events", "-n", namespace)["items"]
        assert any(e["reason"] == "QueryNotScoped" and e["involvedObject"]["name"] == "theirs"
                   for e in events)
    finally:
        sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
