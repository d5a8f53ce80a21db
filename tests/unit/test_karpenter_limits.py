"""The planner's reads of Karpenter NodePools' limits: only for elastic pools that select a
NodePool, refreshed at most every REFRESH_SECONDS, kept through a failed read, and quiet (and
rare) where Karpenter is not installed."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes.client.exceptions import ApiException

from inferpool.controller import karpenter_limits as kl
from tests.unit.test_elastic import elastic_pool


class FakeCustom:
    def __init__(self) -> None:
        self.calls = 0
        self.answer: dict[str, Any] | Exception = {"items": [
            {"metadata": {"name": "v6e"}, "spec": {"limits": {"google.com/tpu": "16"}}},
            {"metadata": {"name": "bare"}, "spec": {}}]}

    def list_cluster_custom_object(self, group: str, version: str, plural: str,
                                   **_: Any) -> dict[str, Any]:
        assert (group, version, plural) == ("karpenter.sh", "v1", "nodepools")
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_limits_are_read_for_elastic_pools_that_select_a_node_pool() -> None:
    custom, now = FakeCustom(), [0.0]
    reader = kl.NodePoolLimits(custom, lambda: now[0])  # type: ignore[arg-type]
    fixed = {**elastic_pool("v6e"), "spec": {"family": "tpu", "nodeSelector": {"a": "b"}}}
    assert asyncio.run(reader.read([fixed])) == {}
    assert custom.calls == 0  # not elastic

    pools = [elastic_pool("v6e")]
    assert asyncio.run(reader.read(pools)) == {"v6e": {"google.com/tpu": "16"}, "bare": {}}
    now[0] = kl.REFRESH_SECONDS - 1
    asyncio.run(reader.read(pools))
    assert custom.calls == 1  # not again before the refresh

    custom.answer = ApiException(status=403, reason="Forbidden")
    now[0] = kl.REFRESH_SECONDS
    assert asyncio.run(reader.read(pools))["v6e"] == {"google.com/tpu": "16"}  # kept
    assert custom.calls == 2

    custom.answer = ApiException(status=404, reason="Not Found")  # Karpenter uninstalled
    now[0] = 2 * kl.REFRESH_SECONDS
    assert asyncio.run(reader.read(pools)) == {}
    now[0] += kl.REFRESH_SECONDS
    asyncio.run(reader.read(pools))
    assert custom.calls == 3  # asked again only after ABSENT_RETRY_SECONDS
    now[0] += kl.ABSENT_RETRY_SECONDS
    asyncio.run(reader.read(pools))
    assert custom.calls == 4
