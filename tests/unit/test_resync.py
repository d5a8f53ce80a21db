"""The caches are resynced against a listing, both ways: ghosts of objects deleted while the
watch was away are dropped, objects it never delivered are fetched."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from inferpool.controller import views
from inferpool.controller.handlers import RESOURCES, Caches
from inferpool.controller.planner import INDEX_NAMES
from inferpool.controller.resync import Resyncer, compare, resync
from tests.unit.fake_cluster import NODES, deployment


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeApi:
    """The cluster as the API server has it: bodies by resource and key."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.objects: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in INDEX_NAMES}
        self.during_list: list[Any] = []  # run while a listing is in flight
        self.during_get: list[Any] = []
        self.lists = 0

    def add(self, name: str, body: dict[str, Any]) -> str:
        key = views.key(body)
        self.objects[name][key] = body
        return key

    def list_versions(self, name: str) -> dict[str, str | None]:
        self.lists += 1
        out = {k: b["metadata"].get("resourceVersion") for k, b in self.objects[name].items()}
        self.clock.now += 0.1
        for hook in self.during_list:
            hook(name)
        return out

    def get_object(self, name: str, key: str) -> dict[str, Any] | None:
        body = self.objects[name].get(key)
        self.clock.now += 0.01
        for hook in self.during_get:
            hook(name, key)
        return body


def node(name: str, rv: str = "1") -> dict[str, Any]:
    base = NODES[0]
    return {**base, "metadata": {**base["metadata"], "name": name, "resourceVersion": rv}}


def ours(name: str, replicas: int = 2) -> dict[str, Any]:
    body = deployment(name, "h100", "h100", "nvidia", replicas)
    body["metadata"]["name"] = name
    return body


def setup() -> tuple[FakeClock, Caches, FakeApi]:
    clock = FakeClock()
    return clock, Caches(clock), FakeApi(clock)


def watched(caches: Caches, name: str, body: dict[str, Any]) -> None:
    """What the watch handler does on an ADDED/MODIFIED event."""
    caches.put(name, body, RESOURCES[name][1])


def run(caches: Caches, api: FakeApi) -> dict[str, int]:
    return dict(asyncio.run(resync(caches, api.list_versions, api.get_object)))


def test_a_deployment_deleted_while_the_watch_was_away_is_dropped() -> None:
    clock, caches, api = setup()
    key = api.add("deployments", ours("chat"))
    watched(caches, "deployments", api.objects["deployments"][key])
    clock.now += 30
    del api.objects["deployments"][key]  # deleted during an API outage: no DELETED event
    assert run(caches, api) == {"deployments ghost": 1}
    assert key not in caches.views["deployments"]
    assert key not in caches.known["deployments"]


def test_ghost_nodes_and_pending_pods_are_dropped_too() -> None:
    clock, caches, api = setup()
    for n in ("a", "b"):
        watched(caches, "nodes", api.objects["nodes"][api.add("nodes", node(n))])
    clock.now += 1
    del api.objects["nodes"]["/b"]
    assert run(caches, api) == {"nodes ghost": 1}
    assert set(caches.views["nodes"]) == {"/a"}


def test_an_object_the_watch_never_delivered_is_fetched() -> None:
    _, caches, api = setup()
    api.add("nodes", node("new"))
    assert run(caches, api) == {"nodes missed": 1}
    assert caches.views["nodes"]["/new"]["metadata"]["name"] == "new"


def test_an_object_changed_while_the_watch_was_away_is_fetched_again() -> None:
    clock, caches, api = setup()
    key = api.add("deployments", ours("chat", replicas=2))
    watched(caches, "deployments", api.objects["deployments"][key])
    clock.now += 1
    api.add("deployments", {**ours("chat", replicas=5), "metadata": {
        **ours("chat")["metadata"], "resourceVersion": "9"}})
    assert run(caches, api) == {"deployments stale": 1}
    assert caches.views["deployments"][key]["spec"]["replicas"] == 5


def test_an_object_created_during_the_listing_is_not_a_ghost() -> None:
    _, caches, api = setup()

    def created(name: str) -> None:
        if name == "nodes":  # the watch delivers a node the listing did not include
            watched(caches, "nodes", node("late"))

    api.during_list.append(created)
    assert run(caches, api) == {}
    assert "/late" in caches.views["nodes"]


def test_an_object_deleted_while_it_was_fetched_is_not_brought_back() -> None:
    _, caches, api = setup()
    key = api.add("nodes", node("brief"))

    def deleted(name: str, k: str) -> None:  # the DELETED event arrives during the GET
        caches.forget(name, k)

    api.during_get.append(deleted)
    run(caches, api)
    assert key not in caches.views["nodes"]


def test_a_pod_without_accelerators_is_known_but_not_cached_and_no_ghost_hunt() -> None:
    _, caches, api = setup()
    plain = {"metadata": {"name": "web", "namespace": "x", "resourceVersion": "1"},
             "spec": {"containers": [{"name": "c"}]}, "status": {}}
    key = api.add("pods", plain)
    caches.put("pods", plain, RESOURCES["pods"][1])
    assert run(caches, api) == {}
    assert key in caches.known["pods"]
    assert key not in caches.views["pods"]


def test_compare_leaves_objects_with_newer_events_alone() -> None:
    clock, caches, _ = setup()
    caches.saw("nodes", "/old", "1")
    clock.now = 200
    caches.saw("nodes", "/fresh", "5")
    diff = compare(caches.known["nodes"], {"/fresh": "4"}, listed_at=150,
                   deleted=caches.deleted["nodes"])
    assert diff.ghosts == ["/old"]
    assert diff.stale == []  # the cached version came after the listing
    assert diff.missed == []


class Woken:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def attach(self, indexes: Mapping[str, Mapping[str, dict[str, Any]]]) -> None: ...

    def wake(self, reason: str) -> None:
        self.reasons.append(reason)


def test_synced_lists_only_when_the_last_resync_is_too_old() -> None:
    clock, caches, api = setup()
    planner = Woken()
    resyncer = Resyncer(caches, planner, api.list_versions, api.get_object)

    async def scenario() -> None:
        assert await resyncer.synced(10)  # nothing differs
        lists = api.lists
        clock.now += 5
        assert await resyncer.synced(10)
        assert api.lists == lists  # recent enough: no listing
        clock.now += 20
        watched(caches, "nodes", node("gone"))
        clock.now += 1
        assert not await resyncer.synced(10)  # a ghost: the plan was made from a wrong view
        assert planner.reasons == ["caches resynced"]
        assert await resyncer.synced(10)  # and now the caches are right

    asyncio.run(scenario())


def test_a_failing_listing_is_not_in_sync_and_does_not_crash() -> None:
    _, caches, api = setup()

    def broken(name: str) -> dict[str, str | None]:
        raise OSError("connection refused")

    resyncer = Resyncer(caches, Woken(), broken, api.get_object)
    assert asyncio.run(resyncer.synced(10)) is False


@pytest.mark.parametrize("reason", ["API server reachable again"])
def test_a_request_resyncs_at_once(reason: str) -> None:
    clock, caches, api = setup()
    planner = Woken()
    resyncer = Resyncer(caches, planner, api.list_versions, api.get_object, period=3600)
    watched(caches, "nodes", node("gone"))
    clock.now += 1

    async def scenario() -> None:
        ready = asyncio.Event()
        ready.set()
        task = asyncio.create_task(resyncer.run(ready))
        await asyncio.sleep(0.01)
        resyncer.request(reason)
        for _ in range(100):
            if planner.reasons:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    assert planner.reasons == ["caches resynced"]
    assert "/gone" not in caches.views["nodes"]
