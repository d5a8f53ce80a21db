"""Elastic pools: room an autoscaler adds when pods ask, planned on before it exists, and the
autoscaler's word on a waiting replica (provisioning, or a stockout at once)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from inferpool.api import AcceleratorPool
from inferpool.cluster import build_snapshot
from inferpool.controller import autoscaler, binding, planning
from inferpool.controller import status as st
from inferpool.controller.health import (
    Backoff,
    HealthTracker,
    dead_node_pools,
    starting_nodes,
    waits_for_node,
)
from inferpool.controller.settings import Settings
from inferpool.controller.translate import node_selector, parse_pools
from inferpool.sandbox import pools as sandbox_pools
from inferpool.scaling.recommender import DemandStatus, SourceState
from tests.unit.test_binding import ipool, variant
from tests.unit.test_controller_rules import NOW, pod
from tests.unit.test_snapshot import node

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "elastic" / "accelerator-pools.yaml"


def elastic_pool(name: str, family: str = "tpu", per_node: int = 8, max_nodes: int = 4,
                 price: float = 2.7, timeout: int = 120) -> dict[str, Any]:
    return {"apiVersion": "inferpool.dev/v1alpha1", "kind": "AcceleratorPool",
            "metadata": {"name": name},
            "spec": {"family": family, "nodeSelector": {"karpenter.sh/nodepool": name},
                     "pricePerAcceleratorHour": price,
                     "elastic": {"acceleratorsPerNode": per_node, "maxNodes": max_nodes,
                                 "provisioningTimeoutSeconds": timeout}}}


def karpenter_node(name: str, pool: str) -> dict[str, Any]:
    return node(name, {"karpenter.sh/nodepool": pool,
                       "cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice"},
                {"google.com/tpu": "8", "cpu": "180", "memory": "1440Gi"})


def test_the_example_describes_the_karpenter_sandbox_pools() -> None:
    pools = {p.metadata.name: p for p in map(AcceleratorPool.model_validate,
                                             yaml.safe_load_all(EXAMPLE.read_text()))}
    sandbox = {p.name: p for p in sandbox_pools.load(sandbox_pools.KARPENTER_POOLS).pools}
    assert set(pools) == set(sandbox)
    for name, ap in pools.items():
        shape, elastic = sandbox[name], ap.spec.elastic
        assert elastic is not None
        assert shape.elastic is not None
        assert ap.spec.family.value == shape.family
        assert (elastic.accelerators_per_node, elastic.max_nodes) == (shape.accelerators,
                                                                      shape.elastic.max_nodes)
        assert elastic.instance_type == shape.labels["node.kubernetes.io/instance-type"]
        # the node Karpenter launches is the product the example declares
        found = build_snapshot([shape.node_manifest(0)]).pools[0]
        assert found.product == elastic.product, name
        assert elastic.provisioning_timeout_seconds > shape.elastic.provisioning_seconds


def test_an_elastic_pool_without_nodes_offers_its_planned_room() -> None:
    snapshot = build_snapshot([], [], [elastic_pool("v6e")])
    (pool,) = snapshot.pools
    assert pool.elastic is not None
    assert snapshot.nodes_of("v6e") == ()
    room = snapshot.room_of("v6e")
    assert [n.free for n in room] == [8] * 4
    assert all(n.planned for n in room)
    # nodes that exist count against maxNodes
    grown = build_snapshot([karpenter_node("a", "v6e")], [], [elastic_pool("v6e")])
    assert [n.planned for n in grown.room_of("v6e")] == [False, True, True, True]
    assert grown.free_accelerators("v6e") == 8  # what exists, for status and metrics


def test_a_nodes_labels_do_not_change_an_elastic_pools_node_selector() -> None:
    """A Deployment's nodeSelector stays the same when the first node comes: no rollout."""
    views: dict[str, Any] = {"accelerator_pools": [elastic_pool("v6e")], "inference_pools": [
        ipool("chat", 1, {**variant("v6e", "tpu", 8, 1.0),
                          "accelerator": {"family": "tpu", "count": 8,
                                          "type": "tpu-v6e-slice"}})]}
    (parsed,), _ = parse_pools(views["inference_pools"])
    v6e = parsed.model.spec.variant("v6e")
    before = planning.read_cluster(views).snapshot.pool("v6e")
    after = planning.read_cluster({**views, "nodes": [karpenter_node("a", "v6e")]}
                                  ).snapshot.pool("v6e")
    assert node_selector(v6e, before) == node_selector(v6e, after) == {
        "karpenter.sh/nodepool": "v6e"}


def test_replicas_are_planned_on_an_empty_elastic_pool_and_bind_there() -> None:
    views: dict[str, Any] = {"accelerator_pools": [elastic_pool("v6e", max_nodes=2)],
                             "inference_pools": [ipool("chat", 3, variant("v6e", "tpu", 4, 1.0))]}
    inputs = planning.read_cluster(views)
    call = planning.engine_call(inputs, {"ns/chat": 1.0}, Settings())
    plan, checked = planning.bindable_plan(inputs, call, Settings())
    assert dict(plan.replicas) == {("ns/chat", "v6e", "v6e"): 3}
    assert checked.binds  # two planned nodes of 8 take three replicas of 4


def test_planned_room_binds_only_as_many_as_max_nodes_hold() -> None:
    snapshot = build_snapshot([], [], [elastic_pool("v6e", max_nodes=1)])
    view = binding.SchedulerView({}, [], snapshot)
    rooms = view.rooms(["v6e"])
    shape = binding.PodShape({"google.com/tpu": 4, "cpu": 8000}, (), 4)
    key = ("ns/chat", "v6e", "v6e")
    result = binding.check({key: 3}, {}, {key: shape}, rooms, {})
    assert result.unbound == {key: 1}  # CPU is the autoscaler's choice of shape, not checked


def test_an_elastic_pool_with_no_node_is_not_lost() -> None:
    empty = build_snapshot([], [], [elastic_pool("v6e")])
    assert dead_node_pools(empty, {"v6e"}, frozenset()) == frozenset()
    down = node("a", {"karpenter.sh/nodepool": "v6e"}, {"google.com/tpu": "8"}, ready=False)
    failed = build_snapshot([down], [], [elastic_pool("v6e", timeout=120)])
    assert dead_node_pools(failed, {"v6e"}, frozenset()) == {"v6e"}
    # a node just launched is not Ready yet: starting, not lost, within the timeout
    for age, lost in ((30, False), (300, True)):
        born = {**down["metadata"], "creationTimestamp": (
            NOW - dt.timedelta(seconds=age)).isoformat()}
        starting = starting_nodes(failed, {"a": {**down, "metadata": born}}, NOW)
        assert (dead_node_pools(failed, {"v6e"}, frozenset(), starting) == {"v6e"}) is lost


def event(pod_name: str, reason: str, component: str, at: dt.datetime, message: str = "m",
          kind: str = "Pod") -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "namespace": "ns", "name": pod_name},
            "reason": reason, "source": {"component": component}, "message": message,
            "lastTimestamp": at.isoformat().replace("+00:00", "Z")}


def test_signals_keep_each_pods_latest_autoscaler_word() -> None:
    t = NOW
    said = autoscaler.signals([
        event("a", "Nominated", "karpenter", t, "Pod should schedule on: nodeclaim/v6e-x"),
        event("a", "FailedScheduling", "karpenter", t + dt.timedelta(seconds=5),
              "Failed to schedule pod, no instance type"),
        event("b", "FailedScheduling", "default-scheduler", t, "0/3 nodes are available"),
        event("c", "TriggeredScaleUp", "cluster-autoscaler", t, "pod triggered scale-up"),
        event("d", "Nominated", "karpenter", t, kind="Node"),
    ])
    assert set(said) == {"ns/a", "ns/c"}  # the scheduler's word and other kinds are no verdict
    assert not said["ns/a"].provisioning
    assert said["ns/a"].says == "Karpenter: Failed to schedule pod, no instance type"
    assert said["ns/c"].provisioning


def waiting(name: str = "a", age: float = 100) -> dict[str, Any]:
    return pod(name, node=None, ready=False, unschedulable=True, age=age)


def test_a_replica_waiting_for_a_node_is_provisioning_not_a_stockout() -> None:
    tracker = HealthTracker(stockout_seconds=30, stockouts=Backoff(initial=60))
    nominated = autoscaler.signals([event("a", "Nominated", "karpenter", NOW, "on nodeclaim/x")])
    tracker.observe([waiting(age=100)], {}, now=0.0, wall=NOW, elastic={"v6e": 600.0},
                    autoscaler=nominated, expected_to_bind={("ns/chat", "v6e", "v6e")})
    assert tracker.stocked_out(0.0) == []  # past the stockout bound, and planned to bind
    assert tracker.provisioning == {("ns/chat", "v6e"): (
        "1 replica(s) wait for nodes of elastic pool v6e (Karpenter: on nodeclaim/x)")}
    assert waits_for_node(waiting(), {"v6e"})
    assert not waits_for_node(waiting(), {"h100"})


def test_the_autoscaler_saying_it_cannot_is_a_stockout_at_once() -> None:
    tracker = HealthTracker(stockout_seconds=30, stockouts=Backoff(initial=60))
    refused = autoscaler.signals([event("a", "FailedScheduling", "karpenter", NOW,
                                        "Failed to schedule pod, no instance type satisfied")])
    tracker.observe([waiting(age=3)], {}, now=0.0, wall=NOW, elastic={"v6e": 600.0},
                    autoscaler=refused)
    assert tracker.stocked_out(0.0) == ["v6e"]
    assert tracker.stockout_why["v6e"] == (
        "the autoscaler cannot launch a node for 1 replica(s); Karpenter: Failed to schedule "
        "pod, no instance type satisfied")
    assert tracker.provisioning == {}
    # retried after the backoff like any stockout
    assert tracker.stocked_out(61.0) == []


def test_an_earlier_pods_refusal_is_not_this_ones() -> None:
    tracker = HealthTracker()
    old = autoscaler.signals([event("a", "FailedScheduling", "karpenter",
                                    NOW - dt.timedelta(seconds=60))])
    tracker.observe([waiting(age=3)], {}, now=0.0, wall=NOW, elastic={"v6e": 600.0},
                    autoscaler=old)
    assert tracker.stocked_out(0.0) == []


def test_provisioning_past_the_timeout_is_a_stockout() -> None:
    tracker = HealthTracker(stockouts=Backoff(initial=60))
    tracker.observe([waiting(age=119)], {}, now=0.0, wall=NOW, elastic={"v6e": 120.0})
    assert tracker.stocked_out(0.0) == []
    tracker.observe([waiting(age=121)], {}, now=1.0, wall=NOW, elastic={"v6e": 120.0})
    assert tracker.stocked_out(1.0) == ["v6e"]
    assert "waited over 120 s for a node" in tracker.stockout_why["v6e"]


def test_ready_says_provisioning_while_replicas_wait_for_nodes() -> None:
    (parsed,), _ = parse_pools([ipool("chat", 1, variant("v6e", "tpu", 4, 1.0))])
    snapshot = build_snapshot([], [], [elastic_pool("v6e")])
    demand = DemandStatus(required_rps=1.0, demand_rps=1.0, state=SourceState.OK,
                          reason="Fixed", message="", panic=False)
    new = st.pool_status(parsed, None, demand, {("ns/chat", "v6e", "v6e"): 1}, {}, snapshot,
                         None, [], NOW, ["1 replica(s) wait for nodes of elastic pool v6e"])
    ready = next(c for c in new["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Provisioning")
    assert ready["message"].endswith("; 1 replica(s) wait for nodes of elastic pool v6e")


def test_each_inference_pool_is_told_of_its_own_waiting_replicas() -> None:
    tracker = HealthTracker()
    pods = [pod("a", node=None, ready=False, unschedulable=True, age=5),
            pod("b", node=None, ready=False, unschedulable=True, age=5),
            pod("c", node=None, ready=False, unschedulable=True, age=5, pool="other")]
    tracker.observe(pods, {}, now=0.0, wall=NOW, elastic={"v6e": 600.0})
    assert tracker.provisioning == {
        ("ns/chat", "v6e"): "2 replica(s) wait for nodes of elastic pool v6e",
        ("ns/other", "v6e"): "1 replica(s) wait for nodes of elastic pool v6e"}


def test_a_karpenter_node_pools_limits_cap_max_nodes() -> None:
    """Karpenter launches no node past a NodePool's limits: the plan uses no more room."""
    limits = {"v6e": {"google.com/tpu": "16", "cpu": "1000"}}
    capped = build_snapshot([karpenter_node("a", "v6e")], [], [elastic_pool("v6e")],
                            node_pool_limits=limits)
    elastic = capped.pool("v6e").elastic
    assert elastic is not None
    assert (elastic.max_nodes, elastic.declared_max_nodes) == (2, 4)
    assert elastic.limited_by == "Karpenter NodePool v6e limits google.com/tpu to 16"
    assert [n.planned for n in capped.room_of("v6e")] == [False, True]  # the node counts
    # a nodes limit, the tighter of the two; limits above maxNodes, or of another NodePool,
    # or on other resources change nothing
    assert node_cap_of({"v6e": {"google.com/tpu": "16", "nodes": "1"}}) == 1
    assert node_cap_of({"v6e": {"google.com/tpu": "64"}}) == 4
    assert node_cap_of({"other": {"google.com/tpu": "8"}}) == 4
    assert node_cap_of({"v6e": {"cpu": "10", "google.com/tpu": "not a quantity"}}) == 4
    assert node_cap_of({"v6e": {"google.com/tpu": "7"}}) == 0  # not one whole node


def node_cap_of(limits: dict[str, dict[str, str]]) -> int:
    elastic = build_snapshot([], [], [elastic_pool("v6e")],
                             node_pool_limits=limits).pool("v6e").elastic
    assert elastic is not None
    return elastic.max_nodes


def test_the_accelerator_pool_status_says_how_far_it_may_grow_and_why() -> None:
    ap = elastic_pool("v6e")
    snapshot = build_snapshot([], [], [ap], node_pool_limits={"v6e": {"google.com/tpu": "8"}})
    status = st.accelerator_pool_status(ap, snapshot, {}, NOW)
    assert (status["maxNodes"], status["maxNodesLimitedBy"]) == (
        1, "Karpenter NodePool v6e limits google.com/tpu to 8")
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("True", "CanGrow")  # no node, but room
    assert ready["message"] == ("0/0 nodes Ready and schedulable; elastic: may grow to 1 "
                                "nodes (Karpenter NodePool v6e limits google.com/tpu to 8; "
                                "maxNodes is 4)")
    full = build_snapshot([], [], [ap], node_pool_limits={"v6e": {"nodes": "0"}})
    (ready,) = st.accelerator_pool_status(ap, full, {}, NOW)["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "AtNodeLimit")
    plain = st.accelerator_pool_status(ap, build_snapshot([], [], [ap]), {}, NOW)
    assert (plain["maxNodes"], plain["maxNodesLimitedBy"]) == (4, None)


def test_plans_follow_the_node_pools_limits() -> None:
    views: dict[str, Any] = {"accelerator_pools": [elastic_pool("v6e")],
                             "inference_pools": [ipool("chat", 3, variant("v6e", "tpu", 8, 1.0))]}
    inputs = planning.read_cluster(views, node_pool_limits={"v6e": {"google.com/tpu": "16"}})
    call = planning.engine_call(inputs, {"ns/chat": 3.0}, Settings())
    plan, _ = planning.bindable_plan(inputs, call, Settings())
    assert dict(plan.replicas) == {("ns/chat", "v6e", "v6e"): 2}  # 2 nodes, not 3 of maxNodes 4
