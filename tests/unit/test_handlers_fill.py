"""handlers.fill: the planner starts only once the caches hold every object that exists."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from inferpool.controller.handlers import Caches, fill
from inferpool.controller.planner import INDEX_NAMES


class FakePlanner:
    def __init__(self) -> None:
        self.attached: Mapping[str, Mapping[str, dict[str, Any]]] | None = None
        self.woken: list[str] = []

    def attach(self, indexes: Mapping[str, Mapping[str, dict[str, Any]]]) -> None:
        self.attached = indexes

    def wake(self, reason: str) -> None:
        self.woken.append(reason)


def test_attaches_only_when_every_listed_object_was_seen() -> None:
    async def scenario() -> None:
        caches, planner = Caches(), FakePlanner()
        existing = {name: set() for name in INDEX_NAMES}
        existing["nodes"] = {"/n1", "/n2"}
        existing["pods"] = {"ns/p1"}
        task = asyncio.create_task(fill(caches, planner, lambda n: set(existing[n]),
                                        interval=0.01))
        caches.saw("nodes", "/n1")
        caches.saw("pods", "ns/p1")  # a pod without accelerators: seen, never cached
        await asyncio.sleep(0.05)
        assert planner.attached is None  # n2 not seen yet
        caches.saw("nodes", "/n2")
        await asyncio.wait_for(task, 1)
        assert planner.attached is caches.views
        assert planner.woken == ["caches complete"]

    asyncio.run(scenario())


def test_an_object_deleted_before_it_was_seen_does_not_block() -> None:
    async def scenario() -> None:
        caches, planner = Caches(), FakePlanner()
        existing = {name: set() for name in INDEX_NAMES}
        existing["deployments"] = {"ns/gone"}
        task = asyncio.create_task(fill(caches, planner, lambda n: set(existing[n]),
                                        interval=0.01))
        await asyncio.sleep(0.05)
        assert planner.attached is None
        existing["deployments"].clear()  # deleted before kopf listed it: no event will come
        await asyncio.wait_for(task, 1)
        assert planner.attached is caches.views

    asyncio.run(scenario())


def test_missing_crd_counts_as_empty_and_errors_are_retried() -> None:
    async def scenario() -> None:
        caches, planner = Caches(), FakePlanner()
        calls = {"nodes": 0}

        def list_keys(name: str) -> set[str]:
            if name == "inference_pools":
                raise ApiException(status=404, reason="Not Found")
            if name == "nodes":
                calls["nodes"] += 1
                if calls["nodes"] < 3:
                    raise ApiException(status=503, reason="Service Unavailable")
            return set()

        await asyncio.wait_for(fill(caches, planner, list_keys, interval=0.01), 1)
        assert calls["nodes"] == 3
        assert planner.attached is caches.views

    asyncio.run(scenario())


def test_deployments_that_are_not_ours_are_known_by_name() -> None:
    from inferpool.controller import views

    caches = Caches()
    theirs = {"metadata": {"name": "qa-l4-x-h100", "namespace": "ns"}, "spec": {}}
    ours = {"metadata": {"name": "qa-l4-x-h100", "namespace": "ns", "ownerReferences": [
        {"apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool", "name": "qa",
         "uid": "u", "controller": True}]}, "spec": {}}
    caches.put("deployments", theirs, views.deployment_view)
    assert caches.foreign_deployments == {"ns/qa-l4-x-h100"}
    caches.put("deployments", ours, views.deployment_view)  # adopted: ours now
    assert caches.foreign_deployments == set()
    caches.put("deployments", theirs, views.deployment_view)
    caches.forget("deployments", "ns/qa-l4-x-h100")
    assert caches.foreign_deployments == set()
