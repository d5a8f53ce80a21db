"""The frozen view of the cluster that the placement engine works on.

Everything here is immutable and sorted by name, so the same cluster always gives an equal
snapshot, whatever order the API server listed the objects in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Family = Literal["nvidia", "tpu", "neuron"]
CapacityType = Literal["on-demand", "spot", "reserved"]

FAMILIES: tuple[Family, ...] = ("nvidia", "tpu", "neuron")


@dataclass(frozen=True, slots=True)
class Elastic:
    """A node pool an autoscaler grows: nodes of one shape, up to a count (AcceleratorPool
    `spec.elastic`)."""

    accelerators_per_node: int
    max_nodes: int  # what the plan may use: maxNodes, or fewer where the autoscaler's limits say
    provisioning_timeout_s: float = 600.0
    declared_max_nodes: int | None = None  # maxNodes, when limits lowered it
    limited_by: str | None = None  # which limit, in the user's words


@dataclass(frozen=True, slots=True)
class NodePool:
    """Nodes that share one accelerator type, one price and one pinning selector."""

    name: str
    family: Family
    product: str | None
    topology: str | None
    price_per_accelerator_hour: float
    capacity_type: CapacityType
    node_selector: Mapping[str, str]
    resource: str
    max_accelerators: int | None = None
    price_known: bool = True
    # node.kubernetes.io/instance-type when every node has the same (a variant's `type`)
    instance_type: str | None = None
    # the accelerator labels (product, type, topology) every node has with the same value:
    # what pins a variant's pods to the nodes the engine matched it with
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # the AcceleratorPool that declares it; its name is usually the pool's, but a pool keeps
    # the name its replicas run under when an AcceleratorPool adopts its nodes
    accelerator_pool: str | None = None
    elastic: Elastic | None = None


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    pool: str
    allocatable: int
    used_by_others: int = 0
    ready: bool = True
    schedulable: bool = True
    # a node the pool's autoscaler would launch for a pod that asks (ClusterSnapshot.room_of)
    planned: bool = False

    @property
    def free(self) -> int:
        """Accelerators our replicas may use: nothing on an unhealthy or cordoned node."""
        if not (self.ready and self.schedulable):
            return 0
        return max(0, self.allocatable - self.used_by_others)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    pools: tuple[NodePool, ...]
    nodes: tuple[Node, ...]
    _pools_by_name: Mapping[str, NodePool] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _nodes_by_pool: Mapping[str, tuple[Node, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        pools = tuple(sorted(self.pools, key=lambda p: p.name))
        nodes = tuple(sorted(self.nodes, key=lambda n: (n.pool, n.name)))
        by_name = {p.name: p for p in pools}
        if len(by_name) != len(pools):
            raise ValueError("node pool names must be unique")
        grouped: dict[str, list[Node]] = {p.name: [] for p in pools}
        for node in nodes:
            if node.pool not in grouped:
                raise ValueError(f"node {node.name} names unknown pool {node.pool}")
            grouped[node.pool].append(node)
        # frozen + slots: object.__setattr__ is the documented way to fill derived fields
        object.__setattr__(self, "pools", pools)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "_pools_by_name", MappingProxyType(by_name))
        object.__setattr__(
            self,
            "_nodes_by_pool",
            MappingProxyType({name: tuple(ns) for name, ns in grouped.items()}),
        )

    def pool(self, name: str) -> NodePool:
        return self._pools_by_name[name]

    def nodes_of(self, pool: str) -> tuple[Node, ...]:
        return self._nodes_by_pool.get(pool, ())

    def room_of(self, pool: str) -> tuple[Node, ...]:
        """The nodes replicas may be placed on: those that exist and, in an elastic pool, the
        ones its autoscaler may still launch (named `<pool>/planned-<i>`: no node can be)."""
        nodes = self.nodes_of(pool)
        elastic = self._pools_by_name[pool].elastic
        if elastic is None:
            return nodes
        extra = max(0, elastic.max_nodes - len(nodes))
        return nodes + tuple(Node(f"{pool}/planned-{i}", pool, elastic.accelerators_per_node,
                                  planned=True) for i in range(extra))

    def free_accelerators(self, pool: str) -> int:
        return sum(n.free for n in self.nodes_of(pool))

    def allocatable_accelerators(self, pool: str) -> int:
        return sum(n.allocatable for n in self.nodes_of(pool))

    def without_node(self, name: str) -> ClusterSnapshot:
        """The same cluster after losing one node (used to simulate failures)."""
        return ClusterSnapshot(self.pools, tuple(n for n in self.nodes if n.name != name))
