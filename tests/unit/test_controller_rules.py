"""The operator's pure rules: Deployment building, make-before-break, failure verdicts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from inferpool.controller.health import (
    Backoff,
    HealthTracker,
    dead_node_pools,
    disrupted_zones,
    frozen_node_pools,
    pods_on_failed_nodes,
    serving_node_pools,
    unknown_nodes,
)
from inferpool.controller.translate import (
    LiveDeployment,
    MoveClock,
    live_deployment,
    make_before_break,
    parse_pools,
    time_moves,
)
from inferpool.k8s import deployments as dep

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def pool_body(name: str = "chat", namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace, "uid": "u1", "generation": 1},
        "spec": {"model": "m", "replicas": {"min": 1, "max": 10}, "demand": {"fixed": 10},
                 "variants": [{"name": "v6e", "accelerator": {"family": "tpu",
                                                               "type": "tpu-v6e-slice",
                                                               "count": 8},
                               "capacity": 10, "template": {"spec": {"containers": [
                                   {"name": "s", "image": "i"}]}}}], **spec},
    }


def live(key: tuple[str, str, str], replicas: int, ready: int) -> LiveDeployment:
    return LiveDeployment(key=key, name="-".join(key[1:]), namespace="ns", replicas=replicas,
                          ready=ready, body={})


def test_deployment_carries_pinning_tolerations_limits_and_owner() -> None:
    workload = dep.Workload(pool="chat", namespace="ns", owner_uid="u1", variant="h100",
                            family="nvidia", accelerators=8, template={"spec": {
                                "containers": [{"name": "s", "image": "i"}],
                                "tolerations": [{"key": "node.kubernetes.io/unreachable",
                                                 "operator": "Exists",
                                                 "tolerationSeconds": 600}]}})
    body = dep.build(workload, "h100", {"inferpool.dev/node-pool": "h100"}, 3)
    spec = body["spec"]["template"]["spec"]
    assert body["spec"]["replicas"] == 3
    assert spec["nodeSelector"] == {"inferpool.dev/node-pool": "h100"}
    assert spec["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert spec["containers"][0]["resources"]["requests"] == {"nvidia.com/gpu": "8"}
    unreachable = [t for t in spec["tolerations"] if t["key"] == "node.kubernetes.io/unreachable"]
    assert unreachable == [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                            "effect": "NoExecute", "tolerationSeconds": 30}]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert body["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u1"
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels["inferpool.dev/pool"] == "chat"
    assert labels["inferpool.dev/accelerator"] == "nvidia"
    found = live_deployment({**body, "status": {"readyReplicas": 2}})
    assert found is not None
    assert found.key == ("ns/chat", "h100", "h100")
    assert found.ready == 2


def test_matches_ignores_server_defaults_but_not_edits() -> None:
    desired = {"spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "s", "image": "i"}]}}}}
    defaulted = {"spec": {"replicas": 2, "revisionHistoryLimit": 10, "template": {"spec": {
        "containers": [{"name": "s", "image": "i", "imagePullPolicy": "IfNotPresent"}],
        "dnsPolicy": "ClusterFirst"}}}}
    assert dep.matches(desired, defaulted)
    assert not dep.matches(desired, {**defaulted, "spec": {**defaulted["spec"], "replicas": 4}})
    edited = {"spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "s", "image": "evil"}]}}}}
    assert not dep.matches(desired, edited)
    assert not dep.matches(desired, {"spec": {"replicas": 2, "template": {"spec": {
        "containers": [{"name": "s", "image": "i"}, {"name": "extra", "image": "x"}]}}}})


def test_long_names_are_hashed_and_stable() -> None:
    from inferpool.k8s.labels import deployment_name

    name = deployment_name("a" * 60, "variant", "node-pool")
    assert len(name) <= 52
    assert name == deployment_name("a" * 60, "variant", "node-pool")
    assert name != deployment_name("a" * 60, "variant", "other-pool")


def test_invalid_pools_are_reported_not_fatal() -> None:
    good = pool_body("good")
    bad = pool_body("bad")
    bad["spec"]["replicas"] = {"min": 5, "max": 2}
    privileged = pool_body("priv")
    privileged["spec"]["variants"][0]["template"]["spec"]["containers"][0][
        "securityContext"] = {"privileged": True}
    valid, invalid = parse_pools([good, bad, privileged])
    assert [p.key for p in valid] == ["ns/good"]
    messages = {i.key: i.message for i in invalid}
    assert "replicas" in messages["ns/bad"]
    assert "privileged" in messages["ns/priv"]
    valid, _ = parse_pools([privileged], allow_privileged=["ns"])
    assert [p.key for p in valid] == ["ns/priv"]


def test_make_before_break_holds_old_replicas_until_new_ones_are_ready() -> None:
    (pool,), _ = parse_pools([pool_body()])
    old, new = ("ns/chat", "v6e", "a"), ("ns/chat", "v6e", "b")
    planned = {new: 2}
    current = {old: live(old, 2, 2), new: live(new, 2, 0)}
    gate = make_before_break(planned, current, {pool.key: pool}, {pool.key: 0.0}, now=10.0)
    assert gate.targets == {old: 2, new: 2}
    assert "waiting for 2 new replica(s)" in gate.holding[pool.key]
    # once the new replicas are Ready the old ones go
    current[new] = live(new, 2, 2)
    gate = make_before_break(planned, current, {pool.key: pool}, {pool.key: 0.0}, now=11.0)
    assert gate.targets == {old: 0, new: 2}
    assert not gate.holding
    # new replicas that never became Ready release nothing, even after readyTimeoutSeconds
    current[new] = live(new, 2, 0)
    gate = make_before_break(planned, current, {pool.key: pool}, {pool.key: 0.0}, now=601.0)
    assert gate.targets[old] == 2
    # after it, old replicas go as far as new ones are Ready (before it, all wait)
    current[new] = live(new, 2, 1)
    gate = make_before_break(planned, current, {pool.key: pool}, {pool.key: 0.0}, now=599.0)
    assert gate.targets[old] == 2
    gate = make_before_break(planned, current, {pool.key: pool}, {pool.key: 0.0}, now=601.0)
    assert gate.targets[old] == 1
    assert "waiting for 1 new replica(s)" in gate.holding[pool.key]
    current[new] = live(new, 2, 0)
    # replicas in a dead node pool or of a broken variant never hold
    gate = make_before_break(planned, current, {pool.key: pool}, {pool.key: 0.0}, now=10.0,
                             dead_node_pools=frozenset({"a"}))
    assert gate.targets[old] == 0
    # the dead ones go after the timeout too
    gate = make_before_break(planned, current, {pool.key: pool}, {pool.key: 0.0}, now=601.0,
                             dead_node_pools=frozenset({"a"}))
    assert gate.targets[old] == 0
    # replicas in a zone-scale failure are never scaled down, even with nothing planned
    gate = make_before_break({}, current, {pool.key: pool}, {}, now=10.0,
                             frozen_node_pools=frozenset({"a"}))
    assert gate.targets[old] == 2


def test_a_new_move_restarts_the_make_before_break_timer() -> None:
    a, b, c = (("ns/chat", "v6e", n) for n in "abc")
    clock: MoveClock = {}
    current = {a: live(a, 2, 2), b: live(b, 2, 0)}
    assert time_moves(clock, {b: 2}, current, now=0.0) == {"ns/chat": 0.0}
    assert time_moves(clock, {b: 2}, current, now=500.0) == {"ns/chat": 0.0}
    # replanned to c after 500 s: c gets its own readyTimeoutSeconds
    assert time_moves(clock, {c: 2}, current, now=550.0) == {"ns/chat": 550.0}
    (pool,), _ = parse_pools([pool_body()])
    gate = make_before_break({c: 2}, current, {pool.key: pool},
                             time_moves(clock, {c: 2}, current, now=700.0), now=700.0)
    assert gate.targets[a] == 2
    # done: the clock forgets the pool
    current[c] = live(c, 2, 2)
    assert time_moves(clock, {c: 2}, current, now=710.0) == {}
    assert clock == {}


def pod(name: str, *, node: str | None, pool: str = "chat", variant: str = "v6e",
        node_pool: str = "v6e", age: float = 100, ready: bool = True,
        waiting: tuple[str, ...] = (), unschedulable: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable"})
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {
            "inferpool.dev/pool": pool, "inferpool.dev/variant": variant,
            "inferpool.dev/node-pool": node_pool},
            "creationTimestamp": (NOW - dt.timedelta(seconds=age)).isoformat()},
        "spec": {"nodeName": node, "containers": [{"resources": {"limits": {
            "google.com/tpu": "8"}}}]},
        "status": {"conditions": conditions, "waiting": list(waiting)},
    }


def node(name: str, ready: bool = True, zone: str | None = None) -> dict[str, Any]:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else
                                       "Unknown"}]}}


def test_pods_on_failed_or_missing_nodes_are_found() -> None:
    nodes = {"n1": node("n1"), "n2": node("n2", ready=False)}
    pods = [pod("a", node="n1"), pod("b", node="n2"), pod("c", node="gone"),
            pod("d", node=None)]
    assert pods_on_failed_nodes(pods, nodes) == [("ns", "b"), ("ns", "c")]


def test_pods_are_not_replaced_when_most_of_a_zone_goes_not_ready_at_once() -> None:
    # 10 nodes, 6 NotReady together (60 % >= 55 %): a partition, not six dead nodes
    nodes = {f"n{i}": node(f"n{i}", ready=i >= 6) for i in range(10)}
    pods = [pod(f"p{i}", node=f"n{i}") for i in range(10)]
    assert pods_on_failed_nodes(pods, nodes) == []
    assert disrupted_zones(nodes) == {""}
    # nor those of a node gone meanwhile (its zone is unknown)
    assert pods_on_failed_nodes([*pods, pod("g", node="gone")], nodes) == []
    # with the threshold raised above 60 %, or with only 5 of 10 down, they are replaced
    assert len(pods_on_failed_nodes(pods, nodes, unhealthy_zone_threshold=0.7)) == 6
    nodes["n5"] = node("n5")
    assert len(pods_on_failed_nodes(pods, nodes)) == 5
    # every node NotReady (an API-server outage seen as stale heartbeats): nothing deleted
    everything = {f"n{i}": node(f"n{i}", ready=False, zone=f"z{i % 2}") for i in range(4)}
    assert pods_on_failed_nodes([pod("a", node="n0")], everything) == []
    # one zone entirely down while the other serves: a real zone outage, replaced
    zones = {**{f"a{i}": node(f"a{i}", ready=False, zone="a") for i in range(3)},
             **{f"b{i}": node(f"b{i}", zone="b") for i in range(3)}}
    assert pods_on_failed_nodes([pod("x", node="a0")], zones) == [("ns", "x")]
    # two nodes out of three are not a zone-scale failure (k8s: more than two)
    small = {"n0": node("n0", ready=False), "n1": node("n1", ready=False), "n2": node("n2")}
    assert len(pods_on_failed_nodes([pod("a", node="n0"), pod("b", node="n1")], small)) == 2


def test_a_zone_scale_failure_freezes_its_node_pools_and_they_are_not_dead() -> None:
    from inferpool.cluster import build_snapshot

    views = {f"n{i}": {**node(f"n{i}", ready=i >= 6), "status": {
        "allocatable": {"google.com/tpu": "8"},
        "conditions": [{"type": "Ready", "status": "True" if i >= 6 else "Unknown"}]}}
        for i in range(10)}
    for i, view in views.items():
        view["metadata"]["labels"] = {"inferpool.dev/node-pool": "a" if int(i[1:]) < 6 else "b"}
    snapshot = build_snapshot(views.values())
    unknown = unknown_nodes(views)
    assert unknown == {f"n{i}" for i in range(6)}
    pods = [pod("p", node="n0", node_pool="a", ready=False)]
    assert frozen_node_pools(snapshot, pods, unknown) == {"a"}
    assert dead_node_pools(snapshot, {"a", "b"}, serving_node_pools(pods, views)) == {"a"}


def test_stockout_needs_the_bound_and_backs_off() -> None:
    tracker = HealthTracker(stockout_seconds=30, stockouts=Backoff(initial=60))
    young = [pod("a", node=None, ready=False, unschedulable=True, age=10)]
    tracker.observe(young, {}, now=0.0, wall=NOW)
    assert tracker.stocked_out(0.0) == []
    old = [pod("a", node=None, ready=False, unschedulable=True, age=40)]
    tracker.observe(old, {}, now=1.0, wall=NOW)
    assert tracker.stocked_out(1.0) == ["v6e"]
    assert tracker.stocked_out(62.0) == []  # retried after the backoff
    tracker.observe(old, {}, now=62.0, wall=NOW)  # still failing: doubled
    assert tracker.stocked_out(62.0 + 119) == ["v6e"]
    assert tracker.stocked_out(62.0 + 121) == []


def test_unschedulable_where_the_plan_checked_it_binds_caps_the_pool_at_once() -> None:
    # the engine and the scheduler disagree: no waiting for the stockout bound
    tracker = HealthTracker(stockout_seconds=30, stockouts=Backoff(initial=60))
    young = [pod("a", node=None, ready=False, unschedulable=True, age=1)]
    tracker.observe(young, {}, now=0.0, wall=NOW,
                    expected_to_bind={("ns/other", "v6e", "v6e")})
    assert tracker.stocked_out(0.0) == []  # another placement's check says nothing of this
    tracker.observe(young, {}, now=0.0, wall=NOW, expected_to_bind={("ns/chat", "v6e", "v6e")})
    assert tracker.stocked_out(0.0) == ["v6e"]
    assert "where the plan had room" in tracker.stockout_why["v6e"]


def test_broken_variant_only_when_no_replica_of_it_works() -> None:
    tracker = HealthTracker(broken_seconds=20)
    failing = [pod("a", node="n1", ready=False, waiting=("ImagePullBackOff",)),
               pod("b", node="n2", ready=False, waiting=("ImagePullBackOff",))]
    tracker.observe(failing, {}, now=0.0, wall=NOW)
    assert tracker.broken_variants(0.0) == {("ns/chat", "v6e")}
    assert "2 replica(s) ImagePullBackOff" in tracker.broken_why[("ns/chat", "v6e")]
    other = HealthTracker(broken_seconds=20)
    other.observe([*failing, pod("c", node="n3")], {}, now=0.0, wall=NOW)
    assert other.broken_variants(0.0) == frozenset()


@pytest.mark.parametrize("timeout", [50.0, 500.0])
def test_not_ready_in_time_uses_the_pools_ready_timeout(timeout: float) -> None:
    tracker = HealthTracker()
    tracker.observe([pod("a", node="n1", ready=False, age=100)], {"ns/chat": timeout},
                    now=0.0, wall=NOW)
    assert bool(tracker.broken_variants(0.0)) is (timeout < 100)


def test_old_pods_do_not_clear_a_stockout_but_new_scheduled_ones_do() -> None:
    tracker = HealthTracker(stockout_seconds=30, stockouts=Backoff(initial=60))
    old_running = pod("old", node="n1", age=3600)
    stuck = pod("new", node=None, ready=False, unschedulable=True, age=40)
    tracker.observe([old_running, stuck], {}, now=0.0, wall=NOW)
    assert tracker.stocked_out(0.0) == ["v6e"]
    # the retry after the backoff: the stuck pod is gone, only the old one runs
    tracker.observe([old_running], {}, now=61.0, wall=NOW + dt.timedelta(seconds=61))
    tracker.observe([old_running, stuck], {}, now=62.0, wall=NOW + dt.timedelta(seconds=62))
    assert tracker.stocked_out(62.0 + 119) == ["v6e"]  # backed off, not reset to 60 s
    fresh = pod("fresh", node="n2", age=-120)  # created after the stockout, and scheduled
    tracker.observe([old_running, fresh], {}, now=300.0, wall=NOW + dt.timedelta(seconds=300))
    assert tracker.stocked_out(300.0) == []
    assert "v6e" not in tracker.stockout_since


def test_pods_on_a_failed_node_do_not_make_the_variant_broken() -> None:
    tracker = HealthTracker()
    unready = [pod("a", node="n1", ready=False, age=1000)]
    tracker.observe(unready, {"ns/chat": 50.0}, now=0.0, wall=NOW,
                    nodes={"n1": node("n1", ready=False)})
    assert tracker.broken_variants(0.0) == frozenset()
    tracker.observe(unready, {"ns/chat": 50.0}, now=0.0, wall=NOW, nodes={"n1": node("n1")})
    assert tracker.broken_variants(0.0) == {("ns/chat", "v6e")}


def test_a_vanished_node_pool_name_is_dead_only_when_nothing_of_it_serves() -> None:
    from inferpool.cluster import build_snapshot

    views = {"n1": {**node("n1"), "status": {"allocatable": {"google.com/tpu": "8"},
                                             "conditions": [{"type": "Ready",
                                                             "status": "True"}]}}}
    views["n1"]["metadata"]["labels"] = {"inferpool.dev/node-pool": "renamed"}
    snapshot = build_snapshot(views.values())
    serving = [pod("a", node="n1", node_pool="old")]
    assert dead_node_pools(snapshot, {"old"}, serving_node_pools(serving, views)) == set()
    # not Ready, or Ready on a failed node: nothing serves under the old name
    for pods, nodes in (([pod("a", node="n1", node_pool="old", ready=False)], views),
                        (serving, {"n1": node("n1", ready=False)})):
        assert dead_node_pools(snapshot, {"old"}, serving_node_pools(pods, nodes)) == {"old"}
    # a pool whose nodes are all cordoned still serves from its running pods
    cordoned = build_snapshot([{**views["n1"], "spec": {"unschedulable": True, "taints": []}}])
    here = [pod("a", node="n1", node_pool="renamed")]
    assert dead_node_pools(cordoned, {"renamed"}, serving_node_pools(here, views)) == set()
    assert dead_node_pools(cordoned, {"renamed"}, frozenset()) == {"renamed"}
