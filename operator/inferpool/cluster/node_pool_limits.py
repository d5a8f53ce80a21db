"""How far an autoscaler will really grow an elastic pool (pure).

A Karpenter NodePool's `spec.limits` caps the total resources of all its nodes: Karpenter
launches no node that would take the sum past a limit. An AcceleratorPool that selects the
NodePool's nodes (`karpenter.sh/nodepool: <name>`) may therefore grow to no more nodes than
the limit on its accelerator resource allows, nor past a `nodes` limit, whatever its own
`maxNodes` says. Limits on CPU or memory are not read: the operator does not know the size of
a node that does not exist yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferpool.cluster.quantity import count, is_valid

KARPENTER_NODE_POOL_LABEL = "karpenter.sh/nodepool"
NODES_LIMIT = "nodes"


@dataclass(frozen=True, slots=True)
class NodeCap:
    """The most nodes a NodePool's limits allow, and why, in the user's words."""

    nodes: int
    reason: str


def karpenter_node_pool(node_selector: Mapping[str, str]) -> str | None:
    """The Karpenter NodePool whose nodes a pool selects, if its selector names one."""
    return node_selector.get(KARPENTER_NODE_POOL_LABEL)


def node_cap(node_pool: str, limits: Mapping[str, Any], resource: str,
             accelerators_per_node: int) -> NodeCap | None:
    """The tightest cap of `limits` (a NodePool's spec.limits) on nodes of
    `accelerators_per_node` x `resource`; None when no limit bounds them. A value that is not
    a quantity bounds nothing (Karpenter's own schema refuses such values)."""
    caps: list[NodeCap] = []
    per_node = limits.get(resource)
    if per_node is not None and is_valid(per_node):
        total = count(per_node)
        caps.append(NodeCap(total // accelerators_per_node,
                            f"Karpenter NodePool {node_pool} limits {resource} to {total}"))
    most = limits.get(NODES_LIMIT)
    if most is not None and is_valid(most):
        caps.append(NodeCap(count(most),
                            f"Karpenter NodePool {node_pool} limits nodes to {count(most)}"))
    return min(caps, key=lambda c: c.nodes) if caps else None
