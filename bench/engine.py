"""Benchmark of the placement engine on generated clusters.

    .venv/bin/python -m bench.engine [--quick] [--seed 1]

Prints ONE JSON document on stdout (progress goes to stderr):
- `instances`: per size, the plan time p50/p99 of `place()` (auto solver), the re-plan time
  after one node loss, peak memory, cost and shortfall;
- `comparison`: on instances small enough for the MILP to prove optimality, the engine's cost and
  time side by side with (a) the exact MILP optimum, (b) greedy cheapest-first spill-over (what
  today's heterogeneous autoscalers do) and (c) static single-family placement;
- `solvers`: the MILP library measurement (HiGHS vs scipy.optimize.milp vs OR-Tools) on the
  same models, if those libraries are installed.
The generator draws node pools of the three families with realistic shapes and prices, and
InferencePools with 1-3 variants in different families; H100s are deliberately scarce so that
pools compete for them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from inferpool.cluster import ClusterSnapshot, Family, Node, NodePool
from inferpool.placement import (
    PoolDemand,
    VariantDemand,
)

# --- instance generator ------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A kind of node: family, product, topology, accelerators per node, price, weight."""

    family: Family
    product: str
    topology: str | None
    per_node: int
    price: float
    resource: str
    selector_label: str
    weight: float


SHAPES: tuple[Shape, ...] = (
    Shape("nvidia", "NVIDIA-H100-80GB-HBM3", None, 8, 6.88, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.10),
    Shape("nvidia", "NVIDIA-A100-SXM4-80GB", None, 8, 5.07, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.10),
    Shape("nvidia", "NVIDIA-L4", None, 1, 0.7068, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.08),
    Shape("nvidia", "NVIDIA-L4", None, 4, 0.7068, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.07),
    Shape("tpu", "tpu-v5-lite-podslice", "2x4", 8, 1.20, "google.com/tpu",
          "cloud.google.com/gke-nodepool", 0.12),
    Shape("tpu", "tpu-v5-lite-podslice", "2x2", 4, 1.20, "google.com/tpu",
          "cloud.google.com/gke-nodepool", 0.08),
    Shape("tpu", "tpu-v6e-slice", "2x4", 8, 2.70, "google.com/tpu",
          "cloud.google.com/gke-nodepool", 0.10),
    Shape("neuron", "inferentia2", None, 12, 1.08, "aws.amazon.com/neuron",
          "eks.amazonaws.com/nodegroup", 0.15),
    Shape("neuron", "trainium", None, 16, 1.34, "aws.amazon.com/neuron",
          "eks.amazonaws.com/nodegroup", 0.10),
    Shape("nvidia", "NVIDIA-H100-80GB-HBM3", None, 8, 6.88, "nvidia.com/gpu",
          "karpenter.sh/nodepool", 0.10),
)


@dataclass(frozen=True)
class Archetype:
    """A model size and how it is served on each accelerator type: (shape index, k, rps)."""

    name: str
    variants: tuple[tuple[str, Family, str, str | None, int, float], ...]
    rps_range: tuple[float, float]


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "8b",
        (
            ("l4", "nvidia", "NVIDIA-L4", None, 1, 6.0),
            ("h100", "nvidia", "NVIDIA-H100-80GB-HBM3", None, 1, 45.0),
            ("v5e", "tpu", "tpu-v5-lite-podslice", "2x2", 4, 28.0),
            ("inf2", "neuron", "inferentia2", None, 2, 13.0),
        ),
        (20.0, 400.0),
    ),
    Archetype(
        "70b",
        (
            ("h100", "nvidia", "NVIDIA-H100-80GB-HBM3", None, 4, 40.0),
            ("a100", "nvidia", "NVIDIA-A100-SXM4-80GB", None, 8, 38.0),
            ("v6e", "tpu", "tpu-v6e-slice", "2x4", 8, 36.0),
            ("v5e", "tpu", "tpu-v5-lite-podslice", "2x4", 8, 14.0),
            ("trn1", "neuron", "trainium", None, 16, 34.0),
            ("inf2", "neuron", "inferentia2", None, 12, 24.0),
        ),
        (20.0, 250.0),
    ),
    Archetype(
        "405b",
        (
            ("h100", "nvidia", "NVIDIA-H100-80GB-HBM3", None, 8, 12.0),
            ("trn1", "neuron", "trainium", None, 16, 7.0),
        ),
        (5.0, 40.0),
    ),
)


@dataclass(frozen=True)
class Instance:
    snapshot: ClusterSnapshot
    demands: tuple[PoolDemand, ...]

    @property
    def size(self) -> dict[str, int]:
        return {
            "nodes": len(self.snapshot.nodes),
            "node_pools": len(self.snapshot.pools),
            "inference_pools": len(self.demands),
            "variants": sum(len(d.variants) for d in self.demands),
            "accelerators": sum(n.allocatable for n in self.snapshot.nodes),
        }


def generate(nodes: int, node_pools: int, pools: int, seed: int, load: float = 0.7) -> Instance:
    rng = random.Random(seed)
    weights = [s.weight for s in SHAPES]
    pool_shapes = [SHAPES[i % len(SHAPES)] for i in range(len(SHAPES))]
    pool_shapes += rng.choices(SHAPES, weights=weights, k=max(0, node_pools - len(SHAPES)))
    pool_shapes = pool_shapes[:node_pools]
    # H100 pools are small: the scarce, popular accelerator
    sizes = [rng.uniform(0.3, 0.6) if s.product.startswith("NVIDIA-H100") else rng.uniform(0.6, 1.6)
             for s in pool_shapes]
    scale = nodes / sum(sizes)
    counts = [max(1, round(x * scale)) for x in sizes]
    counts[-1] = max(1, counts[-1] + nodes - sum(counts))

    np_list: list[NodePool] = []
    node_list: list[Node] = []
    for i, (shape, count) in enumerate(zip(pool_shapes, counts, strict=True)):
        roll = rng.random()
        capacity_type = "spot" if roll < 0.25 else "reserved" if roll < 0.35 else "on-demand"
        price = shape.price * (0.4 if capacity_type == "spot" else 0.7 if capacity_type == "reserved"
                               else 1.0)
        name = f"np-{i:03d}-{shape.family}-{shape.product.lower()[:12]}"
        np_list.append(
            NodePool(
                name=name,
                family=shape.family,
                product=shape.product,
                topology=shape.topology,
                price_per_accelerator_hour=round(price, 4),
                capacity_type=capacity_type,
                node_selector={shape.selector_label: name},
                resource=shape.resource,
                max_accelerators=None,
                price_known=True,
            )
        )
        for j in range(count):
            used = 0
            if rng.random() < 0.15:  # other workloads hold part of some nodes
                used = rng.randint(1, shape.per_node)
            healthy = rng.random() > 0.01
            node_list.append(
                Node(
                    name=f"{name}-n{j:03d}",
                    pool=name,
                    allocatable=shape.per_node,
                    used_by_others=used,
                    ready=healthy,
                    schedulable=True,
                )
            )
    snapshot = ClusterSnapshot(pools=tuple(np_list), nodes=tuple(node_list))
    demands = _demands(snapshot, pools, rng, load)
    return Instance(snapshot, demands)


def _demands(
    snapshot: ClusterSnapshot, count: int, rng: random.Random, load: float
) -> tuple[PoolDemand, ...]:
    free_accelerators = sum(n.free for n in snapshot.nodes)
    drafts = []
    for i in range(count):
        arch = rng.choices(ARCHETYPES, weights=(0.5, 0.4, 0.1))[0]
        n_variants = rng.choice((1, 2, 2, 3, 3))
        picks = rng.sample(arch.variants, k=min(n_variants, len(arch.variants)))
        variants = tuple(
            VariantDemand(
                name=name,
                family=family,
                product=product,
                topology=topology,
                accelerators=k,
                capacity_rps=round(rps * rng.uniform(0.85, 1.15), 2),
                preference=rng.choice((0, 0, 1)),
            )
            for name, family, product, topology, k, rps in sorted(picks)
        )
        families = {v.family for v in variants}
        share = 0.7 if len(families) >= 2 and rng.random() < 0.2 else 1.0
        drafts.append((i, arch, variants, share, rng.uniform(*arch.rps_range)))
    # scale demand to need about `load` x the free accelerators (each pool on its leanest variant)
    est = sum(
        rps * min(v.accelerators / v.capacity_rps for v in variants)
        for _, _, variants, _, rps in drafts
    )
    factor = load * free_accelerators / max(est, 1e-9)
    demands = []
    for i, arch, variants, share, rps in drafts:
        priority = rng.choices((0, 50, 100), weights=(0.7, 0.2, 0.1))[0]
        demands.append(
            PoolDemand(
                key=f"ns-{i % 17:02d}/{arch.name}-{i:04d}",
                required_rps=round(rps * factor, 1),
                min_replicas=rng.choice((1, 1, 2)),
                max_replicas=200,
                variants=variants,
                priority=priority,
                max_family_share=share,
            )
        )
    return tuple(demands)
