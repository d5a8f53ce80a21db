"""The scenario file: node pools, models, demand traces and events, validated strictly.

camelCase keys like the CRDs, unknown keys refused, and every error names the field it is
about (`nodePools[1].acceleratorsPerNode: ...`), so a typo in a scenario fails loudly instead
of silently simulating something else. Models are also validated as real InferencePools (the
operator's own pydantic model), so a scenario cannot describe a pool the operator would refuse.
Times are offsets from the start of the trace: seconds, or a duration such as "2d10h30m".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic import Strict as StrictType
from pydantic.alias_generators import to_camel

from inferpool.api.inference_pool import InferencePool
from inferpool.cluster.labels import topology_chips
from inferpool.cluster.snapshot import Family

NAMESPACE: Final = "sim"  # every simulated InferencePool lives here: keys are "sim/<model>"
DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
TOPOLOGY: Final = r"^[1-9][0-9]*x[1-9][0-9]*(x[1-9][0-9]*)?$"
_DURATION: Final = re.compile(r"^\s*((\d+(\.\d+)?)\s*[dhms]\s*)+$")
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


class ScenarioError(ValueError):
    """A scenario that cannot be simulated; the message names every offending field."""


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or "1d2h30m15s" (any subset, in that order or not)."""
    if isinstance(value, bool):
        return value  # let the float validator refuse it
    if isinstance(value, str):
        if not _DURATION.match(value):
            raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '2d10h30m')")
        return sum(float(n) * _UNIT[u] for n, u in _PART.findall(value))
    return value


# Strict scalars (as the API models): "3" is not a number and true is not 1.
Float = Annotated[float, StrictType(), Field(allow_inf_nan=False)]
Seconds = Annotated[float, BeforeValidator(parse_duration), StrictType(),
                    Field(ge=0, allow_inf_nan=False)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=40, pattern=DNS_LABEL)]


class Strict(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=False,
    )


class StartupSeconds(Strict):
    """Seconds from a replica being scheduled to Ready (image pull, weights load, compile)."""

    nvidia: Seconds = 60.0
    tpu: Seconds = 180.0  # XLA compilation of the serving graph comes on top of the load
    neuron: Seconds = 240.0  # likewise for the Neuron compiler (unless pre-compiled)

    def of(self, family: Family) -> float:
        return float(getattr(self, family))


class ClusterBehaviour(Strict):
    """How the simulated Kubernetes reacts, independently of any policy."""

    failure_detection_seconds: Seconds = 40.0
    """A failed node is seen NotReady this long after it fails (node-monitor-grace-period)."""
    eviction_seconds: Seconds = 300.0
    """Pods of a plain Deployment leave a NotReady node after this long (the default
    tolerationSeconds); the operator's own pods use its --toleration-seconds instead."""


class OperatorKnobs(Strict):
    """The inferpool policy's operator flags (defaults: the operator's own)."""

    solver: Literal["fast", "auto", "milp"] = "fast"
    solver_time_budget_seconds: Annotated[Float, Field(gt=0, le=60)] = 1.0
    hysteresis: Annotated[Float, Field(ge=0, lt=1)] = 0.05
    max_moves_per_plan: Annotated[StrictInt, Field(ge=0)] = 8
    stockout_seconds: Seconds = 30.0
    retry_backoff_seconds: Annotated[Seconds, Field(gt=0)] = 60.0
    toleration_seconds: Seconds = 30.0


class SpillKnobs(Strict):
    """The cheapest-first baseline stands for a cluster autoscaler with a priority expander:
    a node group that cannot grow is given up after max-node-provision-time (15 min by default)
    and backed off (5 min, doubling to 30 min)."""

    stockout_detection_seconds: Seconds = 900.0
    backoff_seconds: Annotated[Seconds, Field(gt=0)] = 300.0
    max_backoff_seconds: Annotated[Seconds, Field(gt=0)] = 1800.0


class ElasticSpec(Strict):
    """The pool is grown by an autoscaler (Karpenter-like): a pod that finds no room gets a new
    node `provisioning_seconds` later, up to `max_nodes`; a node empty for
    `consolidate_after_seconds` is removed; a `stockout` event is a window in which no node can
    be launched (insufficient capacity), which the autoscaler reports on the waiting pods.
    Elastic pools are billed per node, for as long as a launched node exists."""

    max_nodes: Annotated[StrictInt, Field(ge=1, le=10_000)]
    provisioning_seconds: Seconds = 60.0
    consolidate_after_seconds: Seconds = 30.0
    # the AcceleratorPool's provisioningTimeoutSeconds, as the operator is told it
    provisioning_timeout_seconds: Annotated[Seconds, Field(gt=0)] = 600.0


class NodePoolSpec(Strict):
    name: Name
    family: Family
    product: Annotated[StrictStr, Field(min_length=1, max_length=63)]
    """GPU product (NVIDIA-H100-80GB-HBM3), TPU accelerator type (tpu-v6e-slice) or Neuron
    accelerator name (trainium2, inferentia2), as the variants name it."""
    topology: Annotated[StrictStr, Field(pattern=TOPOLOGY)] | None = None
    instance_type: Annotated[StrictStr, Field(min_length=1, max_length=63)] | None = None
    """node.kubernetes.io/instance-type of the nodes (trn2.48xlarge): what an nvidia or
    neuron variant's `type` is matched against."""
    nodes: Annotated[StrictInt, Field(ge=0, le=10_000)]
    """Nodes at the start (at least 1, unless the pool is elastic)."""
    accelerators_per_node: Annotated[StrictInt, Field(ge=1, le=64)]
    price_per_accelerator_hour: Annotated[Float, Field(ge=0, le=1000, allow_inf_nan=False)]
    capacity_type: Literal["on-demand", "spot", "reserved"] = "on-demand"
    elastic: ElasticSpec | None = None

    @model_validator(mode="after")
    def _topology_is_tpu(self) -> NodePoolSpec:
        if self.topology is not None and self.family != "tpu":
            raise ValueError("topology is only valid for the tpu family")
        if self.elastic is None and self.nodes < 1:
            raise ValueError("nodes must be at least 1 unless the pool is elastic")
        if self.elastic is not None and self.elastic.max_nodes < self.nodes:
            raise ValueError("elastic.maxNodes must be at least nodes")
        return self

    @property
    def max_nodes(self) -> int:
        """The most nodes the pool can have."""
        return self.elastic.max_nodes if self.elastic is not None else self.nodes


class AcceleratorSpec(Strict):
    """As in an InferencePool variant (docs/api.md)."""

    family: Family
    product: StrictStr | None = None
    type: StrictStr | None = None
    topology: StrictStr | None = None
    count: Annotated[StrictInt, Field(ge=1, le=64)] = 1


class VariantSpec(Strict):
    name: Name
    accelerator: AcceleratorSpec
    capacity: Annotated[Float, Field(gt=0, allow_inf_nan=False)]
    """Requests/s one replica serves within the latency objective."""
    startup_seconds: Seconds | None = None
    """Overrides the family's start-up delay."""
    cost_per_hour: Annotated[Float, Field(ge=0, allow_inf_nan=False)] | None = None
    preference: StrictInt = 0


class Spike(Strict):
    at: Seconds
    factor: Annotated[Float, Field(gt=0, allow_inf_nan=False)]
    duration: Annotated[Seconds, Field(gt=0)]


class GeneratedTrace(Strict):
    """Diurnal demand: a cosine between `base` (night) and `peak` (at `peakHour`), times the
    weekend factor on Saturdays and Sundays, times the spikes, times (1 + N(0, noise))."""

    base: Annotated[Float, Field(ge=0, allow_inf_nan=False)]
    peak: Annotated[Float, Field(ge=0, allow_inf_nan=False)]
    peak_hour: Annotated[Float, Field(ge=0, lt=24)] = 14.0
    weekend_factor: Annotated[Float, Field(ge=0, allow_inf_nan=False)] = 1.0
    noise: Annotated[Float, Field(ge=0, le=1)] = 0.03
    spikes: tuple[Spike, ...] = ()
    seed: StrictInt | None = None
    """Noise seed; default: the scenario's seed plus the model's index."""

    @model_validator(mode="after")
    def _ordered(self) -> GeneratedTrace:
        if self.peak < self.base:
            raise ValueError("peak must be at least base")
        return self


class CsvTrace(Strict):
    """A CSV file with a header: `timeColumn` in seconds from the start, `column` in rps. The
    value holds until the next row; `repeat` replays the file when the scenario is longer."""

    path: Annotated[StrictStr, Field(min_length=1)]
    column: StrictStr = "rps"
    time_column: StrictStr = "seconds"
    scale: Annotated[Float, Field(gt=0, allow_inf_nan=False)] = 1.0
    repeat: StrictBool = False


class DemandSpec(Strict):
    generated: GeneratedTrace | None = None
    csv: CsvTrace | None = None

    @model_validator(mode="after")
    def _one(self) -> DemandSpec:
        if (self.generated is None) == (self.csv is None):
            raise ValueError("exactly one of generated and csv must be set")
        return self


class ReplicasSpec(Strict):
    min: Annotated[StrictInt, Field(ge=0, le=10_000)] = 1
    max: Annotated[StrictInt, Field(ge=1, le=10_000)]


class ResilienceSpec(Strict):
    max_family_share: Annotated[Float, Field(gt=0, le=1)] = 1.0
    max_node_pool_share: Annotated[Float, Field(gt=0, le=1)] = 1.0
    min_families: Annotated[StrictInt, Field(ge=1, le=3)] = 1


class ModelSpec(Strict):
    name: Name
    replicas: ReplicasSpec
    target_utilization: Annotated[Float, Field(gt=0, le=1)] = 0.7
    scale_up_stabilization_seconds: Annotated[StrictInt, Field(ge=0, le=3600)] = 0
    scale_down_stabilization_seconds: Annotated[StrictInt, Field(ge=0, le=3600)] = 300
    resilience: ResilienceSpec = ResilienceSpec()
    priority: Annotated[StrictInt, Field(ge=0, le=1000)] = 0
    ready_timeout_seconds: Annotated[StrictInt, Field(ge=10, le=7200)] = 600
    variants: Annotated[tuple[VariantSpec, ...], Field(min_length=1)]
    demand: DemandSpec

    @property
    def key(self) -> str:
        return f"{NAMESPACE}/{self.name}"

    def variant(self, name: str) -> VariantSpec:
        return next(v for v in self.variants if v.name == name)

    def inference_pool_body(self) -> dict[str, Any]:
        """The InferencePool the operator would be given for this model. Demand is `fixed`
        because the simulator feeds the trace to the DemandTracker itself."""
        variants = []
        for v in self.variants:
            acc = {k: val for k, val in v.accelerator.model_dump().items() if val is not None}
            body: dict[str, Any] = {
                "name": v.name, "accelerator": acc, "capacity": float(v.capacity),
                "preference": v.preference,
                "template": {"spec": {"containers": [{"name": "server", "image": "simulated"}]}},
            }
            if v.cost_per_hour is not None:
                body["costPerHour"] = float(v.cost_per_hour)
            variants.append(body)
        r = self.resilience
        return {
            "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
            "metadata": {"name": self.name, "namespace": NAMESPACE, "uid": f"sim-{self.name}",
                         "generation": 1},
            "spec": {
                "model": self.name,
                "replicas": {"min": self.replicas.min, "max": self.replicas.max},
                "demand": {"fixed": 0.0, "targetUtilization": float(self.target_utilization),
                           "scaleUp": {"stabilizationSeconds": self.scale_up_stabilization_seconds},
                           "scaleDown": {
                               "stabilizationSeconds": self.scale_down_stabilization_seconds}},
                "resilience": {"maxFamilyShare": float(r.max_family_share),
                               "maxNodePoolShare": float(r.max_node_pool_share),
                               "minFamilies": r.min_families},
                "priority": self.priority,
                "variants": variants,
                "rollout": {"readyTimeoutSeconds": self.ready_timeout_seconds},
            },
        }

    @model_validator(mode="after")
    def _as_inference_pool(self) -> ModelSpec:
        try:
            InferencePool.model_validate(self.inference_pool_body())
        except ValidationError as exc:
            raise ValueError("not a valid InferencePool: " + "; ".join(
                f"{_path(e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
                for e in exc.errors())) from None
        return self


class Outage(Strict):
    """Every node of the pool fails at `from` and comes back at `to`."""

    type: Literal["outage"]
    pool: Name
    from_: Annotated[Seconds, Field(alias="from")]
    to: Seconds


class Stockout(Strict):
    """The pool cannot grow from `from` to `to`: replicas started there stay Pending (the pool
    still looks free, as an autoscaled pool's unprovisioned room does). Running ones stay."""

    type: Literal["stockout"]
    pool: Name
    from_: Annotated[Seconds, Field(alias="from")]
    to: Seconds


class PriceChange(Strict):
    type: Literal["price"]
    pool: Name
    at: Seconds
    price_per_accelerator_hour: Annotated[Float, Field(ge=0, le=1000, allow_inf_nan=False)]


Event = Annotated[Outage | Stockout | PriceChange, Field(discriminator="type")]


class Scenario(Strict):
    name: Name
    description: StrictStr = ""
    duration: Annotated[Seconds, Field(gt=0, le=90 * 86400)]
    step_seconds: Annotated[StrictInt, Field(ge=10, le=3600)] = 60
    seed: StrictInt = 0
    start_weekday: Annotated[StrictInt, Field(ge=0, le=6)] = 0
    """Day of the week of the first day (0 = Monday), for the weekend factor."""
    startup_seconds: StartupSeconds = StartupSeconds()
    cluster: ClusterBehaviour = ClusterBehaviour()
    operator: OperatorKnobs = OperatorKnobs()
    spill: SpillKnobs = SpillKnobs()
    # (non-empty: checked below, so an invalid item is not reported twice)
    node_pools: tuple[NodePoolSpec, ...]
    models: tuple[ModelSpec, ...]
    events: tuple[Event, ...] = ()
    # where relative CSV paths are resolved: the scenario file's folder (set by the loader)
    _base_dir: str = PrivateAttr(".")

    @property
    def base_dir(self) -> Path:
        return Path(self._base_dir)

    @property
    def steps(self) -> int:
        return math.ceil(self.duration / self.step_seconds - 1e-9)

    def pool(self, name: str) -> NodePoolSpec:
        return next(p for p in self.node_pools if p.name == name)

    @property
    def elastic_pools(self) -> list[str]:
        return [p.name for p in self.node_pools if p.elastic is not None]

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)

    def startup(self, variant: VariantSpec) -> float:
        """Seconds from scheduled to Ready: the variant's override, else its family's."""
        if variant.startup_seconds is not None:
            return float(variant.startup_seconds)
        return self.startup_seconds.of(variant.accelerator.family)

    def matching_pools(self, variant: VariantSpec) -> list[NodePoolSpec]:
        """Node pools a variant's replica can run in, by the engine's own matching rules."""
        return [p for p in self.node_pools if pool_matches(p, variant)]

    def truncated(self, seconds: float) -> Scenario:
        """The same scenario cut to its first `seconds` (events after the cut are dropped)."""
        if seconds >= self.duration:
            return self
        kept = tuple(e for e in self.events
                     if (e.at if isinstance(e, PriceChange) else e.from_) < seconds)
        return self.model_copy(update={"duration": float(seconds), "events": kept})

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        problems: list[str] = []
        if not self.node_pools:
            problems.append("nodePools: at least one node pool is needed")
        if not self.models:
            problems.append("models: at least one model is needed")
        _unique(problems, "nodePools", [p.name for p in self.node_pools])
        _unique(problems, "models", [m.name for m in self.models])
        names = {p.name for p in self.node_pools}
        for i, m in enumerate(self.models):
            _unique(problems, f"models[{i}].variants", [v.name for v in m.variants])
            for j, v in enumerate(m.variants):
                if not self.matching_pools(v):
                    acc = v.accelerator
                    what = "/".join(x for x in (acc.family, acc.product or acc.type,
                                                acc.topology) if x)
                    problems.append(
                        f"models[{i}].variants[{j}]: no node pool of {what} with "
                        f"{replica_accelerators(v.accelerator)} accelerators per node")
        for i, e in enumerate(self.events):
            if e.pool not in names:
                problems.append(f"events[{i}].pool: unknown node pool {e.pool!r} "
                                f"(known: {', '.join(sorted(names))})")
            if isinstance(e, Outage | Stockout):
                if e.to <= e.from_:
                    problems.append(f"events[{i}].to: must be after from")
                if e.from_ >= self.duration:
                    problems.append(f"events[{i}].from: after the end of the scenario")
            elif e.at >= self.duration:
                problems.append(f"events[{i}].at: after the end of the scenario")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _unique(problems: list[str], where: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            problems.append(f"{where}[{i}].name: duplicate name {name!r}")
        seen.add(name)


def engine_product(acc: AcceleratorSpec) -> str | None:
    """The product as node pools name it (controller/translate.py): a TPU's type."""
    return acc.type if acc.family == "tpu" else acc.product


def replica_accelerators(acc: AcceleratorSpec) -> int:
    """Accelerators one replica holds: a TPU replica takes its whole slice, as the engine
    counts it (its helper is not public API, so the one-line rule is restated here)."""
    chips = topology_chips(acc.topology) if acc.family == "tpu" else None
    return max(acc.count, chips or 0)


def pool_matches(pool: NodePoolSpec, variant: VariantSpec) -> bool:
    """The engine's matching rules: family, product (TPU: type), instance type (nvidia and
    neuron: type) and topology when the variant names them, and one replica's accelerators
    fit on one node."""
    acc = variant.accelerator
    product = engine_product(acc)
    if acc.family != pool.family:
        return False
    if product and product != pool.product:
        return False
    if acc.topology and acc.topology != pool.topology:
        return False
    if acc.family != "tpu" and acc.type and acc.type != pool.instance_type:
        return False
    return replica_accelerators(acc) <= pool.accelerators_per_node


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def _describe(exc: ValidationError) -> str:
    lines: list[str] = []
    for err in exc.errors():
        # discriminated unions add the tag ("outage") to the location: keep the reader's path
        loc = tuple(p for p in err["loc"] if p not in ("outage", "stockout", "price"))
        msg = str(err["msg"]).removeprefix("Value error, ")
        path = _path(loc)
        lines.extend(f"{path}: {line}" if path else line for line in msg.splitlines())
    return "\n".join(lines)


def parse_scenario(data: Mapping[str, Any], base_dir: str | Path = ".") -> Scenario:
    if not isinstance(data, Mapping):
        raise ScenarioError("a scenario is a YAML mapping (name, duration, nodePools, models, ...)")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_describe(exc)) from None
    scenario._base_dir = str(base_dir)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, path.parent)
