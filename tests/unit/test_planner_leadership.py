"""The planner writes only while it leads: leadership is checked before every batch of writes
and every write, not only when a reconcile starts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inferpool.controller import planner as planner_module
from inferpool.controller import planning
from inferpool.controller.planner import INDEX_NAMES, Planner
from inferpool.controller.settings import Settings
from inferpool.k8s import events
from tests.unit.fake_cluster import H100, NODES, deployment, ipool


class Recorder:
    """Stands in for the API clients: records every write."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.on_write: list[Any] = []

    def record(self, what: str) -> None:
        self.writes.append(what)
        for hook in self.on_write:
            hook()


def _planner(monkeypatch: pytest.MonkeyPatch, leading: dict[str, bool]) -> tuple[Planner,
                                                                                  Recorder]:
    rec = Recorder()
    p = Planner(Settings(), api=None, is_leader=lambda: leading["now"])

    class Raw:
        data = b'{"metadata": {"resourceVersion": "7"}}'

    def apply(name: str, namespace: str, body: Any, **kwargs: Any) -> Raw:
        if kwargs.get("dry_run"):  # a new spec's dry run writes nothing
            return Raw()
        rec.record(f"apply {namespace}/{name}")
        return Raw()

    def status(group: str, version: str, namespace: str, plural: str, name: str, body: Any,
               **_: Any) -> None:
        rec.record(f"status {plural}/{name}")

    def budget(name: str, namespace: str, body: Any, **_: Any) -> None:
        rec.record(f"budget {namespace}/{name}")

    monkeypatch.setattr(p.apps, "patch_namespaced_deployment", apply)
    monkeypatch.setattr(p.policy, "patch_namespaced_pod_disruption_budget", budget)
    monkeypatch.setattr(planner_module, "list_owned", lambda *a, **k: set())
    monkeypatch.setattr(p.custom, "patch_namespaced_custom_object_status", status)
    monkeypatch.setattr(events, "post", lambda *a, **k: rec.record("event"))
    views = {name: {} for name in INDEX_NAMES}
    views["nodes"] = {f"/{n['metadata']['name']}": n for n in NODES}
    pools = [ipool("chat", 30, [H100]), ipool("code", 10, [H100])]
    views["inference_pools"] = {f"serving/{b['metadata']['name']}": b for b in pools}
    p.attach(views)
    return p, rec


def _reconcile(p: Planner) -> None:
    async def run() -> None:
        await p.reconcile()
        await p.demand.close()

    asyncio.run(run())
    p._poster.shutdown(wait=True)


def test_a_leader_writes_its_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    p, rec = _planner(monkeypatch, {"now": True})
    _reconcile(p)
    assert sum(w.startswith("apply") for w in rec.writes) == 2
    assert any(w.startswith("status") for w in rec.writes)


def test_leadership_lost_while_the_engine_runs_makes_no_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    leading = {"now": True}
    p, rec = _planner(monkeypatch, leading)
    place = planning.place  # the engine, as the planner's bindable_plan calls it

    def slow_place(*args: Any) -> Any:
        leading["now"] = False  # the renewal failed for longer than the renew deadline
        return place(*args)

    monkeypatch.setattr(planning, "place", slow_place)
    _reconcile(p)
    assert rec.writes == []
    assert p.skipped_writes == 4  # two Deployments, two PodDisruptionBudgets


def test_leadership_lost_during_the_apply_batch_stops_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    leading = {"now": True}
    monkeypatch.setattr(planner_module, "WRITE_CONCURRENCY", 1)  # one write at a time
    p, rec = _planner(monkeypatch, leading)
    rec.on_write.append(lambda: leading.update(now=False))
    _reconcile(p)
    assert rec.writes == ["apply serving/chat-h100-h100"]  # the one already under way


def test_a_scale_down_waits_for_caches_checked_against_a_listing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Karpenter's Cluster.Synced(): a plan that removes replicas is not acted on when the
    resync finds the caches were wrong (it re-plans from the corrected view instead)."""
    p, rec = _planner(monkeypatch, {"now": True})
    p.indexes["deployments"] = {"serving/chat-h100-h100": deployment(
        "chat", "h100", "h100", "nvidia", 8)}  # 8 replicas; 3 serve 30 req/s
    asked: list[float] = []

    async def synced(max_age: float) -> bool:
        asked.append(max_age)
        return False

    p.synced = synced
    _reconcile(p)
    assert asked
    assert rec.writes == []
    assert "caches resynced" in p._wake_reasons

    p2, rec2 = _planner(monkeypatch, {"now": True})
    p2.indexes["deployments"] = dict(p.indexes["deployments"])

    async def in_sync(max_age: float) -> bool:
        return True

    p2.synced = in_sync
    _reconcile(p2)
    assert "apply serving/chat-h100-h100" in rec2.writes  # the scale-down, once in sync
