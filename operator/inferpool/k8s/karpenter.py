"""Karpenter NodePools' limits, read for the elastic AcceleratorPools that select their nodes
(cluster/node_pool_limits.py says what a limit means for a pool).

Listed, not watched: NodePools are few and change rarely, and a cluster without Karpenter has
no such resource to watch (the list answers 404 there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

GROUP, VERSION, PLURAL = "karpenter.sh", "v1", "nodepools"


def list_node_pool_limits(custom: client.CustomObjectsApi, *, timeout: float = 5.0
                          ) -> dict[str, Mapping[str, Any]]:
    """NodePool name -> spec.limits (empty when it has none). Raises what the client raises."""
    listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, _request_timeout=timeout)
    return {str(item["metadata"]["name"]): dict((item.get("spec") or {}).get("limits") or {})
            for item in listed.get("items") or ()}
