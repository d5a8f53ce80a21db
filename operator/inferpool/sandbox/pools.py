"""The YAML description of simulated node pools, and the Node objects made from it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferpool.sandbox.errors import SandboxError

Family = Literal["nvidia", "tpu", "neuron"]

RESOURCE = {"nvidia": "nvidia.com/gpu", "tpu": "google.com/tpu", "neuron": "aws.amazon.com/neuron"}
# The taints the vendors' node pools carry (GKE puts one on GPU nodes too).
DEFAULT_TAINTS = {
    "nvidia": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    "tpu": [{"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"}],
    "neuron": [{"key": "aws.amazon.com/neuron", "effect": "NoSchedule"}],
}
POOL_LABEL = "inferpool.dev/node-pool"
# The built-in description for `--autoscaler karpenter`: every pool elastic, none with a node.
KARPENTER_POOLS = Path(str(resources.files("inferpool.sandbox").joinpath("karpenter-pools.yaml")))
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


class Taint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Elastic(BaseModel):
    """Room Karpenter may add to the pool (`inferpool sandbox up --autoscaler karpenter`): the
    pool becomes a NodePool whose nodes share the pool's shape, labels and taints."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    max_nodes: int = Field(alias="maxNodes", ge=1, le=1_000)
    # None: the operator's own price for a node of this shape (accelerators x list price)
    price_per_node_hour: float | None = Field(default=None, alias="pricePerNodeHour", gt=0)
    provisioning_seconds: float = Field(default=20.0, alias="provisioningSeconds", ge=0,
                                        le=3_600)
    zone: str = "zone-a"
    capacity_type: Literal["on-demand", "spot"] = Field(default="on-demand",
                                                         alias="capacityType")


class PoolSpec(BaseModel):
    """One simulated node pool: `nodes` identical nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    family: Family
    nodes: int = Field(ge=0, le=10_000)
    accelerators: int = Field(ge=1, le=64, description="accelerator devices per node")
    extra_resources: dict[str, str] = Field(default_factory=dict, alias="extraResources")
    cpu: str = "96"
    memory: str = "768Gi"
    pods: int = Field(default=110, ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    # None means the family's usual taint; [] means no taint at all.
    taints: tuple[Taint, ...] | None = None
    elastic: Elastic | None = None

    @field_validator("labels")
    @classmethod
    def _labels_are_strings(cls, labels: dict[str, str]) -> dict[str, str]:
        if POOL_LABEL in labels:
            raise ValueError(f"{POOL_LABEL} is set by the sandbox from the pool name")
        return labels

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.nodes)]

    def taint_list(self) -> list[dict[str, Any]]:
        if self.taints is None:
            return [dict(t) for t in DEFAULT_TAINTS[self.family]]
        return [t.model_dump(exclude_none=True) for t in self.taints]

    def capacity(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            RESOURCE[self.family]: str(self.accelerators),
            **self.extra_resources,
        }

    def node_manifest(self, index: int) -> dict[str, Any]:
        name = f"{self.name}-{index}"
        taints = self.taint_list()
        capacity = self.capacity()
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    **self.labels,
                    POOL_LABEL: self.name,
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {"taints": taints},
            "status": {"capacity": capacity, "allocatable": capacity},
        }


class PoolsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pools: tuple[PoolSpec, ...] = Field(min_length=1)

    @field_validator("pools")
    @classmethod
    def _unique_names(cls, pools: tuple[PoolSpec, ...]) -> tuple[PoolSpec, ...]:
        names = [p.name for p in pools]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"duplicate pool names: {', '.join(dupes)}")
        return pools

    def pool(self, name: str) -> PoolSpec:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise SandboxError(f"no pool {name!r}; pools: {', '.join(p.name for p in self.pools)}")


def default_text() -> str:
    return resources.files("inferpool.sandbox").joinpath("default-pools.yaml").read_text()


def load(path: Path | None = None) -> PoolsFile:
    """Parse a description; errors name the file, the field path and what is wrong."""
    source = str(path) if path else "default-pools.yaml"
    try:
        text = path.read_text() if path else default_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise SandboxError(f"cannot read pool description {source}: {exc}") from exc
    try:
        return PoolsFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SandboxError(f"invalid pool description {source}: {problems}") from exc
