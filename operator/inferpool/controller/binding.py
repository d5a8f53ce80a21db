"""Would the scheduler bind a plan's new pods? The scheduler's view of free room, per node (pure).

The engine counts accelerators per node pool and re-packs our replicas freely; the scheduler
binds one pod at a time onto the nodes as they are: our running pods where they run, other pods'
accelerators, CPU and memory, and taints. A plan whose new pods find no node in that view would
stay Pending until the stockout bound. `check` replays the binding of every new pod a plan asks
for (largest first, best fit) on the real per-node room; the planner re-plans with the node pool
capped at what really fits (planning.bindable_plan) until the plan binds.

Conservative on purpose: pods the plan removes still hold their room (which pod a ReplicaSet
removes is its choice, and make-before-break keeps old pods until new ones are Ready); the room
they free is seen on the next plan, once they are gone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferpool.cluster import ClusterSnapshot, Node
from inferpool.cluster.quantity import count, milli, pod_request
from inferpool.k8s import labels as lbl
from inferpool.placement import PlacementKey

CPU, MEMORY = "cpu", "memory"
# Resources the scheduler compares; CPU in millicores. Extended resources a node does not list
# count as 0 there; CPU and memory a node view does not list are not checked (older snapshots).
ACCELERATOR_RESOURCES = (*lbl.FAMILY_RESOURCE.values(), "aws.amazon.com/neuroncore")
RESOURCES = (*ACCELERATOR_RESOURCES, CPU, MEMORY)
_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
_TERMINATED = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class PodShape:
    """What one new replica of a placement asks of a node."""

    requests: Mapping[str, int]  # resource -> amount (cpu in millicores)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    accelerators: int = 0  # of its family's resource, for the node pool's cap


@dataclass
class NodeRoom:
    name: str
    pool: str
    free: dict[str, int]  # resource -> free amount; a resource absent here is not checked
    taints: tuple[Mapping[str, Any], ...]
    # a node an elastic pool's autoscaler would launch: only its accelerators are known (the
    # autoscaler picks a shape that fits the pod's CPU and memory, and taints it as the pool)
    planned: bool = False


@dataclass(frozen=True)
class Binding:
    """`unbound`: new pods per placement that found no node; `room`: per node pool checked,
    the accelerators our replicas can really use there (running ones plus what binds)."""

    unbound: Mapping[PlacementKey, int] = field(default_factory=dict)
    room: Mapping[str, int] = field(default_factory=dict)
    new: frozenset[PlacementKey] = frozenset()  # placements with new pods, where checked

    @property
    def binds(self) -> bool:
        return not self.unbound

    @property
    def fitting(self) -> frozenset[PlacementKey]:
        """Placements whose new pods all bind in this view: where the engine and the
        scheduler should agree."""
        return self.new - set(self.unbound)


def pod_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """The pod's effective request of every resource the scheduler compares here (CPU in
    millicores); only resources some container names are parsed."""
    named: set[str] = set()
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        resources = (container.get("resources") or {}) if isinstance(container, Mapping) else {}
        for kind in ("requests", "limits"):
            values = resources.get(kind)
            if isinstance(values, Mapping):
                named.update(values)
    out = {r: pod_request(spec, r, scale=1000 if r == CPU else 1)
           for r in RESOURCES if r in named}
    return {r: v for r, v in out.items() if v > 0}


def _placement(pod: Mapping[str, Any]) -> PlacementKey | None:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    pool, variant, node_pool = (labels.get(lbl.POOL), labels.get(lbl.VARIANT),
                                labels.get(lbl.NODE_POOL))
    if not (pool and variant and node_pool):
        return None
    return (f"{meta.get('namespace')}/{pool}", str(variant), str(node_pool))


class SchedulerView:
    """The scheduler's room per node pool, computed only for the node pools asked about (most
    plans create no pod at all): at thousands of nodes and pods, parsing every request each
    reconcile would cost more than the plan."""

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]],
                 pods: Iterable[Mapping[str, Any]], snapshot: ClusterSnapshot) -> None:
        self.nodes, self.snapshot, self.pods = nodes, snapshot, pods
        self.on_node: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        self.ours_in: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        self._indexed = False
        self._rooms: dict[str, list[NodeRoom]] = {}

    def _index(self) -> None:
        if self._indexed:
            return
        self._indexed = True
        for pod in self.pods:
            spec = pod.get("spec") or {}
            name = spec.get("nodeName")
            if not name or (pod.get("status") or {}).get("phase") in _TERMINATED:
                continue
            self.on_node[str(name)].append(pod)
            meta = pod.get("metadata") or {}
            node_pool = (meta.get("labels") or {}).get(lbl.NODE_POOL)
            if node_pool and not meta.get("deletionTimestamp") and (
                    meta.get("labels") or {}).get(lbl.POOL):
                self.ours_in[str(node_pool)].append(pod)

    def rooms(self, node_pools: Iterable[str]) -> dict[str, list[NodeRoom]]:
        """Node pools with at least one visible healthy node -> their rooms."""
        node_pools = list(node_pools)
        if node_pools:
            self._index()
        for pool in node_pools:
            if pool not in self._rooms:
                members = self.snapshot.room_of(pool)
                resource = self.snapshot.pool(pool).resource
                self._rooms[pool] = node_rooms(self.nodes, self.on_node,
                                               [n for n in members if not n.planned]) + [
                    NodeRoom(n.name, n.pool, {resource: n.allocatable}, (), planned=True)
                    for n in members if n.planned]
        return {p: r for p in node_pools if (r := self._rooms[p])}

    def in_use(self, node_pool: str) -> int:
        """Accelerators our bound pods use in a node pool (health.accelerators_in_use)."""
        self._index()
        return sum(pod_request(p.get("spec"), r) for p in self.ours_in.get(node_pool, ())
                   for r in lbl.FAMILY_RESOURCE.values())


def node_rooms(nodes: Mapping[str, Mapping[str, Any]],
               on_node: Mapping[str, list[Mapping[str, Any]]],
               members: Iterable[Node]) -> list[NodeRoom]:
    """The room of healthy `members` as the scheduler counts it: allocatable minus the
    requests of every pod bound there (ours, others', terminating ones too: they hold their
    room until they are gone)."""
    rooms = []
    for n in members:
        view = nodes.get(n.name)
        if view is None or not (n.ready and n.schedulable):
            continue
        used: Counter[str] = Counter()
        for pod in on_node.get(n.name, ()):
            used.update(pod_requests(pod.get("spec") or {}))
        allocatable = (view.get("status") or {}).get("allocatable") or {}
        free = {r: count(allocatable.get(r)) - used[r] for r in ACCELERATOR_RESOURCES}
        if CPU in allocatable:
            free[CPU] = milli(allocatable[CPU]) - used[CPU]
        if MEMORY in allocatable:
            free[MEMORY] = count(allocatable[MEMORY]) - used[MEMORY]
        taints = tuple(t for t in (view.get("spec") or {}).get("taints") or ()
                       if t.get("effect") in _BLOCKING_EFFECTS)
        rooms.append(NodeRoom(n.name, n.pool, free, taints))
    return rooms


def bound_pods(pods: Iterable[Mapping[str, Any]]) -> Counter[PlacementKey]:
    """Our pods per placement that hold a node and stay (not being deleted)."""
    out: Counter[PlacementKey] = Counter()
    for pod in pods:
        key = _placement(pod)
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if key is None or not spec.get("nodeName") or meta.get("deletionTimestamp") or (
                pod.get("status") or {}).get("phase") in _TERMINATED:
            continue
        out[key] += 1
    return out


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' rule: effect empty or equal; key empty with Exists, or equal; Exists, or
    Equal (the default) with the same value."""
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        operator = t.get("operator") or "Equal"
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _fits(room: NodeRoom, shape: PodShape) -> bool:
    if not all(tolerates(shape.tolerations, taint) for taint in room.taints):
        return False
    return all(room.free.get(r, 0) >= amount for r, amount in shape.requests.items()
               if r in room.free or (r in ACCELERATOR_RESOURCES and not room.planned))


def check(planned: Mapping[PlacementKey, int], bound: Mapping[PlacementKey, int],
          shapes: Mapping[PlacementKey, PodShape], rooms: Mapping[str, list[NodeRoom]],
          in_use: Mapping[str, int]) -> Binding:
    """Bind the new pods of `planned` (beyond those of `bound`) on copies of `rooms`, largest
    first onto the fullest node that takes them. `in_use`: accelerators our bound pods use per
    node pool. Node pools without rooms (no node visible) are not checked."""
    unbound: dict[PlacementKey, int] = {}
    fitted: Counter[str] = Counter()
    new = sorted(((k, n - bound.get(k, 0)) for k, n in planned.items()
                  if n > bound.get(k, 0) and k[2] in rooms and k in shapes),
                 key=lambda item: (-shapes[item[0]].accelerators, item[0]))
    work = {pool: [NodeRoom(r.name, r.pool, dict(r.free), r.taints, r.planned) for r in rs]
            for pool, rs in rooms.items()}
    for key, n in new:
        shape = shapes[key]
        nodes = work[key[2]]
        for _ in range(n):
            candidates = [r for r in nodes if _fits(r, shape)]
            if not candidates:
                unbound[key] = unbound.get(key, 0) + 1
                continue
            best = min(candidates, key=lambda r: (sum(r.free.get(a, 0)
                                                      for a in ACCELERATOR_RESOURCES), r.name))
            for r, amount in shape.requests.items():
                if r in best.free:
                    best.free[r] -= amount
            fitted[key[2]] += shape.accelerators
    return Binding(unbound=unbound,
                   room={p: in_use.get(p, 0) + fitted[p] for p in rooms},
                   new=frozenset(k for k, _ in new))
