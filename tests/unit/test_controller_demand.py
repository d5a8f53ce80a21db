"""DemandBook: the Prometheus URL allow-list is enforced before any Secret is read or query sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inferpool.api.inference_pool import InferencePool
from inferpool.controller import demand
from inferpool.controller.demand import DemandBook
from inferpool.scaling import ManualClock, PrometheusConfig, Reading
from tests.unit.test_controller_rules import pool_body

OWN = "http://prom.monitoring:9090"


class FakeSource:
    """Stands in for PrometheusSource: records what would have been queried."""

    built: list[PrometheusConfig] = []

    def __init__(self, config: PrometheusConfig) -> None:
        self.built.append(config)

    async def read(self, *, bearer_token: str | None = None) -> Reading:
        return Reading.good(5.0)

    async def aclose(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_source(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeSource.built = []
    monkeypatch.setattr(demand, "PrometheusSource", FakeSource)


def pool(name: str, url: str | None) -> InferencePool:
    prometheus: dict[str, Any] = {"query": "up", "auth": {"secretRef": {"name": f"{name}-token"}}}
    if url is not None:
        prometheus["url"] = url
    return InferencePool.model_validate(pool_body(name, demand={"prometheus": prometheus}))


def observe(allowed: tuple[str, ...], pools: dict[str, InferencePool]
            ) -> tuple[dict[str, Any], list[str]]:
    secrets_read: list[str] = []

    async def read_secret(namespace: str, name: str, key: str) -> str:
        secrets_read.append(name)
        return "token"

    async def run() -> dict[str, Any]:
        book = DemandBook(ManualClock(), OWN, read_secret, allowed)
        try:
            return dict(await book.observe_all(pools, {}))
        finally:
            await book.close()

    return asyncio.run(run()), secrets_read


def test_a_refused_url_fails_the_reading_without_a_secret_or_a_query() -> None:
    statuses, secrets_read = observe(("https://thanos.example/tenant-a",), {
        "ns/evil": pool("evil", "http://u:pw@169.254.169.254/latest"),
        "ns/sibling": pool("sibling", "https://thanos.example/tenant-ab"),
        "ns/listed": pool("listed", "https://thanos.example/tenant-a/api"),
        "ns/own": pool("own", OWN + "/"),
        "ns/default": pool("default", None),
    })
    for key in ("ns/evil", "ns/sibling"):
        status = statuses[key]
        assert status.demand_unknown
        assert status.reason == "PrometheusURLNotAllowed"
        assert "--prometheus-allowed-urls" in status.message
    assert "http://169.254.169.254/latest is not allowed" in statuses["ns/evil"].message
    assert "pw" not in statuses["ns/evil"].message
    for key in ("ns/listed", "ns/own", "ns/default"):  # the other pools are served
        assert not statuses[key].demand_unknown
        assert statuses[key].demand_rps == 5.0
    assert sorted(secrets_read) == ["default-token", "listed-token", "own-token"]
    assert sorted(c.url for c in FakeSource.built) == [
        OWN, OWN + "/", "https://thanos.example/tenant-a/api"]


def test_empty_list_allows_only_the_operators_own_url_and_star_allows_any() -> None:
    pools = {"ns/a": pool("a", "http://other:9090"), "ns/b": pool("b", None)}
    statuses, secrets_read = observe((), pools)
    assert statuses["ns/a"].reason == "PrometheusURLNotAllowed"
    assert not statuses["ns/b"].demand_unknown
    assert secrets_read == ["b-token"]
    statuses, secrets_read = observe(("*",), pools)
    assert not any(s.demand_unknown for s in statuses.values())
    assert sorted(secrets_read) == ["a-token", "b-token"]


def test_tenancy_mode_scopes_each_query_to_its_pools_namespace() -> None:
    def made(name: str, query: str) -> InferencePool:
        return InferencePool.model_validate(pool_body(name, demand={"prometheus": {
            "query": query, "auth": {"secretRef": {"name": f"{name}-token"}}}}))

    secrets_read: list[str] = []

    async def read_secret(namespace: str, name: str, key: str) -> str:
        secrets_read.append(name)
        return "token"

    async def run() -> dict[str, Any]:
        book = DemandBook(ManualClock(), OWN, read_secret, tenancy_label="namespace")
        try:
            return dict(await book.observe_all({
                "team-a/ok": made("ok", 'sum(rate(requests_total{job="m"}[1m]))'),
                "team-a/other": made("other", 'sum(rate(requests_total{namespace="team-b"}[1m]))'),
            }, {}))
        finally:
            await book.close()

    statuses = asyncio.run(run())
    assert [c.query for c in FakeSource.built] == [
        'sum(rate(requests_total{job="m",namespace="team-a"}[1m]))']
    assert not statuses["team-a/ok"].demand_unknown
    refused = statuses["team-a/other"]
    assert refused.demand_unknown
    assert refused.reason == "QueryNotScoped"
    assert 'reads only the series of its own namespace (namespace="team-a")' in refused.message
    assert secrets_read == ["ok-token"]  # the refused pool's Secret is not even read
