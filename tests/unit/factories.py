"""Small builders for placement tests: a node pool is one line, a demand is one line."""

from __future__ import annotations

from collections.abc import Sequence

from inferpool.cluster import CapacityType, ClusterSnapshot, Family, Node, NodePool
from inferpool.cluster.labels import RESOURCES
from inferpool.placement import PoolDemand, VariantDemand

PRODUCTS: dict[Family, str] = {
    "nvidia": "NVIDIA-H100-80GB-HBM3",
    "tpu": "tpu-v6e-slice",
    "neuron": "inferentia2",
}


def pool(
    name: str,
    family: Family = "nvidia",
    *,
    product: str | None = None,
    topology: str | None = None,
    price: float = 1.0,
    per_node: int = 8,
    nodes: int = 1,
    used: Sequence[int] = (),
    unhealthy: int = 0,
    capacity_type: CapacityType = "on-demand",
    limit: int | None = None,
) -> tuple[NodePool, list[Node]]:
    """A node pool and its nodes; `used[i]` accelerators of node i belong to other pods, the
    first `unhealthy` nodes are NotReady."""
    node_pool = NodePool(
        name=name,
        family=family,
        product=product or PRODUCTS[family],
        topology=topology,
        price_per_accelerator_hour=price,
        capacity_type=capacity_type,
        node_selector={"inferpool.dev/node-pool": name},
        resource=RESOURCES[family],
        max_accelerators=limit,
    )
    members = [
        Node(
            name=f"{name}-{i}",
            pool=name,
            allocatable=per_node,
            used_by_others=used[i] if i < len(used) else 0,
            ready=i >= unhealthy,
        )
        for i in range(nodes)
    ]
    return node_pool, members


def cluster(*pools: tuple[NodePool, list[Node]]) -> ClusterSnapshot:
    return ClusterSnapshot(
        pools=tuple(p for p, _ in pools), nodes=tuple(n for _, ns in pools for n in ns)
    )


def variant(
    name: str,
    family: Family = "nvidia",
    *,
    k: int = 1,
    rps: float = 10.0,
    product: str | None = None,
    topology: str | None = None,
    cost: float | None = None,
    preference: int = 0,
) -> VariantDemand:
    return VariantDemand(
        name=name,
        family=family,
        product=product if product is not None else PRODUCTS[family],
        topology=topology,
        accelerators=k,
        capacity_rps=rps,
        cost_per_hour=cost,
        preference=preference,
    )


def demand(
    key: str,
    rps: float,
    *variants: VariantDemand,
    min_replicas: int = 0,
    max_replicas: int = 100,
    priority: int = 0,
    family_share: float = 1.0,
    node_pool_share: float = 1.0,
    min_families: int = 1,
) -> PoolDemand:
    return PoolDemand(
        key=key,
        required_rps=rps,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        variants=tuple(variants),
        priority=priority,
        max_family_share=family_share,
        max_node_pool_share=node_pool_share,
        min_families=min_families,
    )
