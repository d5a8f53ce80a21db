"""InferencePool: one model, served by one or more variants on different accelerators."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from yarl import URL

from inferpool.api.cel import cel, rule
from inferpool.api.common import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    ApiModel,
    Condition,
    Family,
    LabelValue,
    ObjectMeta,
    StatusModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from inferpool.api.security import PodTemplate

MAX_VARIANTS: Final = 16
MAX_REPLICAS: Final = 10_000
TOPOLOGY_PATTERN: Final = r"^[1-9][0-9]{0,2}x[1-9][0-9]{0,2}(x[1-9][0-9]{0,2})?$"
PERCENT_PATTERN: Final = r"^(100|[1-9]?[0-9])%$"

class Replicas(ApiModel):
    """Bounds on the total number of replicas over all variants and node pools."""

    model_config = ConfigDict(json_schema_extra=cel(rule(
        "self.min <= self.max", "replicas.min must be less than or equal to replicas.max",
        field_path=".min")))

    min: Annotated[StrictInt, Field(ge=0, le=MAX_REPLICAS)] = 1
    """Fewest replicas to run whatever the demand (0 allows scaling to zero)."""
    max: Annotated[StrictInt, Field(ge=1, le=MAX_REPLICAS)]
    """Most replicas to run whatever the demand."""

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.min > self.max:
            raise ValueError("replicas.min must be less than or equal to replicas.max")
        return self


class SecretKeyRef(ApiModel):
    name: Annotated[StrictStr, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
    """Name of a Secret in the InferencePool's namespace. The operator only reads Secrets that
    carry the label inferpool.dev/usage=prometheus-auth (see docs/api.md)."""
    key: Annotated[StrictStr, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = (
        "token")
    """Key in the Secret whose value is sent as a bearer token."""


class PrometheusAuth(ApiModel):
    secret_ref: SecretKeyRef
    """Bearer token to send with each query."""


# The URL parsed as the API server parses it (Go's net/url, through CEL's URL library): an
# http(s) URL with a host and, if a port is given, one from 1 to 65535 (net/url has checked that
# it is digits; a regex here would cost more than the CRD's budget). `&&` in CEL is false when
# either side is false, even if the other is an error, so url() is safe after isURL().
_PORT = "url(self).getPort()"
URL_RULE = rule(
    "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    f" && ({_PORT} == '' || (size({_PORT}) <= 5 && int({_PORT}) >= 1"
    f" && int({_PORT}) <= 65535))",
    "must be an http(s) URL with a host and, if given, a port from 1 to 65535")


def url_problem(url: str) -> str | None:
    """What makes `url` unusable as a Prometheus base URL (the pydantic twin of URL_RULE)."""
    try:
        parsed = URL(url)
        parsed.port  # noqa: B018  (yarl checks the port when asked for it)
    except ValueError as err:
        return str(err)
    if parsed.scheme not in ("http", "https"):
        return f"the scheme is {parsed.scheme!r}, not http or https"
    if not parsed.raw_host:
        return "it has no host"
    authority = re.split(r"[/?#]", url.split("://", 1)[-1], maxsplit=1)[0].rpartition("@")[2]
    after_host = authority.rpartition("]")[2] if authority.startswith("[") else authority
    port = after_host.rpartition(":")[2] if ":" in after_host else ""
    if port and not (len(port) <= 5 and port.isascii() and port.isdigit()
                     and 1 <= int(port) <= 65535):
        return f"the port {port!r} is not a number from 1 to 65535"
    return None


class PrometheusSource(ApiModel):
    """Demand read from Prometheus: the query's scalar result, in requests/s."""

    query: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    """PromQL returning one sample: the request rate the model must serve, in requests/s."""
    url: Annotated[StrictStr, Field(max_length=2048, pattern=r"^https?://[^\s]+$",
                                    json_schema_extra=cel(URL_RULE))] | None = None
    """Prometheus base URL; overrides the operator's default. The operator queries it only if
    its --prometheus-allowed-urls allows it (otherwise DemandUnknown, PrometheusURLNotAllowed)."""
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=300)] = 10
    """Query timeout; on failure the last known demand is kept."""
    auth: PrometheusAuth | None = None
    """Credentials for the query, if the Prometheus endpoint needs them."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        problem = None if value is None else url_problem(value)
        if problem is not None:
            raise ValueError(f"not a usable Prometheus URL: {problem}")
        return value


Tolerance = Annotated[StrictFloat, Field(ge=0, lt=1)]


class ScaleUp(ApiModel):
    stabilization_seconds: Annotated[StrictInt, Field(ge=0, le=3600)] = 0
    """Act on the lowest demand over this many seconds, so that short spikes do not add
    replicas (the HPA's default: 0, react at once)."""
    tolerance: Tolerance = 0.1
    """Ignore increases of required capacity smaller than this fraction: this band is what stops
    measurement noise from adding and removing replicas (the HPA's default: 0.1)."""


class ScaleDown(ApiModel):
    stabilization_seconds: Annotated[StrictInt, Field(ge=0, le=3600)] = 300
    """Act on the highest demand over this many seconds, so that short dips do not remove
    replicas (the HPA's default: 300)."""
    tolerance: Tolerance = 0.05
    """Ignore decreases of required capacity smaller than this fraction. Lower than the HPA's
    0.1: the window already keeps noise from removing replicas, and capacity held inside the
    band is paid for on every way down (docs/scaling.md)."""


class Demand(ApiModel):
    """How much serving capacity is needed, in requests/s. Exactly one of fixed and prometheus."""

    model_config = ConfigDict(json_schema_extra=cel(rule(
        "has(self.fixed) != has(self.prometheus)",
        "exactly one of demand.fixed and demand.prometheus must be set")))

    fixed: Annotated[StrictFloat, Field(ge=0, le=10_000_000)] | None = None
    """A constant demand in requests/s."""
    prometheus: PrometheusSource | None = None
    """Demand measured by a Prometheus query."""
    target_utilization: Annotated[StrictFloat, Field(gt=0, le=1)] = 0.7
    """Fraction of the replicas' capacity to use at the measured demand; the headroom absorbs
    spikes while new replicas start."""
    scale_up: ScaleUp = ScaleUp()
    """How fast capacity is added: stabilization window and tolerance."""
    scale_down: ScaleDown = ScaleDown()
    """How fast capacity is removed: stabilization window and tolerance."""

    @model_validator(mode="after")
    def _one_source(self) -> Demand:
        if (self.fixed is None) == (self.prometheus is None):
            raise ValueError("exactly one of demand.fixed and demand.prometheus must be set")
        return self


class Resilience(ApiModel):
    """How the replicas are spread so that losing one vendor or node pool is survivable."""

    max_family_share: Annotated[StrictFloat, Field(gt=0, le=1)] = 1.0
    """Largest share of the capacity one accelerator family may provide: 0.7 keeps at least
    30% of the capacity when a whole family fails."""
    max_node_pool_share: Annotated[StrictFloat, Field(gt=0, le=1)] = 1.0
    """Largest share of the capacity one node pool may provide."""
    min_families: Annotated[StrictInt, Field(ge=1, le=len(Family))] = 1
    """Fewest accelerator families to run replicas on (when there are at least that many
    replicas)."""


class Accelerator(ApiModel):
    """The accelerator one replica runs on."""

    model_config = ConfigDict(json_schema_extra=cel(
        rule("!has(self.topology) || self.family == 'tpu'",
             "topology is only valid for the tpu family", field_path=".topology"),
        rule("!has(self.topology) || has(self.type)",
             "topology requires type (the TPU accelerator type)", field_path=".topology"),
        rule("!has(self.product) || self.family != 'tpu'",
             "product is not used for the tpu family; use type", field_path=".product"),
    ))

    family: Family
    """Accelerator family: nvidia (nvidia.com/gpu), tpu (google.com/tpu) or neuron
    (aws.amazon.com/neuron, Trainium and Inferentia)."""
    product: LabelValue | None = None
    """Accelerator model, as the node label names it: nvidia.com/gpu.product for nvidia
    (NVIDIA-H100-80GB-HBM3), karpenter.k8s.aws/instance-accelerator-name for neuron (trainium,
    inferentia2). Not used for tpu."""
    type: LabelValue | None = None
    """Machine or slice type: cloud.google.com/gke-tpu-accelerator for tpu (tpu-v6e-slice),
    node.kubernetes.io/instance-type for nvidia and neuron (p5.48xlarge, trn2.48xlarge)."""
    topology: Annotated[StrictStr, Field(max_length=11, pattern=TOPOLOGY_PATTERN)] | None = None
    """TPU slice topology (cloud.google.com/gke-tpu-topology), such as 2x4 or 2x2x2."""
    count: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    """Accelerators (GPUs, TPU chips, Neuron devices) one replica requests."""

    @model_validator(mode="after")
    def _family_fields(self) -> Accelerator:
        if self.topology is not None and self.family is not Family.TPU:
            raise ValueError("topology is only valid for the tpu family")
        if self.topology is not None and self.type is None:
            raise ValueError("topology requires type (the TPU accelerator type)")
        if self.product is not None and self.family is Family.TPU:
            raise ValueError("product is not used for the tpu family; use type")
        return self


class Variant(ApiModel):
    """One way to serve the model: an accelerator type, its throughput and its pod template."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=32, pattern=DNS_LABEL_PATTERN)]
    """Unique name of the variant within the pool (a DNS label, up to 32 characters); becomes
    the inferpool.dev/variant label."""
    accelerator: Accelerator
    """The accelerator one replica runs on, and how many of it."""
    capacity: Annotated[StrictFloat, Field(gt=0, le=1_000_000)]
    """Requests/s one replica serves within the latency objective."""
    cost_per_hour: Annotated[StrictFloat, Field(ge=0, le=100_000)] | None = None
    """Cost of one replica per hour; overrides the node pool's price per accelerator-hour
    times count."""
    preference: Annotated[StrictInt, Field(ge=-100, le=100)] = 0
    """Soft bias between variants of similar cost: higher is preferred."""
    template: PodTemplate
    """Pod template of the replicas. Host access (privileged, host namespaces, hostPath,
    hostPort, extra capabilities) is refused; see docs/api.md."""


def _count_families(expression: str) -> str:
    return " + ".join(f"({expression}.exists(v, v.accelerator.family == '{f.value}') ? 1 : 0)"
                      for f in Family)


_FAMILIES_CEL: Final = _count_families("self.variants")


class Rollout(ApiModel):
    """How replicas move between variants and node pools."""

    model_config = ConfigDict(json_schema_extra=cel(rule(
        "!self.makeBeforeBreak || (self.maxSurge != 0 && self.maxSurge != '0%')",
        "rollout.maxSurge must be above zero when makeBeforeBreak is true",
        field_path=".maxSurge")))

    make_before_break: StrictBool = True
    """Start replicas in their new place and wait until they are Ready before removing the old
    ones."""
    max_surge: StrictInt | StrictStr = Field(default="25%", json_schema_extra=cel(rule(
        f"type(self) == int ? self >= 0 && self <= {MAX_REPLICAS}"
        f" : self.matches('{PERCENT_PATTERN}')",
        f"maxSurge must be an integer from 0 to {MAX_REPLICAS} or a percentage from 0% to 100%")))
    """Extra replicas allowed above the target while moving: a number or a percentage of the
    target."""
    ready_timeout_seconds: Annotated[StrictInt, Field(ge=10, le=7200)] = 600
    """How long every new replica is waited for before old ones go one by one as new ones become
    Ready (new replicas that never become Ready never release old ones)."""

    @field_validator("max_surge")
    @classmethod
    def _surge(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= MAX_REPLICAS:
            raise ValueError(f"maxSurge must be an integer from 0 to {MAX_REPLICAS}")
        if isinstance(value, str) and not re.fullmatch(PERCENT_PATTERN, value):
            raise ValueError("maxSurge must be a percentage from 0% to 100%")
        return value

    @model_validator(mode="after")
    def _surge_for_mbb(self) -> Rollout:
        if self.make_before_break and self.max_surge in (0, "0%"):
            raise ValueError("rollout.maxSurge must be above zero when makeBeforeBreak is true")
        return self


class ServiceSpec(ApiModel):
    """The model's one endpoint: a Service named after the InferencePool that selects the
    Ready pods of every variant, whichever accelerator serves."""

    enabled: StrictBool = True
    """Make the Service (only when a target port is known: set targetPort, or let the first
    variant's first container declare a port)."""
    port: Annotated[StrictInt, Field(ge=1, le=65535)] | None = None
    """The Service's port (default: the target port's number, or 80 for a named one)."""
    target_port: Annotated[StrictInt, Field(ge=1, le=65535)] | Annotated[
        StrictStr, Field(min_length=1, max_length=15, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ] | None = None
    """The pods' port, by number or by name (name it alike in every variant's template);
    default: the first port of the first variant's first container."""


class DisruptionBudgetSpec(ApiModel):
    """A PodDisruptionBudget over the model's pods, so voluntary disruptions (an autoscaler's
    consolidation, `kubectl drain`, node upgrades) evict them a few at a time, each waiting for
    a replacement Ready. The operator's own moves delete, they do not evict: the budget does
    not slow them."""

    enabled: StrictBool = True
    """Make the PodDisruptionBudget (named after the InferencePool)."""
    max_unavailable: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    """Pods of the model that may be evicted at once (on top of those not Ready)."""


class InferencePoolSpec(ApiModel):
    """Desired state of an InferencePool."""

    model_config = ConfigDict(json_schema_extra=cel(
        rule(f"!has(self.resilience) || self.resilience.minFamilies <= {_FAMILIES_CEL}",
             "resilience.minFamilies exceeds the number of accelerator families in variants",
             field_path=".resilience.minFamilies"),
        rule(f"!has(self.resilience) || self.resilience.maxFamilyShare * double({_FAMILIES_CEL})"
             " >= 1.0",
             "resilience.maxFamilyShare times the number of accelerator families in variants "
             "must be at least 1, or no placement can satisfy it",
             field_path=".resilience.maxFamilyShare"),
        rule("!has(self.resilience) || self.replicas.max >= self.resilience.minFamilies",
             "replicas.max must be at least resilience.minFamilies", field_path=".replicas.max"),
    ))

    model: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    """The model served, e.g. meta-llama/Llama-3.1-70B-Instruct (informational)."""
    replicas: Replicas
    """Bounds on the total number of replicas."""
    demand: Demand
    """How much serving capacity is needed, in requests/s."""
    resilience: Resilience = Resilience()
    """How replicas are spread over accelerator families and node pools."""
    priority: Annotated[StrictInt, Field(ge=0, le=1000)] = 0
    """When accelerators are short, pools with a higher priority get capacity first."""
    variants: Annotated[tuple[Variant, ...], Field(min_length=1, max_length=MAX_VARIANTS,
                                             json_schema_extra={
                                                 "x-kubernetes-list-type": "map",
                                                 "x-kubernetes-list-map-keys": ["name"]})]
    """Ways to serve the model, one per accelerator type (at least one, names unique)."""
    rollout: Rollout = Rollout()
    """How replicas move between variants and node pools."""
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    """One Service for the model across its variants."""
    disruption_budget: DisruptionBudgetSpec = Field(default_factory=DisruptionBudgetSpec)
    """One PodDisruptionBudget for the model across its variants."""

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        seen: set[str] = set()
        for i, variant in enumerate(variants):
            if variant.name in seen:
                raise ValueError(f"variants[{i}].name: duplicate variant name {variant.name!r}")
            seen.add(variant.name)
        return variants

    @model_validator(mode="after")
    def _resilience_feasible(self) -> InferencePoolSpec:
        families = len(self.families())
        if self.resilience.min_families > families:
            raise ValueError("resilience.minFamilies exceeds the number of accelerator families "
                             "in variants")
        if self.resilience.max_family_share * float(families) < 1.0:
            raise ValueError("resilience.maxFamilyShare times the number of accelerator families "
                             "in variants must be at least 1, or no placement can satisfy it")
        if self.replicas.max < self.resilience.min_families:
            raise ValueError("replicas.max must be at least resilience.minFamilies")
        return self

    def families(self) -> frozenset[Family]:
        return frozenset(v.accelerator.family for v in self.variants)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


class PlacementRow(StatusModel):
    """Replicas of one variant in one node pool."""

    variant: StrictStr
    """Variant name."""
    node_pool: StrictStr
    """Node pool name (an AcceleratorPool, or a discovered pool's label value)."""
    family: Family
    """Accelerator family of the node pool."""
    desired: Annotated[StrictInt, Field(ge=0)]
    """Replicas the plan wants here."""
    ready: Annotated[StrictInt, Field(ge=0)]
    """Replicas here that are Ready."""


class InferencePoolStatus(StatusModel):
    """Observed state, written by the operator."""

    observed_generation: StrictInt | None = None
    """The .metadata.generation the status describes."""
    desired_replicas: StrictInt | None = None
    """Replicas the planner wants, over all variants and node pools."""
    ready_replicas: StrictInt | None = None
    """Replicas that are Ready."""
    demand: StrictFloat | None = None
    """Demand the plan was made for, in requests/s (before targetUtilization)."""
    required_capacity: StrictFloat | None = None
    """Capacity the planner provisions for, in requests/s: demand / targetUtilization after the
    stabilization windows, never below what replicas.min gives."""
    capacity: StrictFloat | None = None
    """Requests/s the Ready replicas serve."""
    cost_per_hour: StrictFloat | None = None
    """Cost of the Ready replicas per hour."""
    families: Annotated[StrictStr, Field(max_length=64)] | None = None
    """Accelerator families with Ready replicas, comma-separated (nvidia,tpu)."""
    placement: Annotated[tuple[PlacementRow, ...], Field(max_length=512, json_schema_extra={
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["variant", "nodePool"]})] = ()
    """Replicas per variant and node pool."""
    conditions: Annotated[tuple[Condition, ...], Field(max_length=16, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})] = ()
    """Ready, Degraded, CapacityShortfall, Rebalancing, SpecInvalid."""


class InferencePool(ApiModel):
    """An InferencePool as read from the API (a kopf body or a manifest)."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["inferpool.dev/v1alpha1"] = "inferpool.dev/v1alpha1"
    kind: Literal["InferencePool"] = "InferencePool"
    metadata: ObjectMeta
    spec: InferencePoolSpec
    status: InferencePoolStatus | None = None

