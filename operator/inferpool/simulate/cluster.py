"""A simulated Kubernetes: nodes, Deployments and their pods on a simulated clock.

Only what decides serving capacity and cost is modelled: a Deployment keeps `replicas` pods
(a ReplicaSet recreates deleted ones), the scheduler binds a pending pod to the fullest node
of its node pools that still fits it, a bound pod is Ready after its start-up delay, and
- a failed node's pods serve nothing at once, but the node (and its pods' Ready condition) is
  seen NotReady only `failure_detection` later; its pods are evicted after their Deployment's
  toleration (unless a policy deletes them first, as the operator does);
- a stocked-out node pool still looks free, but nothing new binds there until the stockout
  ends (running pods stay);
- cost accrues per accelerator of every bound pod on a working node, at the pool's price of
  the moment (pending pods and dead nodes cost nothing);
- an elastic pool (Karpenter-like) launches a node for pods that find no room, which takes
  pods `provisioning_seconds` later, up to `max_nodes`; removes a node empty for
  `consolidate_after_seconds`; launches nothing during a `stockout` window and says so on the
  waiting pods (`autoscaler_signals`); it is billed per launched node.
Policies act through `set_replicas` and `delete_pods_on_failed_nodes` only, and read the
cluster as the operator does: a ClusterSnapshot, Deployments (spec and ready replicas) and pod
views shaped like the operator's own (controller/views.py).
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from inferpool.cluster import ClusterSnapshot, Elastic, Family, Node, NodePool
from inferpool.controller.autoscaler import Signal
from inferpool.k8s import labels as lbl
from inferpool.simulate.scenario import (
    NAMESPACE,
    Outage,
    PriceChange,
    Scenario,
    Stockout,
    replica_accelerators,
)

# The trace's wall-clock origin (a Monday), for pods' creationTimestamp.
EPOCH: Final = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)
ANY_POOL: Final = "*"  # a Deployment not pinned to one node pool (the static baseline)
MOVE_WINDOW: Final = 600.0  # a removal this soon after an add elsewhere is a move

DepKey = tuple[str, str, str]  # (pool key "sim/<model>", variant, node pool or ANY_POOL)


@dataclass(frozen=True, slots=True)
class Shape:
    """What a Deployment's pods are: accelerators, throughput and start-up delay."""

    model: str
    variant: str
    family: Family
    accelerators: int
    capacity: float
    startup: float


@dataclass(slots=True, eq=False)
class SimNode:
    name: str
    pool: str
    allocatable: int
    used: int = 0
    up_at: float = 0.0  # an elastic pool's new node takes pods from then on
    empty_since: float | None = None


@dataclass(slots=True, eq=False)
class SimPod:
    uid: int
    dep: SimDeployment
    created: float
    node: SimNode | None = None
    ready_at: float | None = None


@dataclass(eq=False)
class SimDeployment:
    key: DepKey
    shape: Shape
    pools: tuple[str, ...]  # where its pods may go, in the scheduler's order
    toleration: float
    replicas: int = 0
    pods: list[SimPod] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Measure:
    """One step's outcome: Ready capacity per model, cost rate, Ready replicas per family."""

    capacity: Mapping[str, float]  # model name -> rps of Ready pods
    cost_per_hour: float
    ready: Mapping[tuple[str, str], int]  # (model, family) -> Ready pods


class SimCluster:
    def __init__(self, scenario: Scenario, warm_until: float = 0.0) -> None:
        self.scenario = scenario
        self.warm_until = warm_until  # pods bound by then are Ready at once (the warm start)
        self.nodes: dict[str, list[SimNode]] = {
            p.name: [SimNode(f"{p.name}-{i}", p.name, p.accelerators_per_node)
                     for i in range(p.nodes)]
            for p in scenario.node_pools}
        self.elastic = {p.name: p for p in scenario.node_pools if p.elastic is not None}
        self._launched = {name: len(self.nodes[name]) for name in self.elastic}  # for names
        self.nodes_launched = 0
        self.nodes_removed = 0
        # pod uid -> the autoscaler's word on it (True: a node is coming), as of the last settle
        self._said: dict[int, tuple[bool, str]] = {}
        self._now = 0.0
        self._registered_count = sum(len(ns) for ns in self.nodes.values())
        self.prices = {p.name: float(p.price_per_accelerator_hour) for p in scenario.node_pools}
        self.failed: dict[str, float] = {}  # pool -> when its nodes failed
        self.not_ready: dict[str, float] = {}  # pool -> when that became visible
        self.stocked_out: set[str] = set()
        self.deployments: dict[DepKey, SimDeployment] = {}
        self.version = 0  # bumped whenever what a snapshot shows changes
        self._snapshot: tuple[int, ClusterSnapshot] | None = None
        self._timeline = self._build_timeline(scenario)
        self._uid = 0
        self.pods_started = 0  # pods bound to a node
        self._adds: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
        self.moves = 0

    # --- time -------------------------------------------------------------------------------

    @staticmethod
    def _build_timeline(scenario: Scenario) -> list[tuple[float, int, str, str, float]]:
        detect = scenario.cluster.failure_detection_seconds
        timeline: list[tuple[float, int, str, str, float]] = []
        for i, e in enumerate(scenario.events):
            if isinstance(e, Outage):
                timeline += [(e.from_, i, "fail", e.pool, 0.0),
                             (min(e.from_ + detect, e.to), i, "notready", e.pool, 0.0),
                             (e.to, i, "recover", e.pool, 0.0)]
            elif isinstance(e, Stockout):
                timeline += [(e.from_, i, "stockout", e.pool, 0.0),
                             (e.to, i, "stocked", e.pool, 0.0)]
            elif isinstance(e, PriceChange):
                timeline.append((e.at, i, "price", e.pool, e.price_per_accelerator_hour))
        heapq.heapify(timeline)
        return timeline

    def advance(self, now: float) -> None:
        """Everything that happens without a policy up to `now`: events, evictions, ReplicaSets
        replacing deleted pods, scheduling, readiness."""
        while self._timeline and self._timeline[0][0] <= now:
            at, _, kind, pool, value = heapq.heappop(self._timeline)
            self._event(kind, pool, value, at, now)
        for dep in self.deployments.values():
            for pod in list(dep.pods):
                if pod.node is not None and pod.node.pool in self.not_ready and (
                        now >= self.not_ready[pod.node.pool] + dep.toleration):
                    self._delete(pod)  # taint-based eviction
        self.settle(now)

    def _event(self, kind: str, pool: str, value: float, at: float, now: float) -> None:
        if kind == "fail":
            self.failed[pool] = at
        elif kind == "notready":
            if pool in self.failed:
                self.not_ready[pool] = at
                self.version += 1
        elif kind == "recover":
            self.failed.pop(pool, None)
            self.not_ready.pop(pool, None)
            self.version += 1
            for dep in self.deployments.values():
                for pod in dep.pods:
                    if pod.node is not None and pod.node.pool == pool:
                        pod.ready_at = now + dep.shape.startup  # the kubelet restarts it
        elif kind == "stockout":
            self.stocked_out.add(pool)
        elif kind == "stocked":
            self.stocked_out.discard(pool)
        elif kind == "price":
            self.prices[pool] = value
            self.version += 1

    def settle(self, now: float) -> None:
        """ReplicaSets create missing pods; the scheduler binds what fits; the autoscaler
        launches nodes for what does not."""
        self._registered(now)
        pending: list[SimPod] = []
        for dep in self.deployments.values():
            while len(dep.pods) < dep.replicas:
                self._uid += 1
                dep.pods.append(SimPod(self._uid, dep, now))
            pending.extend(p for p in dep.pods if p.node is None)
        pending.sort(key=lambda p: (-p.dep.shape.accelerators, p.created, p.uid))
        for pod in pending:
            self._bind(pod, now)
        self._autoscale([p for p in pending if p.node is None], now)
        self._drop_empty()

    def _autoscale(self, waiting: list[SimPod], now: float) -> None:
        """The autoscaler: waiting pods first take room on nodes already coming, then new nodes
        are launched for the rest; empty nodes past their consolidation delay go."""
        self._said = {}
        if not self.elastic:
            return
        coming = {name: [n.allocatable - n.used for n in self.nodes[name] if n.up_at > now]
                  for name in self.elastic}
        for pod in waiting:
            k = pod.dep.shape.accelerators
            pools = [p for p in pod.dep.pools if p in self.elastic and p not in self.failed]
            said: tuple[bool, str] | None = None
            for pool in pools:
                room = coming[pool]
                slot = next((i for i, free in enumerate(room) if free >= k), None)
                if slot is None and pool in self.stocked_out:
                    said = said or (False, f"insufficient capacity for a {pool} node")
                    continue
                if slot is None and len(self.nodes[pool]) >= self.elastic[pool].max_nodes:
                    said = said or (False, f"all instance types exceed the limits of {pool}")
                    continue
                if slot is None:
                    self._launch(pool, now)
                    room.append(self.elastic[pool].accelerators_per_node)
                    slot = len(room) - 1
                room[slot] -= k
                said = (True, f"Pod should schedule on a new {pool} node")
                break
            if said is not None:
                self._said[pod.uid] = said
        for name, spec in self.elastic.items():
            assert spec.elastic is not None
            for node in list(self.nodes[name]):
                if node.used or node.up_at > now:
                    node.empty_since = None
                elif node.empty_since is None:
                    node.empty_since = now
                elif now - node.empty_since >= spec.elastic.consolidate_after_seconds:
                    self.nodes[name].remove(node)
                    self.nodes_removed += 1
                    self.version += 1

    def _launch(self, pool: str, now: float) -> None:
        spec = self.elastic[pool]
        assert spec.elastic is not None
        self._launched[pool] += 1
        self.nodes[pool].append(SimNode(f"{pool}-{self._launched[pool] - 1}", pool,
                                        spec.accelerators_per_node,
                                        up_at=now + spec.elastic.provisioning_seconds))
        self.nodes_launched += 1

    def _registered(self, now: float) -> None:
        """Nodes launched earlier register by `now`: what a snapshot shows changes."""
        self._now = now
        count = sum(1 for ns in self.nodes.values() for n in ns if n.up_at <= now)
        if count != self._registered_count:
            self._registered_count = count
            self.version += 1

    def autoscaler_signals(self) -> dict[str, Signal]:
        """What the autoscaler last said about each waiting pod, keyed as the pod views name
        them (controller/autoscaler.py)."""
        out = {}
        for dep in self.deployments.values():
            for pod in dep.pods:
                if pod.uid in self._said:
                    provisioning, message = self._said[pod.uid]
                    out[f"{NAMESPACE}/{pod_name(pod)}"] = Signal(
                        provisioning, "Nominated" if provisioning else "FailedScheduling",
                        message, "karpenter", wall(pod.created))
        return out

    def _bind(self, pod: SimPod, now: float) -> None:
        k = pod.dep.shape.accelerators
        for pool in pod.dep.pools:
            if pool in self.failed or (pool in self.stocked_out and pool not in self.elastic):
                continue
            best: SimNode | None = None
            for node in self.nodes[pool]:
                free = node.allocatable - node.used
                if node.up_at > now:
                    continue  # launched, not registered yet
                if free >= k and (best is None or free < best.allocatable - best.used):
                    best = node
            if best is not None:
                best.used += k
                pod.node = best
                pod.ready_at = now if now <= self.warm_until else now + pod.dep.shape.startup
                self.pods_started += 1
                return

    def _delete(self, pod: SimPod) -> None:
        if pod.node is not None:
            pod.node.used -= pod.dep.shape.accelerators
            pod.node = None
        pod.dep.pods.remove(pod)

    def _drop_empty(self) -> None:
        for key in [k for k, d in self.deployments.items() if d.replicas == 0 and not d.pods]:
            del self.deployments[key]

    # --- what policies do -------------------------------------------------------------------

    def set_replicas(self, key: DepKey, replicas: int, shape: Shape, pools: tuple[str, ...],
                     toleration: float, now: float) -> None:
        dep = self.deployments.get(key)
        if dep is None:
            if replicas <= 0:
                return
            dep = self.deployments[key] = SimDeployment(key, shape, pools, toleration)
        change = replicas - dep.replicas
        if change > 0:
            self._adds[shape.model].append((now, key[2] + "/" + key[1], change))
        elif change < 0:
            self._count_moves(shape.model, key[2] + "/" + key[1], -change, now)
        dep.replicas = max(0, replicas)
        if len(dep.pods) > dep.replicas:
            # the ReplicaSet's order: unscheduled, then not Ready, then the newest
            victims = sorted(dep.pods, key=lambda p: (p.node is not None, self.ready(p, now),
                                                      -p.created, -p.uid))
            for pod in victims[:len(dep.pods) - dep.replicas]:
                self._delete(pod)

    def set_targets(self, targets: Mapping[DepKey, int], shapes: Mapping[DepKey, Shape],
                    toleration: float, now: float) -> None:
        """Make the pinned Deployments exactly `targets` (missing keys scale to zero); grows
        first, so a move within one step counts as one."""
        current = {k: d.replicas for k, d in self.deployments.items()}
        keys = sorted(set(targets) | set(current),
                      key=lambda k: (targets.get(k, 0) <= current.get(k, 0), k))
        for key in keys:
            want = targets.get(key, 0)
            if want != current.get(key, 0):
                self.set_replicas(key, want, shapes[key] if key in shapes
                                  else self.deployments[key].shape, (key[2],), toleration, now)

    def _count_moves(self, model: str, place: str, removed: int, now: float) -> None:
        adds = self._adds[model]
        adds[:] = [a for a in adds if now - a[0] <= MOVE_WINDOW]
        for i, (at, where, count) in enumerate(adds):
            if removed <= 0:
                break
            if where == place or count <= 0:
                continue
            taken = min(count, removed)
            adds[i] = (at, where, count - taken)
            removed -= taken
            self.moves += taken

    def delete_pods_on_failed_nodes(self) -> int:
        """What the operator does (controller/health.pods_on_failed_nodes): delete our pods on
        NotReady nodes at once so their ReplicaSets replace them."""
        doomed = [p for d in self.deployments.values() for p in d.pods
                  if p.node is not None and p.node.pool in self.not_ready]
        for pod in doomed:
            self._delete(pod)
        return len(doomed)

    # --- what policies see ------------------------------------------------------------------

    def ready(self, pod: SimPod, now: float) -> bool:
        """Ready as the API reports it: a failed node's pods stay Ready until the node is
        seen NotReady (what serves is `measure`'s business)."""
        return (pod.node is not None and pod.node.pool not in self.not_ready
                and pod.ready_at is not None and pod.ready_at <= now)

    def snapshot(self, taken: bool = False) -> ClusterSnapshot:
        """The engine's view: nodes seen NotReady give nothing; our own pods use nothing (the
        engine plans our replicas itself), or with `taken`, what is left once our bound pods
        and the pods waiting for a node are placed. Cached until what it shows changes."""
        if taken:
            waiting: dict[str, int] = defaultdict(int)
            for dep in self.deployments.values():
                for pod in dep.pods:
                    if pod.node is None and len(dep.pools) == 1:
                        waiting[dep.pools[0]] += dep.shape.accelerators
            base = self.snapshot()
            taken_nodes: list[Node] = []
            for ns in self.nodes.values():
                for n in ns:
                    if n.up_at > self._now:
                        continue  # not registered yet
                    # pods waiting for room in a pool take it from its first nodes
                    claim = min(n.allocatable - n.used, waiting[n.pool])
                    waiting[n.pool] -= claim
                    taken_nodes.append(Node(name=n.name, pool=n.pool, allocatable=n.allocatable,
                                            used_by_others=n.used + claim,
                                            ready=n.pool not in self.not_ready))
            return ClusterSnapshot(base.pools, tuple(taken_nodes))
        if self._snapshot is None or self._snapshot[0] != self.version:
            pools = tuple(
                NodePool(name=p.name, family=p.family, product=p.product, topology=p.topology,
                         instance_type=p.instance_type,
                         price_per_accelerator_hour=self.prices[p.name],
                         capacity_type=p.capacity_type,
                         node_selector=MappingProxyType({lbl.NODE_POOL: p.name}),
                         resource=lbl.FAMILY_RESOURCE[p.family],
                         elastic=None if p.elastic is None else Elastic(
                             p.accelerators_per_node, p.elastic.max_nodes,
                             p.elastic.provisioning_timeout_seconds))
                for p in self.scenario.node_pools)
            nodes = tuple(Node(name=n.name, pool=n.pool, allocatable=n.allocatable,
                               ready=n.pool not in self.not_ready)
                          for ns in self.nodes.values() for n in ns if n.up_at <= self._now)
            self._snapshot = (self.version, ClusterSnapshot(pools, nodes))
        return self._snapshot[1]

    def replicas(self, key: DepKey) -> int:
        dep = self.deployments.get(key)
        return dep.replicas if dep else 0

    def ready_count(self, key: DepKey, now: float) -> int:
        dep = self.deployments.get(key)
        return sum(1 for p in dep.pods if self.ready(p, now)) if dep else 0

    def pod_views(self, now: float) -> list[dict[str, Any]]:
        """Our pods as the operator's pod index holds them (controller/views.pod_view)."""
        out = []
        for dep in self.deployments.values():
            model, variant = dep.key[0].split("/", 1)[1], dep.key[1]
            resource = lbl.FAMILY_RESOURCE[dep.shape.family]
            for pod in dep.pods:
                bound = pod.node is not None
                ready = self.ready(pod, now)
                out.append({
                    "metadata": {
                        "name": pod_name(pod), "namespace": NAMESPACE,
                        "labels": {lbl.POOL: model, lbl.VARIANT: variant,
                                   lbl.NODE_POOL: pod.node.pool if pod.node else dep.key[2]},
                        "creationTimestamp": timestamp(pod.created),
                        "deletionTimestamp": None},
                    "spec": {"nodeName": pod.node.name if pod.node else None,
                             "containers": [{"name": "server", "resources": {
                                 "limits": {resource: str(dep.shape.accelerators)},
                                 "requests": {}}}],
                             "initContainers": []},
                    "status": {
                        "phase": "Running" if bound else "Pending",
                        "conditions": [
                            {"type": "PodScheduled", "status": "True" if bound else "False",
                             "reason": None if bound else "Unschedulable"},
                            {"type": "Ready", "status": "True" if ready else "False",
                             "reason": None}],
                        "waiting": []},
                })
        return out

    def measure(self, now: float) -> Measure:
        capacity: dict[str, float] = defaultdict(float)
        ready: dict[tuple[str, str], int] = defaultdict(int)
        cost = 0.0
        for name in self.elastic:  # billed per launched node
            if name not in self.failed:
                cost += sum(n.allocatable for n in self.nodes[name]) * self.prices[name]
        for dep in self.deployments.values():
            shape = dep.shape
            for pod in dep.pods:
                if pod.node is None or pod.node.pool in self.failed:
                    continue
                if pod.node.pool not in self.elastic:
                    cost += shape.accelerators * self.prices[pod.node.pool]
                if pod.ready_at is not None and pod.ready_at <= now:
                    capacity[shape.model] += shape.capacity
                    ready[(shape.model, shape.family)] += 1
        return Measure(dict(capacity), cost, dict(ready))


def pod_name(pod: SimPod) -> str:
    """The pod's name in its view (pod_views) and in the autoscaler's word on it."""
    return f"{pod.dep.key[0].split('/', 1)[1]}-{pod.dep.key[1]}-{pod.uid}"


def timestamp(seconds: float) -> str:
    return (EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def wall(seconds: float) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=seconds)


def shapes_of(scenario: Scenario) -> dict[tuple[str, str], Shape]:
    """(model name, variant name) -> the pods' shape."""
    return {
        (m.name, v.name): Shape(m.name, v.name, v.accelerator.family,
                                replica_accelerators(v.accelerator), float(v.capacity),
                                scenario.startup(v))
        for m in scenario.models for v in m.variants}

