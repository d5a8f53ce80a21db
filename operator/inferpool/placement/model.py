"""Inputs and outputs of the placement engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from inferpool.cluster.snapshot import Family

# (InferencePool key "namespace/name", variant name, node pool name)
PlacementKey = tuple[str, str, str]
SolverChoice = Literal["auto", "milp", "fast"]


@dataclass(frozen=True)
class VariantDemand:
    """One way to serve a model on one accelerator type."""

    name: str
    family: Family
    product: str | None
    topology: str | None
    accelerators: int
    capacity_rps: float
    cost_per_hour: float | None = None  # per replica; overrides accelerators x pool price
    preference: int = 0  # higher wins between options of (nearly) equal cost
    # node.kubernetes.io/instance-type the replicas need (nvidia, neuron `type`); None: any
    instance_type: str | None = None


@dataclass(frozen=True)
class PoolDemand:
    """What one InferencePool needs. min/max bound its replicas summed over all variants."""

    key: str
    required_rps: float
    min_replicas: int
    max_replicas: int
    variants: tuple[VariantDemand, ...]
    priority: int = 0
    max_family_share: float = 1.0
    max_node_pool_share: float = 1.0
    min_families: int = 1


@dataclass(frozen=True)
class PlacementOptions:
    solver: SolverChoice = "auto"
    time_budget_s: float = 1.0
    # Keep the current placement unless moving saves more than this fraction of its cost.
    hysteresis: float = 0.05
    # Caps the accelerators our replicas may use per node pool (stockout backoff).
    pool_accelerator_limits: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # (pool key, variant) pairs marked degraded: they get no replicas.
    excluded_variants: frozenset[tuple[str, str]] = frozenset()
    # Bound on replicas taken away from where they run now (soft: coverage comes first).
    max_moves: int | None = None
    # Re-optimise globally even when a current placement could just be repaired locally
    # (e.g. on the planner's periodic tick); hysteresis still applies.
    full_reoptimize: bool = False


@dataclass(frozen=True)
class Move:
    key: PlacementKey
    before: int
    after: int


@dataclass(frozen=True, eq=False)
class PoolOutcome:
    """One pool's result. `reasons` may be given as a function: they are then computed on
    first use (status shows only the figures and the shortfall cause; building reasons for
    thousands of pools inside `place()` cost seconds of its time budget)."""

    capacity_rps: float
    cost_per_hour: float
    shortfall_rps: float
    shortfall_cause: str | None
    families: tuple[Family, ...]
    explain: tuple[str, ...] | Callable[[], tuple[str, ...]] = field(default=(), repr=False)

    @property
    def reasons(self) -> tuple[str, ...]:
        if callable(self.explain):
            object.__setattr__(self, "explain", self.explain())  # once, then kept
        assert not callable(self.explain)
        return self.explain

    def _fields(self) -> tuple[object, ...]:
        return (self.capacity_rps, self.cost_per_hour, self.shortfall_rps, self.shortfall_cause,
                self.families, self.reasons)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PoolOutcome) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.capacity_rps, self.cost_per_hour, self.shortfall_rps,
                     self.shortfall_cause, self.families))

    def __repr__(self) -> str:
        return (f"PoolOutcome(capacity_rps={self.capacity_rps}, cost_per_hour="
                f"{self.cost_per_hour}, shortfall_rps={self.shortfall_rps}, shortfall_cause="
                f"{self.shortfall_cause!r}, families={self.families}, reasons={self.reasons})")


@dataclass(frozen=True)
class Plan:
    replicas: Mapping[PlacementKey, int]  # only entries > 0, sorted by key
    outcomes: Mapping[str, PoolOutcome]
    moves: tuple[Move, ...]
    solver: str
    solve_seconds: float
    optimal: bool

    @property
    def cost_per_hour(self) -> float:
        return sum(o.cost_per_hour for o in self.outcomes.values())

    @property
    def shortfall_rps(self) -> float:
        return sum(o.shortfall_rps for o in self.outcomes.values())
