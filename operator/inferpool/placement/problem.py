"""Compile a snapshot, demands and the current placement into one indexed problem.

Both solvers read this and nothing else, so they agree on what is allowed and what it costs.
Everything is sorted (pools by key, node pools by name, options by key) so that the same input
compiles to the same problem whatever order it came in.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from inferpool.cluster.labels import topology_chips
from inferpool.cluster.snapshot import FAMILIES, ClusterSnapshot, Family, NodePool
from inferpool.placement.model import PlacementKey, PlacementOptions, PoolDemand, VariantDemand

FAMILY_INDEX: Mapping[Family, int] = {f: i for i, f in enumerate(FAMILIES)}


@dataclass(slots=True)
class NodePoolCapacity:
    """Free accelerators of one node pool, as node-level facts."""

    index: int
    pool: NodePool
    free: tuple[int, ...]  # per healthy node with something free, descending
    limit: int | None  # accelerators our replicas may use in total (maxAccelerators, backoff)
    sizes: tuple[int, ...] = ()  # accelerators-per-replica of the options placed here, ascending
    _slots: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def chain(self) -> bool:
        """Sizes that divide each other pack exactly by simple counting (see packing.py)."""
        return all(b % a == 0 for a, b in zip(self.sizes, self.sizes[1:], strict=False))

    def slots(self, size: int) -> int:
        """Replicas of `size` accelerators the healthy nodes could hold, ignoring the limit."""
        cached = self._slots.get(size)
        if cached is None:
            cached = self._slots[size] = sum(f // size for f in self.free)
        return cached


@dataclass(slots=True)
class PoolInfo:
    index: int
    demand: PoolDemand
    min_replicas: int
    max_replicas: int
    scale: float  # rps that normalises shortfall and share violations
    options: list[int] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # variants with no node pool, and why

    @property
    def key(self) -> str:
        return self.demand.key

    @property
    def has_resilience(self) -> bool:
        d = self.demand
        return d.max_family_share < 1.0 or d.max_node_pool_share < 1.0 or d.min_families > 1


@dataclass(slots=True)
class Problem:
    """Options are (pool, variant, node pool) triples, stored as parallel lists for speed."""

    snapshot: ClusterSnapshot
    options_in: PlacementOptions
    pools: list[PoolInfo]
    node_pools: list[NodePoolCapacity]
    opt_key: list[PlacementKey] = field(default_factory=list)
    opt_pool: list[int] = field(default_factory=list)
    opt_node_pool: list[int] = field(default_factory=list)
    opt_variant: list[VariantDemand] = field(default_factory=list)
    opt_k: list[int] = field(default_factory=list)
    opt_rps: list[float] = field(default_factory=list)
    opt_cost: list[float] = field(default_factory=list)
    opt_family: list[int] = field(default_factory=list)
    opt_current: list[int] = field(default_factory=list)
    # current replicas whose key no longer exists (variant gone, excluded, pool gone)
    stale_current: dict[PlacementKey, int] = field(default_factory=dict)

    @property
    def n_options(self) -> int:
        return len(self.opt_key)

    @property
    def hysteresis(self) -> float:
        return min(max(self.options_in.hysteresis, 0.0), 0.99)

    def priority_tiers(self) -> list[list[int]]:
        """Pool indices grouped by priority, highest first."""
        tiers: dict[int, list[int]] = defaultdict(list)
        for p in self.pools:
            tiers[p.demand.priority].append(p.index)
        return [tiers[k] for k in sorted(tiers, reverse=True)]

    def current_counts(self) -> list[int]:
        return list(self.opt_current)


def replica_accelerators(variant: VariantDemand) -> int:
    """A TPU replica takes its whole slice: the chips of its topology, if that is more."""
    k = max(1, variant.accelerators)
    if variant.family == "tpu":
        chips = topology_chips(variant.topology)
        if chips is not None:
            k = max(k, chips)
    return k


def compile_problem(
    snapshot: ClusterSnapshot,
    demands: Sequence[PoolDemand],
    current: Mapping[PlacementKey, int] | None,
    options: PlacementOptions,
) -> Problem:
    node_pools = _node_pools(snapshot, options)
    pools = [
        _pool_info(i, d) for i, d in enumerate(sorted(demands, key=lambda d: d.key))
    ]
    if len({p.key for p in pools}) != len(pools):
        raise ValueError("InferencePool keys must be unique")
    problem = Problem(snapshot=snapshot, options_in=options, pools=pools, node_pools=node_pools)

    max_alloc = {
        np.pool.name: max((n.allocatable for n in snapshot.nodes_of(np.pool.name)), default=0)
        for np in node_pools
    }
    by_family: dict[str, list[NodePoolCapacity]] = defaultdict(list)
    for np in node_pools:
        by_family[np.pool.family].append(np)

    cur = dict(current or {})
    sizes: dict[int, set[int]] = defaultdict(set)
    for info in pools:
        for variant in sorted(info.demand.variants, key=lambda v: v.name):
            if (info.key, variant.name) in options.excluded_variants:
                info.unmatched.append(f"variant {variant.name} excluded (degraded)")
                continue
            k = replica_accelerators(variant)
            matched = False
            for np in by_family.get(variant.family, ()):
                pool = np.pool
                if variant.product and variant.product != pool.product:
                    continue
                if variant.topology and variant.topology != pool.topology:
                    continue
                if max_alloc[pool.name] < k:
                    continue
                matched = True
                key = (info.key, variant.name, pool.name)
                cost = (
                    variant.cost_per_hour
                    if variant.cost_per_hour is not None
                    else k * pool.price_per_accelerator_hour
                )
                info.options.append(problem.n_options)
                problem.opt_key.append(key)
                problem.opt_pool.append(info.index)
                problem.opt_node_pool.append(np.index)
                problem.opt_variant.append(variant)
                problem.opt_k.append(k)
                problem.opt_rps.append(max(0.0, variant.capacity_rps))
                problem.opt_cost.append(max(0.0, cost))
                problem.opt_family.append(FAMILY_INDEX[variant.family])
                problem.opt_current.append(max(0, int(cur.pop(key, 0))))
                sizes[np.index].add(k)
            if not matched:
                info.unmatched.append(_why_unmatched(variant, k))
    for np in node_pools:
        np.sizes = tuple(sorted(sizes.get(np.index, ())))
    problem.stale_current = {k: v for k, v in sorted(cur.items()) if v > 0}
    return problem


def _node_pools(snapshot: ClusterSnapshot, options: PlacementOptions) -> list[NodePoolCapacity]:
    result = []
    for i, pool in enumerate(snapshot.pools):
        free = tuple(sorted((n.free for n in snapshot.nodes_of(pool.name) if n.free > 0),
                            reverse=True))
        limits = [x for x in (pool.max_accelerators,
                              options.pool_accelerator_limits.get(pool.name)) if x is not None]
        result.append(
            NodePoolCapacity(
                index=i, pool=pool, free=free, limit=max(0, min(limits)) if limits else None
            )
        )
    return result


def _pool_info(index: int, demand: PoolDemand) -> PoolInfo:
    max_replicas = max(0, demand.max_replicas)
    min_replicas = min(max(0, demand.min_replicas), max_replicas)
    best_rps = max((v.capacity_rps for v in demand.variants), default=0.0)
    scale = max(demand.required_rps, min_replicas * best_rps, 1.0)
    return PoolInfo(
        index=index,
        demand=demand,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale=scale,
    )


def _why_unmatched(variant: VariantDemand, k: int) -> str:
    what = "/".join(x for x in (variant.family, variant.product, variant.topology) if x)
    return f"variant {variant.name}: no node pool of {what} with {k} accelerators on one node"


def fragmentation(np: NodePoolCapacity) -> Counter[int]:
    """How many healthy nodes have each free count (for explanations)."""
    return Counter(np.free)


def ceil_div(a: float, b: float) -> int:
    return math.ceil(a / b - 1e-9) if b > 0 else 0
