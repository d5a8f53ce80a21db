"""The bearer-token Secret: read before every query (a rotated token is sent from the next read),
asynchronously with a timeout (a hung API server fails the reading, not the event loop)."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client

from inferpool.api.inference_pool import InferencePool
from inferpool.controller.demand import DemandBook
from inferpool.controller.planner import Planner
from inferpool.controller.settings import Settings
from inferpool.k8s.client import TimeoutApiClient
from inferpool.k8s.secrets import read_token
from inferpool.scaling import ManualClock, Reading
from tests.unit.test_controller_rules import pool_body
from tests.unit.test_scaling_sources import fake_prometheus


def auth_pool(query: str = "up") -> InferencePool:
    return InferencePool.model_validate(pool_body("p", demand={"prometheus": {
        "query": query, "auth": {"secretRef": {"name": "prom-token"}}}}))


def test_a_rotated_token_is_sent_from_the_next_read() -> None:
    secret = {"token": "first"}

    async def read_secret(namespace: str, name: str, key: str) -> str | Reading:
        return secret[key]

    async def run() -> list[str]:
        async with fake_prometheus() as fake:
            book = DemandBook(ManualClock(), fake.url, read_secret, wait_seconds=5)
            try:
                await book.observe_all({"ns/p": auth_pool()}, {})
                secret["token"] = "rotated"  # the Secret is updated: same spec, same pool
                await book.observe_all({"ns/p": auth_pool()}, {})
            finally:
                await book.close()
            return [r.headers["Authorization"] for r in fake.requests]

    assert asyncio.run(run()) == ["Bearer first", "Bearer rotated"]


def test_an_unreadable_secret_fails_the_reading_and_sends_no_query() -> None:
    async def read_secret(namespace: str, name: str, key: str) -> str | Reading:
        return Reading.failed("SecretUnreadable", f"Secret {namespace}/{name} does not exist")

    async def run() -> tuple[Any, int]:
        async with fake_prometheus() as fake:
            book = DemandBook(ManualClock(), fake.url, read_secret, wait_seconds=5)
            try:
                statuses = await book.observe_all({"ns/p": auth_pool()}, {})
            finally:
                await book.close()
            return statuses["ns/p"], len(fake.requests)

    status, sent = asyncio.run(run())
    assert status.reason == "SecretUnreadable"
    assert status.message.startswith("Secret ns/prom-token does not exist")
    assert sent == 0


@pytest.fixture
def hung_api() -> Iterator[client.ApiClient]:
    """An "API server" that takes connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        config = client.Configuration(host=f"http://127.0.0.1:{server.getsockname()[1]}")
        config.retries = urllib3.Retry(total=1, read=0, status=0, redirect=0)  # as api_client
        yield TimeoutApiClient(config, request_timeout=30)


async def _max_lag(until: asyncio.Future[Any]) -> float:
    """The longest the event loop stayed away from a 10 ms ticker while `until` ran."""
    worst = 0.0
    while not until.done():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - before - 0.01)
    return worst


def test_a_hung_api_server_neither_stalls_the_loop_nor_the_plan(
        hung_api: client.ApiClient) -> None:
    settings = Settings(secret_read_timeout_seconds=2.0, demand_wait_seconds=0.2,
                        prometheus_url="http://127.0.0.1:9")
    planner = Planner(settings, hung_api)

    async def run() -> tuple[float, float, Any, float]:
        started = time.monotonic()
        plan = asyncio.ensure_future(planner.demand.observe_all({"ns/p": auth_pool()}, {}))
        lag = await _max_lag(plan)
        planned_after = time.monotonic() - started
        reading = asyncio.ensure_future(planner._read_secret("ns", "prom-token", "token"))
        lag = max(lag, await _max_lag(reading))
        await planner.demand.close()
        return lag, planned_after, reading.result(), time.monotonic() - started

    lag, planned_after, reading, total = asyncio.run(run())
    # The loop was free the whole time (a blocking read would hold it for the 2 s timeout;
    # the margins are for a loaded 2-core machine).
    assert lag < 0.5, lag
    assert planned_after < 1.5, planned_after  # the plan waited demand_wait_seconds (0.2 s)
    assert isinstance(reading, Reading)
    assert reading.reason == "SecretUnreadable"
    assert "took more than 2s" in reading.message
    assert total < 5.0, total


def test_the_secret_must_carry_the_usage_label() -> None:
    class Core:
        def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> Any:
            return client.V1Secret(metadata=client.V1ObjectMeta(labels={"a": "b"}),
                                   data={"token": base64.b64encode(b"t").decode()})

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        got = asyncio.run(read_token(Core(), pool, "ns", "s", "token", timeout=1))  # type: ignore[arg-type]
    assert isinstance(got, Reading)
    assert "lacks the label inferpool.dev/usage=prometheus-auth" in got.message
