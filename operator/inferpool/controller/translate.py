"""Pure translations between the API objects, the engine and the Deployments (no I/O).

Kept apart from the planner loop so each rule (what counts as current placement, when an old
replica may go, what the status says) is unit-tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from inferpool.api.inference_pool import InferencePool, Variant
from inferpool.api.security import ALLOW_PRIVILEGED
from inferpool.cluster import NodePool
from inferpool.cluster import labels as clbl
from inferpool.k8s import deployments as dep
from inferpool.k8s import labels as lbl
from inferpool.placement import PlacementKey, PoolDemand, VariantDemand

T = TypeVar("T")


@dataclass(frozen=True)
class ParsedPool:
    key: str  # namespace/name
    body: Mapping[str, Any]
    model: InferencePool

    @property
    def namespace(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.model.metadata.name

    @property
    def uid(self) -> str:
        return str(self.model.metadata.uid or "")

    @property
    def generation(self) -> int:
        return int(self.model.metadata.generation or 0)


@dataclass(frozen=True)
class InvalidPool:
    key: str
    body: Mapping[str, Any]
    message: str


def pool_key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


# (namespace/name, resourceVersion, privileged allowed) -> the model, or why it is invalid
ParseCache = dict[tuple[str, str, bool], InferencePool | str]


def parse_pools(bodies: Iterable[Mapping[str, Any]], allow_privileged: Iterable[str] = (),
                cache: ParseCache | None = None) -> tuple[list[ParsedPool], list[InvalidPool]]:
    """Validate every InferencePool again in Python: objects stored before a CRD upgrade, or
    under a laxer CRD, must not reach the engine. Invalid ones are reported, never fatal.

    With a `cache` (kept by the caller across calls), an object at a resourceVersion already
    seen is not validated again: at hundreds of pools validation is most of a plan's snapshot
    phase. The cache keeps only the versions of this call."""
    allowed = set(allow_privileged)
    valid: list[ParsedPool] = []
    invalid: list[InvalidPool] = []
    seen: ParseCache = {}
    for body in sorted(bodies, key=pool_key):
        key = pool_key(body)
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        privileged = key.split("/", 1)[0] in allowed
        version = str(meta.get("resourceVersion") or "")
        result = cache.get((key, version, privileged)) if cache is not None and version else None
        if result is None:
            try:
                # The status is ours and may come from another version: only the spec is
                # judged.
                spec_only = {k: v for k, v in body.items() if k != "status"}
                result = InferencePool.model_validate(spec_only,
                                                      context={ALLOW_PRIVILEGED: privileged})
            except ValidationError as exc:
                result = _describe(exc)
        if version:
            seen[(key, version, privileged)] = result
        if isinstance(result, str):
            invalid.append(InvalidPool(key, body, result))
        else:
            valid.append(ParsedPool(key, body, result))
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return valid, invalid


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        path = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        parts.append(f"{path}: {err['msg']}" if path else str(err["msg"]))
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def engine_product(variant: Variant) -> str | None:
    """The accelerator product as the cluster layer names a node pool's: the GPU product for
    NVIDIA, the TPU accelerator type for TPU, the accelerator name for Neuron."""
    acc = variant.accelerator
    return acc.type if acc.family.value == "tpu" else acc.product


def engine_instance_type(variant: Variant) -> str | None:
    """node.kubernetes.io/instance-type a variant needs: its `type`, except for TPU (where
    `type` is the slice type, matched as the product)."""
    acc = variant.accelerator
    return acc.type if acc.family.value != "tpu" else None


def node_selector(variant: Variant, node_pool: NodePool) -> dict[str, str]:
    """The nodeSelector of a variant's Deployment in a node pool: the pool's own, plus the node
    label of every field the variant says where it can run with (product, type, topology), so
    the scheduler holds its pods to the nodes the engine matched it with. A label is pinned
    only as every node of the pool carries it (NodePool.labels): the engine's match on the
    pool already guarantees the rest."""
    acc = variant.accelerator
    wanted: dict[str, str | None] = {}
    if acc.family.value == "tpu":
        wanted[clbl.TPU_ACCELERATOR] = acc.type
        wanted[clbl.TPU_TOPOLOGY] = acc.topology
    else:
        wanted[clbl.INSTANCE_TYPE] = acc.type
        if acc.product is not None:
            # the product as the pool's nodes label it (GKE names GPUs its own way)
            for key in (clbl.NVIDIA_PRODUCT, clbl.KARPENTER_ACCELERATOR_NAME):
                if node_pool.labels.get(key) == acc.product:
                    wanted[key] = acc.product
            raw = node_pool.labels.get(clbl.GKE_ACCELERATOR)
            if raw is not None and clbl.GKE_GPU_PRODUCTS.get(raw, raw) == acc.product:
                wanted[clbl.GKE_ACCELERATOR] = raw
    selector = dict(node_pool.node_selector)
    for key, value in wanted.items():
        if value is not None and node_pool.labels.get(key) == value:
            selector[key] = value
    return selector


def workload(pool: ParsedPool, variant: Variant) -> dep.Workload:
    """What the Deployment builder needs from one variant of an InferencePool."""
    return dep.Workload(
        pool=pool.name, namespace=pool.namespace, owner_uid=pool.uid, variant=variant.name,
        family=variant.accelerator.family.value, accelerators=variant.accelerator.count,
        template=variant.template.to_dict(), max_surge=pool.model.spec.rollout.max_surge)


def to_demand(pool: ParsedPool, required_rps: float) -> PoolDemand:
    spec = pool.model.spec
    return PoolDemand(
        key=pool.key,
        required_rps=required_rps,
        min_replicas=spec.replicas.min,
        max_replicas=spec.replicas.max,
        priority=spec.priority,
        max_family_share=spec.resilience.max_family_share,
        max_node_pool_share=spec.resilience.max_node_pool_share,
        min_families=spec.resilience.min_families,
        variants=tuple(
            VariantDemand(
                name=v.name, family=v.accelerator.family.value, product=engine_product(v),
                topology=v.accelerator.topology, accelerators=v.accelerator.count,
                capacity_rps=v.capacity, cost_per_hour=v.cost_per_hour, preference=v.preference,
                instance_type=engine_instance_type(v),
            )
            for v in spec.variants
        ),
    )


@dataclass(frozen=True)
class LiveDeployment:
    """What the planner needs from one Deployment it made."""

    key: PlacementKey
    name: str
    namespace: str
    replicas: int  # spec.replicas
    ready: int  # status.readyReplicas
    body: Mapping[str, Any]
    foreign: tuple[str, ...] = ()  # spec fields another manager set (k8s/deployments.py)
    generation: int = 0  # metadata.generation: changes with the spec only


def live_deployment(body: Mapping[str, Any]) -> LiveDeployment | None:
    meta = body.get("metadata") or {}
    # the selector is immutable: labels on the object may have been edited away
    labels = {**(meta.get("labels") or {}),
              **(((body.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})}
    pool, variant, node_pool = (labels.get(lbl.POOL), labels.get(lbl.VARIANT),
                                labels.get(lbl.NODE_POOL))
    if not (pool and variant and node_pool):
        return None
    namespace = str(meta.get("namespace", ""))
    return LiveDeployment(
        key=(f"{namespace}/{pool}", variant, node_pool), name=str(meta.get("name", "")),
        namespace=namespace, replicas=int((body.get("spec") or {}).get("replicas") or 0),
        ready=int((body.get("status") or {}).get("readyReplicas") or 0), body=body,
        foreign=tuple(body.get("foreignFields") or ()),
        generation=int(meta.get("generation") or 0),
    )


def write_needed(desired: Mapping[str, Any], live: LiveDeployment,
                 written: tuple[int, str] | None) -> Literal["apply", "replace"] | None:
    """How to bring a live Deployment back to `desired`: nothing; a server-side apply (a field
    we set differs); or a replace, when another manager set spec fields we do not (an apply
    never removes those). The operator owns the whole pod template.

    A field we stopped setting shows in the desired-digest annotation (k8s/deployments.py).
    `written`: (metadata.generation, `dep.digest` of the body) right after our own last write. A
    spec still at that generation, while we still want that body, is ours as the server stored
    it, even where it normalised a value or another manager co-owns a field with the value we
    wrote (no write loop)."""
    as_written = (bool(live.generation) and written is not None
                  and written[0] == live.generation and written[1] == dep.digest(desired))
    meta_ok = dep.matches(desired["metadata"], live.body.get("metadata") or {})
    spec_ok = as_written or (dep.matches(desired["spec"], live.body.get("spec") or {})
                             and not live.foreign)
    if meta_ok and spec_ok:
        return None
    return "replace" if live.foreign and not as_written else "apply"


@dataclass
class Gate:
    """Make-before-break: how many replicas each Deployment gets this round.

    `targets` is what to write; `holding` names the pools whose old replicas wait for new ones.
    """

    targets: dict[PlacementKey, int] = field(default_factory=dict)
    holding: dict[str, str] = field(default_factory=dict)  # pool key -> why


def unready(planned: Mapping[PlacementKey, int],
            live: Mapping[PlacementKey, LiveDeployment]) -> set[str]:
    """Pool keys with a place that has fewer Ready replicas than planned."""
    return {k[0] for k, n in planned.items() if (live[k].ready if k in live else 0) < n}


def by_pool(places: Mapping[PlacementKey, T]) -> dict[str, dict[PlacementKey, T]]:
    """Places grouped by InferencePool key (the first part of a PlacementKey)."""
    out: dict[str, dict[PlacementKey, T]] = {}
    for key, value in places.items():
        out.setdefault(key[0], {})[key] = value
    return out


# pool key -> (the planned places of the move under way, when it began)
MoveClock = dict[str, tuple[frozenset[tuple[PlacementKey, int]], float]]


def time_moves(clock: MoveClock, planned: Mapping[PlacementKey, int],
               live: Mapping[PlacementKey, LiveDeployment], now: float) -> dict[str, float]:
    """When the move of each InferencePool still short of Ready replicas began (updates `clock`
    in place). A different planned placement is a new move: its timer starts again, so a move
    replanned after a long wait is not judged by the time the previous one took."""
    starting = unready(planned, live)
    plans = by_pool({k: n for k, n in planned.items() if n > 0})
    for key in list(clock):
        if key not in starting:
            del clock[key]
    for key in starting:
        target = frozenset(plans.get(key, {}).items())
        if key not in clock or clock[key][0] != target:
            clock[key] = (target, now)
    return {key: started for key, (_, started) in clock.items()}


def make_before_break(
    planned: Mapping[PlacementKey, int],
    live: Mapping[PlacementKey, LiveDeployment],
    pools: Mapping[str, ParsedPool],
    rebalance_started: Mapping[str, float],
    now: float,
    dead_node_pools: frozenset[str] = frozenset(),
    broken: frozenset[tuple[str, str]] = frozenset(),
    frozen_node_pools: frozenset[str] = frozenset(),
    refused: frozenset[tuple[str, str]] = frozenset(),
) -> Gate:
    """Scale up new places at once; scale down old ones only when every growing place of the
    same InferencePool is Ready. Once the pool's rollout.readyTimeoutSeconds has passed since
    the move began, old replicas go only as far as new ones are Ready: new replicas that never
    become Ready never release old ones. Replicas in node pools with no healthy node, or of a
    broken variant, serve nothing, so they never hold. Replicas in `frozen_node_pools` (whose
    nodes' health is unknown: a zone-scale failure) are never scaled down. A `refused` variant
    (its pods cannot be created: controller/failures.py) keeps only its Ready replicas, and
    those until the pool's other planned places are Ready and reach replicas.min."""
    gate = Gate()
    own_keys = by_pool(dict.fromkeys(sorted(set(planned) | set(live))))  # one pass, not per pool
    for pool_key_, pool in pools.items():
        own = list(own_keys.get(pool_key_, {}))
        # Any place with fewer Ready replicas than planned (growing now, or grown on an earlier
        # round and still starting) keeps the old replicas.
        waiting = [k for k in own if (live[k].ready if k in live else 0) < planned.get(k, 0)]
        rollout = pool.model.spec.rollout
        timed_out = (pool_key_ in rebalance_started and
                     now - rebalance_started[pool_key_] >= rollout.ready_timeout_seconds)
        hold = bool(waiting) and rollout.make_before_break
        missing = sum(planned[w] - (live[w].ready if w in live else 0) for w in waiting)
        keep = missing  # after the timeout: old replicas kept, at most one per missing new one
        elsewhere = sum(planned.get(k, 0) for k in own if k[:2] not in refused)
        covered = not waiting and elsewhere >= pool.model.spec.replicas.min
        for k in own:
            want = planned.get(k, 0)
            have = live[k].replicas if k in live else 0
            if want < have and k[2] in frozen_node_pools:
                gate.targets[k] = have
                gate.holding[pool_key_] = (
                    f"node pool {k[2]} is in a zone-scale failure: its replicas are kept")
            elif want < have and k[:2] in refused:
                gate.targets[k] = want if covered else max(want, min(have, live[k].ready))
                if gate.targets[k] > want:
                    gate.holding[pool_key_] = (
                        f"variant {k[1]} is refused new pods: its {gate.targets[k]} Ready "
                        f"replica(s) in {k[2]} are kept until replacements are Ready")
            elif want < have and hold and k[2] not in dead_node_pools and k[:2] not in broken:
                kept = min(have - want, keep) if timed_out else have - want
                keep -= kept if timed_out else 0
                gate.targets[k] = want + kept
                if kept:
                    gate.holding[pool_key_] = (
                        f"waiting for {missing} new replica(s) to become Ready before removing "
                        "old ones")
            else:
                gate.targets[k] = want
    # Deployments of InferencePools that are gone or invalid are left to their owner (deletion
    # garbage-collects them); nothing to do here.
    return gate
