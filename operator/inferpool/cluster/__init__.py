"""The cluster as the placement engine sees it: node pools, nodes, free accelerators, health.

Pure: built from plain dicts, no Kubernetes client (enforced by an import-linter contract).
"""

from inferpool.cluster.discovery import build_snapshot
from inferpool.cluster.prices import Price, PriceTable, default_prices
from inferpool.cluster.snapshot import (
    FAMILIES,
    CapacityType,
    ClusterSnapshot,
    Elastic,
    Family,
    Node,
    NodePool,
)

__all__ = [
    "FAMILIES",
    "CapacityType",
    "ClusterSnapshot",
    "Elastic",
    "Family",
    "Node",
    "NodePool",
    "Price",
    "PriceTable",
    "build_snapshot",
    "default_prices",
]
