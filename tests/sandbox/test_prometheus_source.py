"""PrometheusSource and DemandTracker against a real Prometheus scraping a driven exporter.

Real time is only spent waiting for Prometheus to scrape; the tracker's windows run on a
ManualClock, so the hold and recovery logic is checked without waiting for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from inferpool.scaling import (
    DemandTracker,
    ManualClock,
    PrometheusConfig,
    PrometheusSource,
    Reading,
    Reason,
    ScalingSettings,
    SourceState,
)
from tests.prometheus_harness import (
    Exporter,
    PrometheusProcess,
    PrometheusUnavailableError,
    ensure_prometheus,
)
from tests.support import wait_for

pytestmark = pytest.mark.prometheus

MODEL = "llama-70b"
SUMMED = f'sum(rate(vllm:request_success_total{{model_name="{MODEL}"}}[5s]))'
PER_SERIES = f'rate(vllm:request_success_total{{model_name="{MODEL}"}}[5s])'


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter() as exp:
        yield exp


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter) -> Iterator[PrometheusProcess]:
    try:
        binary = ensure_prometheus()
    except PrometheusUnavailableError as err:
        pytest.skip(str(err))
    with PrometheusProcess([exporter.target], binary=binary) as prom:
        yield prom


def read(prom: PrometheusProcess, query: str = SUMMED) -> Reading:
    async def once() -> Reading:
        cfg = PrometheusConfig(url=prom.url, query=query, timeout_seconds=2.0)
        async with PrometheusSource(cfg) as source:
            return await source.read()

    return asyncio.run(once())


def wait_for_demand(prom: PrometheusProcess, rps: float, query: str = SUMMED) -> Reading:
    """Until the query reads `rps` within 3 %: the rate window must first fill with new samples."""

    def close_enough() -> Reading | None:
        reading = read(prom, query)
        if reading.value is not None and abs(reading.value - rps) <= 0.03 * rps:
            return reading
        return None

    found = wait_for(close_enough, timeout=30, interval=0.5, what=f"demand {rps} rps via {query}")
    assert found is not None  # wait_for returns only a truthy value
    return found


def test_reads_the_driven_rate(exporter: Exporter, prometheus: PrometheusProcess) -> None:
    # Two series (as vLLM labels by finish reason): the summed query and the per-series one,
    # which PrometheusSource sums itself, must agree.
    exporter.set_rate(20.0, model_name=MODEL, finished_reason="stop")
    exporter.set_rate(10.0, model_name=MODEL, finished_reason="length")
    wait_for_demand(prometheus, 30.0)
    per_series = wait_for_demand(prometheus, 30.0, PER_SERIES)
    assert "2 sample(s)" in per_series.message

    exporter.set_rate(60.0, model_name=MODEL, finished_reason="stop")
    wait_for_demand(prometheus, 70.0)


def test_empty_result_is_a_failure(prometheus: PrometheusProcess) -> None:
    reading = read(prometheus, 'sum(rate(vllm:request_success_total{model_name="nope"}[5s]))')
    assert reading.reason == Reason.EMPTY_RESULT
    fixed = read(
        prometheus, 'sum(rate(vllm:request_success_total{model_name="nope"}[5s])) or vector(0)'
    )
    assert fixed.value == 0.0


def test_outage_holds_last_good_then_recovery_clears(
    exporter: Exporter, prometheus: PrometheusProcess
) -> None:
    exporter.set_rate(40.0, model_name=MODEL, finished_reason="stop")
    exporter.set_rate(0.0, model_name=MODEL, finished_reason="length")
    clock = ManualClock()
    tracker = DemandTracker(ScalingSettings(target_utilization=0.8, hold_seconds=300), clock)
    status = tracker.observe(wait_for_demand(prometheus, 40.0))
    assert status.state is SourceState.OK
    assert status.required_rps == pytest.approx(50.0, rel=0.03)

    prometheus.stop()
    try:
        clock.advance(15)
        failed = read(prometheus)
        assert failed.reason == Reason.UNREACHABLE
        status = tracker.observe(failed)
        assert status.demand_unknown
        assert status.state is SourceState.STALE
        assert status.reason == "SourceUnreachable"
        assert status.required_rps == pytest.approx(50.0, rel=0.03)
    finally:
        prometheus.start()

    clock.advance(15)
    status = tracker.observe(wait_for_demand(prometheus, 40.0))
    assert not status.demand_unknown
    assert status.reason == "DemandObserved"
    assert status.required_rps == pytest.approx(50.0, rel=0.03)
