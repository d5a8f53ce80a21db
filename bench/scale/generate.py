"""The generated cluster and InferencePools of `make bench-scale`: node pools of the three
accelerator families with the vendors' real labels and taints, and InferencePools sized to use a
fixed share of them. Pure: the same sizes give the same objects."""

from __future__ import annotations

import string
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

GROUP, VERSION, PLURAL = "inferpool.dev", "v1alpha1", "inferencepools"
NAMESPACES = 10
USE_SHARE = 0.65  # of each accelerator type's slots that demand asks for
TARGET_UTILIZATION = 0.8  # spec.demand.targetUtilization of every pool
ALTERNATE_PRICE = 1.5  # alternates cost this much more per req/s than a pool's first variant


# --- the cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of accelerator node, and the variant that runs on it."""

    family: str
    accelerators: int  # per node
    cpu: str
    memory: str
    cloud: str  # "gke" or "eks": which pool and capacity-type labels the nodes carry
    labels: dict[str, str]
    accelerator: dict[str, Any]  # the variant's spec.variants[].accelerator
    capacity: float  # req/s one replica serves
    size: str  # "large" (70B-class, whole nodes) or "small" (8B-class, a few devices)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def per_replica(self) -> int:
        return int(self.accelerator["count"])


def _gpu(product: str, gke: str, machine: str, count: int, memory: str) -> dict[str, str]:
    return {"cloud.google.com/gke-accelerator": gke, "node.kubernetes.io/instance-type": machine,
            "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(count),
            "nvidia.com/gpu.memory": memory}


def _tpu(accelerator: str, topology: str, machine: str) -> dict[str, str]:
    return {"cloud.google.com/gke-tpu-accelerator": accelerator,
            "cloud.google.com/gke-tpu-topology": topology,
            "node.kubernetes.io/instance-type": machine}


def _neuron(machine: str, name: str) -> dict[str, str]:
    return {"node.kubernetes.io/instance-type": machine,
            "karpenter.k8s.aws/instance-accelerator-name": name}


H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
L4 = "NVIDIA-L4"
# Sizes never mix on one kind of node (8B-class replicas would fragment 8-GPU nodes under the
# scheduler's spreading and leave 70B-class replicas Pending: a real effect, not this bench's).
KINDS: dict[str, Kind] = {
    "h100": Kind("nvidia", 8, "208", "1872Gi", "gke",
                 _gpu(H100, "nvidia-h100-80gb", "a3-highgpu-8g", 8, "81559"),
                 {"family": "nvidia", "product": H100, "count": 8}, 40.0, "large"),
    "a100": Kind("nvidia", 8, "96", "1360Gi", "gke",
                 _gpu(A100, "nvidia-a100-80gb", "a2-ultragpu-8g", 8, "81920"),
                 {"family": "nvidia", "product": A100, "count": 8}, 22.0, "large"),
    "l4": Kind("nvidia", 4, "48", "192Gi", "gke",
               _gpu(L4, "nvidia-l4", "g2-standard-48", 4, "23034"),
               {"family": "nvidia", "product": L4, "count": 1}, 5.0, "small"),
    "v6e": Kind("tpu", 8, "180", "1440Gi", "gke",
                _tpu("tpu-v6e-slice", "2x4", "ct6e-standard-8t"),
                {"family": "tpu", "type": "tpu-v6e-slice", "topology": "2x4", "count": 8},
                35.0, "large"),
    "v5e": Kind("tpu", 8, "224", "192Gi", "gke",
                _tpu("tpu-v5-lite-podslice", "2x4", "ct5lp-hightpu-8t"),
                {"family": "tpu", "type": "tpu-v5-lite-podslice", "topology": "2x4",
                 "count": 8}, 16.0, "large"),
    "v5e-2x2": Kind("tpu", 4, "112", "192Gi", "gke",
                    _tpu("tpu-v5-lite-podslice", "2x2", "ct5lp-hightpu-4t"),
                    {"family": "tpu", "type": "tpu-v5-lite-podslice", "topology": "2x2",
                     "count": 4}, 12.0, "small"),
    "trn1": Kind("neuron", 16, "128", "512Gi", "eks", _neuron("trn1.32xlarge", "trainium"),
                 {"family": "neuron", "product": "trainium", "count": 16}, 24.0, "large",
                 {"aws.amazon.com/neuroncore": "32"}),
    "trn2": Kind("neuron", 16, "192", "2048Gi", "eks", _neuron("trn2.48xlarge", "trainium2"),
                 {"family": "neuron", "product": "trainium2", "count": 16}, 45.0, "large",
                 {"aws.amazon.com/neuroncore": "128"}),
    "inf2": Kind("neuron", 12, "192", "768Gi", "eks", _neuron("inf2.48xlarge", "inferentia2"),
                 {"family": "neuron", "product": "inferentia2", "count": 2}, 6.0, "small",
                 {"aws.amazon.com/neuroncore": "24"}),
}
# Node pools are handed out in this order (32 pools: 16 nvidia, 8 tpu, 8 neuron).
CYCLE = ("h100", "l4", "v6e", "trn2", "a100", "inf2", "v5e", "h100",
         "l4", "v6e", "trn1", "v5e-2x2", "a100", "inf2", "h100", "l4")


@dataclass(frozen=True)
class NodePool:
    name: str
    kind: str
    nodes: int
    spot: bool

    @property
    def slots(self) -> int:
        k = KINDS[self.kind]
        return self.nodes * (k.accelerators // k.per_replica)


def node_pools(nodes: int, count: int) -> list[NodePool]:
    """`count` pools named `<kind>-a`, `<kind>-b`, ...; every third pool of a kind is spot."""
    seen: Counter[str] = Counter()
    out = []
    for i in range(count):
        kind = CYCLE[i % len(CYCLE)]
        n = seen[kind]
        seen[kind] += 1
        suffix = string.ascii_lowercase[n % 26] * (1 + n // 26)
        out.append(NodePool(f"{kind}-{suffix}", kind, nodes // count + (i < nodes % count),
                            spot=n % 3 == 2))
    return out


def pools_description(pools: Sequence[NodePool]) -> dict[str, Any]:
    out = []
    for p in pools:
        k = KINDS[p.kind]
        labels = dict(k.labels)
        if k.cloud == "gke":
            labels["cloud.google.com/gke-nodepool"] = p.name
            if p.spot:
                labels["cloud.google.com/gke-spot"] = "true"
        else:
            labels["eks.amazonaws.com/nodegroup"] = p.name
            labels["eks.amazonaws.com/capacityType"] = "SPOT" if p.spot else "ON_DEMAND"
            labels["karpenter.sh/capacity-type"] = "spot" if p.spot else "on-demand"
        desc: dict[str, Any] = {"name": p.name, "family": k.family, "nodes": p.nodes,
                                "accelerators": k.accelerators, "cpu": k.cpu,
                                "memory": k.memory, "labels": labels}
        if k.extra:
            desc["extraResources"] = dict(k.extra)
        out.append(desc)
    return {"pools": out}


# --- the InferencePools ------------------------------------------------------------------------


def _variant(kind: str, cost_factor: float) -> dict[str, Any]:
    k = KINDS[kind]
    return {"name": kind, "accelerator": dict(k.accelerator), "capacity": k.capacity,
            "costPerHour": round(k.capacity * cost_factor, 2),
            "template": {"spec": {"containers": [
                {"name": "server", "image": f"registry.local/serve-{kind}:1"}]}}}


def inference_pools(pools: Sequence[NodePool], count: int) -> list[dict[str, Any]]:
    """Even pools serve a 70B-class model, odd ones an 8B-class one. The first variant is the
    cheapest per req/s and its replicas are sized so that, over all pools, each kind of node is
    ~USE_SHARE used; 0-2 alternates (other families first) take spill-over and, for a quarter of
    the pools, a resilience share."""
    present = {p.kind for p in pools}
    classes = {size: [k for k in KINDS if KINDS[k].size == size and k in present]
               for size in ("large", "small")}
    slots: Counter[str] = Counter()
    for p in pools:
        slots[p.kind] += p.slots
    picks: list[tuple[str, list[str]]] = []  # (namespace/name, variant kinds)
    for i in range(count):
        size = "large" if (i % 2 == 0 and classes["large"]) or not classes["small"] else "small"
        order = classes[size]
        j = (i // 2) % len(order)
        primary = order[j]
        rest = order[j + 1:] + order[:j]
        rest.sort(key=lambda k: KINDS[k].family == KINDS[primary].family)  # stable
        picks.append((f"scale-{i % NAMESPACES:02d}/model-{i:03d}",
                      [primary, *rest[:i % 3]]))
    weights = [1 + (i % 4) / 3 for i in range(count)]  # 1 .. 2: pools of uneven size
    weight_of: dict[str, float] = defaultdict(float)
    for (_, kinds), w in zip(picks, weights, strict=True):
        weight_of[kinds[0]] += w
    out = []
    for i, ((key, kinds), w) in enumerate(zip(picks, weights, strict=True)):
        namespace, name = key.split("/")
        first = KINDS[kinds[0]]
        replicas = max(1, round(USE_SHARE * slots[kinds[0]] * w / weight_of[kinds[0]]))
        families = {KINDS[k].family for k in kinds}
        spec: dict[str, Any] = {
            "model": f"bench/{first.size}-{i}",
            "replicas": {"min": 1, "max": max(4, 3 * replicas)},
            # just under `replicas` replicas' worth, so rounding never asks for one more
            "demand": {"fixed": round(replicas * first.capacity * TARGET_UTILIZATION * 0.97, 2),
                       "targetUtilization": TARGET_UTILIZATION},
            "variants": [_variant(k, 1.0 if n == 0 else ALTERNATE_PRICE)
                         for n, k in enumerate(kinds)],
        }
        if i % 4 == 0 and len(families) > 1 and replicas >= 3:
            spec["resilience"] = {"maxFamilyShare": 0.7}
        out.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferencePool",
                    "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    return out
