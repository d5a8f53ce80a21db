"""The label, taint and resource strings that identify accelerators, per family.

Kept in one place so discovery, the Deployment builder and the tests use the same strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from inferpool.cluster.snapshot import Family


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str | None
    effect: str


RESOURCES: Mapping[Family, str] = MappingProxyType(
    {"nvidia": "nvidia.com/gpu", "tpu": "google.com/tpu", "neuron": "aws.amazon.com/neuron"}
)
NEURONCORE_RESOURCE = "aws.amazon.com/neuroncore"

# Taints that accelerator node pools usually carry; a Deployment of the family tolerates them.
FAMILY_TAINTS: Mapping[Family, tuple[Taint, ...]] = MappingProxyType(
    {
        "nvidia": (Taint("nvidia.com/gpu", "present", "NoSchedule"),),
        "tpu": (Taint("google.com/tpu", "present", "NoSchedule"),),
        "neuron": (Taint("aws.amazon.com/neuron", None, "NoSchedule"),),
    }
)

# Node pool identity, first found wins.
POOL_LABELS: tuple[str, ...] = (
    "inferpool.dev/node-pool",
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
)

# Label that marks pods the operator made: their accelerators are the current placement.
OWNED_POD_LABEL = "inferpool.dev/pool"
# The node pool our pods were placed in, by the name it had then: a pool keeps that name.
POD_NODE_POOL_LABEL = "inferpool.dev/node-pool"

NVIDIA_PRODUCT = "nvidia.com/gpu.product"
NVIDIA_COUNT = "nvidia.com/gpu.count"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
TPU_ACCELERATOR = "cloud.google.com/gke-tpu-accelerator"
TPU_TOPOLOGY = "cloud.google.com/gke-tpu-topology"
GKE_SPOT = "cloud.google.com/gke-spot"
GKE_PREEMPTIBLE = "cloud.google.com/gke-preemptible"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
KARPENTER_ACCELERATOR_NAME = "karpenter.k8s.aws/instance-accelerator-name"
KARPENTER_CAPACITY_TYPE = "karpenter.sh/capacity-type"
EKS_CAPACITY_TYPE = "eks.amazonaws.com/capacityType"

# The labels a variant's product, type and topology are matched against (NodePool.labels).
ACCELERATOR_LABELS: tuple[str, ...] = (
    "nvidia.com/gpu.product",
    "cloud.google.com/gke-accelerator",
    "cloud.google.com/gke-tpu-accelerator",
    "cloud.google.com/gke-tpu-topology",
    "node.kubernetes.io/instance-type",
    "karpenter.k8s.aws/instance-accelerator-name",
)

# Taints after which a node offers nothing to new replicas.
UNHEALTHY_TAINTS: frozenset[str] = frozenset(
    {
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unschedulable",
    }
)

# GKE's accelerator label names GPUs differently from the NVIDIA GPU feature discovery label;
# normalise to the latter so one variant matches both kinds of node.
GKE_GPU_PRODUCTS: Mapping[str, str] = MappingProxyType(
    {
        "nvidia-h100-80gb": "NVIDIA-H100-80GB-HBM3",
        "nvidia-h100-mega-80gb": "NVIDIA-H100-80GB-HBM3",
        "nvidia-l4": "NVIDIA-L4",
        "nvidia-a100-80gb": "NVIDIA-A100-SXM4-80GB",
        "nvidia-tesla-a100": "NVIDIA-A100-SXM4-40GB",
    }
)

# Neuron product = accelerator name, derived from the instance type when Karpenter's label is
# absent (managed node groups do not set it).
NEURON_INSTANCE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("inf1.", "inferentia"),
    ("inf2.", "inferentia2"),
    ("trn1.", "trainium"),
    ("trn1n.", "trainium"),
    ("trn2.", "trainium2"),
    ("trn2u.", "trainium2"),
)


def topology_chips(topology: str | None) -> int | None:
    """Chips in a TPU slice topology such as "2x4" or "2x2x1"; None if not parseable."""
    if not topology:
        return None
    chips = 1
    for part in topology.lower().split("x"):
        if not part.isdigit() or int(part) <= 0:
            return None
        chips *= int(part)
    return chips
