"""The pure placement engine: place(snapshot, demands, current) -> Plan.

No Kubernetes I/O (an import-linter contract forbids kopf and kubernetes here). See
docs/placement.md for how it decides.
"""

from inferpool.placement import baselines
from inferpool.placement.engine import place
from inferpool.placement.model import (
    Move,
    PlacementKey,
    PlacementOptions,
    Plan,
    PoolDemand,
    PoolOutcome,
    VariantDemand,
)

__all__ = [
    "Move",
    "PlacementKey",
    "PlacementOptions",
    "Plan",
    "PoolDemand",
    "PoolOutcome",
    "VariantDemand",
    "baselines",
    "place",
]
