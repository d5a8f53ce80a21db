"""AcceleratorPool: an explicitly declared node pool, with its price, and its capacity in status."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from inferpool.api.cel import cel, rule
from inferpool.api.common import (
    LABEL_KEY_PATTERN,
    ApiModel,
    CapacityType,
    Condition,
    Family,
    ObjectMeta,
    StatusModel,
    StrictFloat,
    StrictInt,
    StrictStr,
)

# OpenAPI cannot constrain map keys, so keys are checked by a CEL rule and its twin below.
_LabelValue = Annotated[StrictStr, Field(max_length=63,
                                         pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]


class ElasticSpec(ApiModel):
    """Room that does not exist yet: nodes an autoscaler (a Karpenter NodePool, a GKE or EKS
    autoscaled node group) launches when a pod asks for one. The operator plans on it like on
    free accelerators and tells a node being provisioned from one that cannot be had."""

    accelerators_per_node: Annotated[StrictInt, Field(ge=1, le=64)]
    """Accelerators on each node the autoscaler launches (the node shape), e.g. 8 on a
    p5.48xlarge."""
    max_nodes: Annotated[StrictInt, Field(ge=0, le=10_000)]
    """Most nodes the pool may grow to, counting those that exist (a Karpenter NodePool's
    spec.limits divided by acceleratorsPerNode; a node group's maximum size)."""
    provisioning_timeout_seconds: Annotated[StrictInt, Field(ge=10, le=3_600)] = 600
    """A replica that waits longer than this for its node counts as a stockout even when the
    autoscaler says nothing: its capacity spills to other pools, and the pool is retried after
    a backoff. Set it above the pool's usual node start-up time."""
    product: Annotated[StrictStr, Field(max_length=63)] | None = None
    """Accelerator product the nodes will carry (nvidia.com/gpu.product,
    cloud.google.com/gke-tpu-accelerator, ...): needed while no node exists for variants that
    ask for a product."""
    topology: Annotated[StrictStr, Field(max_length=63)] | None = None
    """TPU slice topology of the nodes (cloud.google.com/gke-tpu-topology), e.g. 2x4."""
    instance_type: Annotated[StrictStr, Field(max_length=63)] | None = None
    """node.kubernetes.io/instance-type of the nodes, for variants that ask for a type."""


class AcceleratorPoolSpec(ApiModel):
    """A node pool of one accelerator type. Without AcceleratorPools the operator discovers
    pools from node labels and prices them from a built-in list-price table."""

    family: Family
    """Accelerator family of the pool's nodes: nvidia, tpu or neuron."""
    node_selector: Annotated[dict[str, _LabelValue], Field(
        min_length=1, max_length=16, json_schema_extra=cel(rule(
            f"self.all(k, k.size() <= 317 && k.matches(r'{LABEL_KEY_PATTERN}'))",
            "nodeSelector keys must be label keys, such as inferpool.dev/node-pool")))]
    """Labels that select the pool's nodes, e.g. inferpool.dev/node-pool: h100. The operator
    also puts them in the nodeSelector of the replicas it places here."""
    price_per_accelerator_hour: Annotated[StrictFloat, Field(ge=0, le=10_000)]
    """Price of one accelerator (GPU, TPU chip, Neuron device) per hour, in the currency all
    pools share (list prices in the examples are USD), including its share of the host."""
    capacity_type: CapacityType = CapacityType.ON_DEMAND
    """spot (can be reclaimed at any time), on-demand or reserved (already paid for)."""
    max_accelerators: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
    """Most accelerators the operator may use in this pool (0 drains it); unlimited if unset."""
    elastic: ElasticSpec | None = None
    """Set for a pool an autoscaler grows: the operator may place replicas on nodes that do not
    exist yet, up to maxNodes (docs/failover.md, "Elastic pools")."""

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        for key in selector:
            if len(key) > 317 or not re.fullmatch(LABEL_KEY_PATTERN, key):
                raise ValueError(f"nodeSelector keys must be label keys, not {key!r}")
        return selector


class AcceleratorPoolStatus(StatusModel):
    """Observed capacity of the pool, written by the operator."""

    observed_generation: StrictInt | None = None
    nodes: StrictInt | None = None
    """Nodes that match the selector."""
    ready_nodes: StrictInt | None = None
    """Matching nodes that are Ready and schedulable."""
    accelerators_total: StrictInt | None = None
    """Accelerators in the capacity of all matching nodes."""
    accelerators_allocatable: StrictInt | None = None
    """Accelerators allocatable on Ready, schedulable nodes."""
    accelerators_in_use: StrictInt | None = None
    """Accelerators requested by pods running on the pool's nodes."""
    max_nodes: StrictInt | None = None
    """Elastic pools: the most nodes the operator plans on, counting those that exist:
    spec.elastic.maxNodes, or fewer where the autoscaler's limits allow fewer."""
    max_nodes_limited_by: StrictStr | None = None
    """Elastic pools: the limit that lowered maxNodes, e.g. a Karpenter NodePool's
    spec.limits."""
    conditions: Annotated[tuple[Condition, ...], Field(max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})] = ()
    """Ready: at least one node is Ready, or the pool is elastic and may still grow."""


class AcceleratorPool(ApiModel):
    """An AcceleratorPool as read from the API (a kopf body or a manifest)."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["inferpool.dev/v1alpha1"] = "inferpool.dev/v1alpha1"
    kind: Literal["AcceleratorPool"] = "AcceleratorPool"
    metadata: ObjectMeta
    spec: AcceleratorPoolSpec
    status: AcceleratorPoolStatus | None = None
