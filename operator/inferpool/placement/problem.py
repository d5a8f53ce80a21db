"""Compile a snapshot, demands and the current placement into one indexed problem.

Both solvers read this and nothing else, so they agree on what is allowed and what it costs.
Everything is sorted (pools by key, node pools by name, options by key) so that the same input
compiles to the same problem whatever order it came in.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
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
    current_options: list[int] = field(default_factory=list)  # options with current replicas
    unmatched: list[str] = field(default_factory=list)  # variants with no node pool, and why

    @property
    def key(self) -> str:
        return self.demand.key


@dataclass(slots=True)
class Problem:
    """Options are (pool, variant, node pool) triples, stored as parallel lists for speed:
    entry o of each `opt_*` list is about option o. `opt_pool` and `opt_node_pool` index `pools`
    and `node_pools`; `opt_k` is accelerators per replica, `opt_rps` req/s one replica serves,
    `opt_cost` one replica's cost per hour, `opt_family` its index in FAMILIES (FAMILY_INDEX),
    `opt_current` its replicas now."""

    snapshot: ClusterSnapshot
    options_in: PlacementOptions
    pools: list[PoolInfo]
    node_pools: list[NodePoolCapacity]
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
    np_class: list[int] = field(default_factory=list)  # capacity class of each node pool
    pool_groups: list[list[Group]] = field(default_factory=list)
    # (pool index, variant name) -> (first option, node pool name -> offset)
    variant_options: dict[tuple[int, str], tuple[int, Mapping[str, int]]] = field(
        default_factory=dict
    )

    @property
    def n_options(self) -> int:
        return len(self.opt_pool)

    def key(self, o: int) -> PlacementKey:
        """(pool key, variant, node pool) of option o; built on demand, most are never asked."""
        return (
            self.pools[self.opt_pool[o]].key,
            self.opt_variant[o].name,
            self.node_pools[self.opt_node_pool[o]].pool.name,
        )

    def option_of(self, key: PlacementKey, pool_index: Mapping[str, int]) -> int | None:
        p = pool_index.get(key[0])
        found = self.variant_options.get((p, key[1])) if p is not None else None
        if found is None:
            return None
        offset = found[1].get(key[2])
        return None if offset is None else found[0] + offset

    def counts_of(self, replicas: Mapping[PlacementKey, int]) -> list[int]:
        """Replicas per option, from a plan's replicas per placement key (each must be an
        option of this problem)."""
        index = {info.key: info.index for info in self.pools}
        counts = [0] * self.n_options
        for key, n in replicas.items():
            o = self.option_of(key, index)
            if o is None:
                raise KeyError(f"{key} is no option of this problem")
            counts[o] = n
        return counts

    @property
    def hysteresis(self) -> float:
        return min(max(self.options_in.hysteresis, 0.0), 0.99)

    def priority_tiers(self) -> list[list[int]]:
        """Pool indices grouped by priority, highest first."""
        tiers: dict[int, list[int]] = defaultdict(list)
        for p in self.pools:
            tiers[p.demand.priority].append(p.index)
        return [tiers[k] for k in sorted(tiers, reverse=True)]



def replica_accelerators(variant: VariantDemand) -> int:
    """A TPU replica takes its whole slice: the chips of its topology, if that is more."""
    k = max(1, variant.accelerators)
    if variant.family == "tpu":
        chips = topology_chips(variant.topology)
        if chips is not None:
            k = max(k, chips)
    return k


@dataclass(frozen=True, slots=True)
class Group:
    """Options of one pool that are interchangeable for its objective: same variant, same
    capacity class (hence same cost per replica), different node pools."""

    options: tuple[int, ...]
    klass: int


@dataclass(frozen=True, slots=True)
class _Match:
    """Node pools one variant shape fits, computed once per shape, not per pool."""

    node_pools: tuple[int, ...]
    offsets: Mapping[str, int]  # node pool name -> position
    prices: tuple[float, ...]
    by_class: tuple[tuple[int, tuple[int, ...]], ...]  # (class, offsets into node_pools)


@dataclass(slots=True)
class _Structure:
    """Everything about the options that depends only on the demands and the node pools'
    kinds and prices, not on free capacity or the current placement: cached between calls,
    because the planner re-plans the same demands over a changing cluster."""

    pools: list[PoolInfo]
    np_class: list[int]
    sizes: dict[int, tuple[int, ...]]
    opt_pool: list[int] = field(default_factory=list)
    opt_node_pool: list[int] = field(default_factory=list)
    opt_variant: list[VariantDemand] = field(default_factory=list)
    opt_k: list[int] = field(default_factory=list)
    opt_rps: list[float] = field(default_factory=list)
    opt_cost: list[float] = field(default_factory=list)
    opt_family: list[int] = field(default_factory=list)
    pool_groups: list[list[Group]] = field(default_factory=list)
    variant_options: dict[tuple[int, str], tuple[int, Mapping[str, int]]] = field(
        default_factory=dict
    )


_CACHE: OrderedDict[tuple[object, ...], _Structure] = OrderedDict()
_CACHE_SIZE = 4


def compile_problem(
    snapshot: ClusterSnapshot,
    demands: Sequence[PoolDemand],
    current: Mapping[PlacementKey, int] | None,
    options: PlacementOptions,
) -> Problem:
    node_pools = _node_pools(snapshot, options)
    max_alloc = [
        max((n.allocatable for n in snapshot.room_of(npc.pool.name)), default=0)
        for npc in node_pools
    ]
    key = (
        tuple(demands),
        tuple(
            (npc.pool.name, npc.pool.family, npc.pool.product, npc.pool.topology,
             npc.pool.instance_type, npc.pool.price_per_accelerator_hour, npc.limit, alloc)
            for npc, alloc in zip(node_pools, max_alloc, strict=True)
        ),
        options.excluded_variants,
    )
    structure = _CACHE.get(key)
    if structure is None:
        structure = _build_structure(node_pools, max_alloc, demands, options)
        _CACHE[key] = structure
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)

    pools = [
        PoolInfo(index=t.index, demand=t.demand, min_replicas=t.min_replicas,
                 max_replicas=t.max_replicas, scale=t.scale, options=t.options,
                 unmatched=t.unmatched)
        for t in structure.pools
    ]
    for npc in node_pools:
        npc.sizes = structure.sizes.get(npc.index, ())
    problem = Problem(
        snapshot=snapshot,
        options_in=options,
        pools=pools,
        node_pools=node_pools,
        opt_pool=structure.opt_pool,
        opt_node_pool=structure.opt_node_pool,
        opt_variant=structure.opt_variant,
        opt_k=structure.opt_k,
        opt_rps=structure.opt_rps,
        opt_cost=structure.opt_cost,
        opt_family=structure.opt_family,
        np_class=structure.np_class,
        pool_groups=structure.pool_groups,
        variant_options=structure.variant_options,
    )
    problem.opt_current = [0] * problem.n_options
    if current:
        by_key = {info.key: info.index for info in pools}
        stale = {}
        for placement, count in current.items():
            if count <= 0:
                continue
            o = problem.option_of(placement, by_key)
            if o is None:
                stale[placement] = int(count)
            else:
                problem.opt_current[o] = int(count)
                pools[problem.opt_pool[o]].current_options.append(o)
        problem.stale_current = dict(sorted(stale.items()))
        for info in pools:
            info.current_options.sort()
    return problem


def _build_structure(
    node_pools: list[NodePoolCapacity],
    max_alloc: list[int],
    demands: Sequence[PoolDemand],
    options: PlacementOptions,
) -> _Structure:
    pools = [
        _pool_info(i, d) for i, d in enumerate(sorted(demands, key=lambda d: d.key))
    ]
    if len({p.key for p in pools}) != len(pools):
        raise ValueError("InferencePool keys must be unique")
    built = _Structure(pools=pools, np_class=capacity_classes(node_pools), sizes={})
    by_family: dict[str, list[NodePoolCapacity]] = defaultdict(list)
    for npc in node_pools:
        by_family[npc.pool.family].append(npc)
    matches: dict[tuple[str, str | None, str | None, str | None, int], _Match] = {}

    def match(variant: VariantDemand, k: int) -> _Match:
        shape = (variant.family, variant.product, variant.topology, variant.instance_type, k)
        found = matches.get(shape)
        if found is None:
            fits = [
                npc for npc in by_family.get(variant.family, ())
                if (not variant.product or variant.product == npc.pool.product)
                and (not variant.topology or variant.topology == npc.pool.topology)
                and (not variant.instance_type
                     or variant.instance_type == npc.pool.instance_type)
                and max_alloc[npc.index] >= k
            ]
            classes: dict[int, list[int]] = defaultdict(list)
            for offset, npc in enumerate(fits):
                classes[built.np_class[npc.index]].append(offset)
            found = matches[shape] = _Match(
                node_pools=tuple(npc.index for npc in fits),
                offsets={npc.pool.name: i for i, npc in enumerate(fits)},
                prices=tuple(npc.pool.price_per_accelerator_hour for npc in fits),
                by_class=tuple((c, tuple(offs)) for c, offs in sorted(classes.items())),
            )
        return found

    sizes: dict[int, set[int]] = defaultdict(set)
    for info in pools:
        groups: list[tuple[str, int, Group]] = []
        for variant in sorted(info.demand.variants, key=lambda v: v.name):
            if (info.key, variant.name) in options.excluded_variants:
                info.unmatched.append(f"variant {variant.name} excluded (degraded)")
                continue
            k = replica_accelerators(variant)
            found = match(variant, k)
            m = len(found.node_pools)
            if m == 0:
                info.unmatched.append(_why_unmatched(variant, k))
                continue
            start = len(built.opt_pool)
            info.options.extend(range(start, start + m))
            built.variant_options[(info.index, variant.name)] = (start, found.offsets)
            built.opt_pool.extend([info.index] * m)
            built.opt_node_pool.extend(found.node_pools)
            built.opt_variant.extend([variant] * m)
            built.opt_k.extend([k] * m)
            built.opt_rps.extend([max(0.0, variant.capacity_rps)] * m)
            if variant.cost_per_hour is not None:
                built.opt_cost.extend([max(0.0, variant.cost_per_hour)] * m)
            else:
                built.opt_cost.extend(k * price for price in found.prices)
            built.opt_family.extend([FAMILY_INDEX[variant.family]] * m)
            for i in found.node_pools:
                sizes[i].add(k)
            split = info.demand.max_node_pool_share < 1.0
            for klass, offsets in found.by_class:
                if split:  # node pool shares count per node pool: one group each
                    groups.extend((variant.name, klass, Group((start + off,), klass))
                                  for off in offsets)
                else:
                    groups.append((variant.name, klass,
                                   Group(tuple(start + off for off in offsets), klass)))
        built.pool_groups.append([g for _, _, g in groups])
    built.sizes = {i: tuple(sorted(ks)) for i, ks in sizes.items()}
    return built


def capacity_classes(node_pools: Sequence[NodePoolCapacity]) -> list[int]:
    """Node pools that are interchangeable for every variant: same family, product, topology,
    instance type and price, and no per-pool accelerator limit (a limited pool is a class of
    its own)."""
    index: dict[tuple[object, ...], int] = {}
    result = []
    for npc in node_pools:
        pool = npc.pool
        key: tuple[object, ...] = (
            pool.family, pool.product, pool.topology, pool.instance_type,
            pool.price_per_accelerator_hour,
        )
        if npc.limit is not None:
            key = ("limited", npc.index)
        result.append(index.setdefault(key, len(index)))
    return result


def _node_pools(snapshot: ClusterSnapshot, options: PlacementOptions) -> list[NodePoolCapacity]:
    result = []
    for i, pool in enumerate(snapshot.pools):
        free = tuple(sorted((n.free for n in snapshot.room_of(pool.name) if n.free > 0),
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
    what = "/".join(x for x in (variant.family, variant.product, variant.instance_type,
                                variant.topology) if x)
    return f"variant {variant.name}: no node pool of {what} with {k} accelerators on one node"

