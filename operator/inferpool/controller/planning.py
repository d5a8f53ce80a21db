"""Cluster views -> engine call, shared by the operator's planner and `inferpool plan` (pure).

The planner feeds it kopf's live indexes; `inferpool plan` feeds it a fresh listing or a saved
snapshot file. Both then call `bindable_plan` (`placement.place()`, re-planned until the
scheduler could bind it) with the same arguments, so what the command
prints is what the operator would apply to the same cluster (given the same demand and health
verdicts, which are the two pieces of operator memory a snapshot cannot carry: see
`demand_from_status` and `one_shot_health`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from inferpool.cluster import ClusterSnapshot, build_snapshot
from inferpool.cluster.discovery import bad_quantities
from inferpool.controller import binding
from inferpool.controller.demand import scaling_settings
from inferpool.controller.health import HealthTracker, accelerators_in_use
from inferpool.controller.settings import Settings
from inferpool.controller.translate import (
    InvalidPool,
    LiveDeployment,
    ParseCache,
    ParsedPool,
    live_deployment,
    node_selector,
    parse_pools,
    to_demand,
    workload,
)
from inferpool.k8s import deployments as dep
from inferpool.k8s import labels as lbl
from inferpool.placement import PlacementKey, PlacementOptions, Plan, PoolDemand, place

# The slim views the operator keeps (controller/views.py), by kind; also a snapshot file's keys.
VIEW_NAMES = ("nodes", "pods", "accelerator_pools", "inference_pools", "deployments")


@dataclass(frozen=True)
class ClusterInputs:
    """Everything one plan is computed from, read off the views."""

    nodes: dict[str, dict[str, Any]]  # by name
    pods: list[dict[str, Any]]
    accelerator_pools: list[dict[str, Any]]
    pools: list[ParsedPool]
    invalid: list[InvalidPool]
    snapshot: ClusterSnapshot
    live: dict[PlacementKey, LiveDeployment]
    # resource values that are not quantities (counted as nothing), for the log
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineCall:
    """The arguments of `placement.place()`."""

    snapshot: ClusterSnapshot
    demands: list[PoolDemand]
    current: dict[PlacementKey, int]
    options: PlacementOptions


def read_cluster(views: Mapping[str, Iterable[dict[str, Any]]],
                 allow_privileged_namespaces: Iterable[str] = (),
                 parse_cache: ParseCache | None = None,
                 node_pool_limits: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> ClusterInputs:
    """`views`: the slim views per VIEW_NAMES key (missing keys count as empty);
    `parse_cache`: see `parse_pools`; `node_pool_limits`: see `build_snapshot`."""
    nodes = {view["metadata"]["name"]: view for view in views.get("nodes", ())}
    pods = list(views.get("pods", ()))
    accelerator_pools = list(views.get("accelerator_pools", ()))
    pools, invalid = parse_pools(views.get("inference_pools", ()), allow_privileged_namespaces,
                                 parse_cache)
    valid_keys = {p.key for p in pools}
    snapshot = build_snapshot(nodes.values(), pods_for_snapshot(pods, valid_keys),
                              accelerator_pools, node_pool_limits=node_pool_limits)
    live = {d.key: d for d in map(live_deployment, views.get("deployments", ()))
            if d is not None}
    return ClusterInputs(nodes, pods, accelerator_pools, pools, invalid, snapshot, live,
                         tuple(bad_quantities(nodes.values(), pods)))


def engine_call(inputs: ClusterInputs, required_rps: Mapping[str, float], settings: Settings,
                stocked_out: Iterable[str] = (),
                broken: frozenset[tuple[str, str]] = frozenset()) -> EngineCall:
    """The engine's arguments: every valid pool's demand at `required_rps[key]`, the running
    placement as `current`, and the operator's options (stocked-out node pools capped at what
    our scheduled pods use, broken variants excluded)."""
    keys = {p.key for p in inputs.pools}
    current = {k: d.replicas for k, d in inputs.live.items() if k[0] in keys and d.replicas > 0}
    options = PlacementOptions(
        solver=settings.solver,
        time_budget_s=settings.solver_time_budget_seconds,
        hysteresis=settings.hysteresis,
        pool_accelerator_limits={p: accelerators_in_use(inputs.pods, p) for p in stocked_out},
        excluded_variants=broken, max_moves=settings.max_moves_per_plan)
    demands = [to_demand(p, required_rps[p.key]) for p in inputs.pools]
    return EngineCall(inputs.snapshot, demands, current, options)


MAX_REPLANS = 3  # re-plans with tighter node pool caps until the scheduler could bind the plan


def bindable_plan(inputs: ClusterInputs, call: EngineCall, settings: Settings
                  ) -> tuple[Plan, binding.Binding]:
    """`place()`, then the scheduler's check of its new pods (controller/binding.py): while some
    would find no node, re-plan with each such node pool capped at what really binds there
    (our running replicas plus the new pods that fit). Caps only tighten, so this ends; the
    last plan is returned with its check either way."""
    view = binding.SchedulerView(inputs.nodes, inputs.pods, inputs.snapshot)
    bound = binding.bound_pods(inputs.pods)
    options = call.options
    for attempt in range(MAX_REPLANS + 1):
        plan = place(call.snapshot, call.demands, call.current, options)
        shapes = pod_shapes(inputs, plan.replicas, bound, settings)
        rooms = view.rooms(sorted({k[2] for k in shapes}))
        in_use = {p: view.in_use(p) for p in rooms}
        result = binding.check(plan.replicas, bound, shapes, rooms, in_use)
        if result.binds or attempt == MAX_REPLANS:
            break
        limits = dict(options.pool_accelerator_limits)
        for node_pool in sorted({k[2] for k in result.unbound}):
            limits[node_pool] = min(limits.get(node_pool, result.room[node_pool]),
                                    result.room[node_pool])
        if limits == dict(options.pool_accelerator_limits):
            break  # nothing tighter to try: the same plan again
        options = replace(options, pool_accelerator_limits=limits)
    return plan, result


def pod_shapes(inputs: ClusterInputs, planned: Mapping[PlacementKey, int],
               bound: Mapping[PlacementKey, int], settings: Settings
               ) -> dict[PlacementKey, binding.PodShape]:
    """The pod each placement with new replicas would create: the Deployment's own template
    (requests, tolerations) as the planner would write it."""
    pools = {p.key: p for p in inputs.pools}
    names = {p.name for p in inputs.snapshot.pools}
    out = {}
    for key, n in planned.items():
        pool = pools.get(key[0])
        if n <= bound.get(key, 0) or pool is None or key[2] not in names:
            continue
        variant = next((v for v in pool.model.spec.variants if v.name == key[1]), None)
        if variant is None:
            continue
        body = dep.build(workload(pool, variant), key[2],
                         node_selector(variant, inputs.snapshot.pool(key[2])), 1,
                         settings.toleration_seconds)
        spec = body["spec"]["template"]["spec"]
        out[key] = binding.PodShape(requests=binding.pod_requests(spec),
                                    tolerations=tuple(spec.get("tolerations") or ()),
                                    accelerators=variant.accelerator.count)
    return out


def pods_for_snapshot(pods: Iterable[dict[str, Any]], valid: set[str]) -> list[dict[str, Any]]:
    """Pods of InferencePools the planner does not place this round (invalid ones) keep their
    accelerators: to the engine they are somebody else's pods."""
    out = []
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        owner = labels.get(lbl.POOL)
        if owner is not None and f"{pod['metadata'].get('namespace')}/{owner}" not in valid:
            # the node pool label stays: it still keeps the pool's name (cluster/discovery.py)
            kept = {k: v for k, v in labels.items() if k == lbl.NODE_POOL}
            pod = {**pod, "metadata": {**pod["metadata"], "labels": kept}}
        out.append(pod)
    return out


# -- what a snapshot cannot carry: demand history and health verdicts -----------------------


@dataclass(frozen=True)
class PlannedDemand:
    required_rps: float
    source: str  # where the number comes from, for the reader
    known: bool


def demand_from_status(pool: ParsedPool) -> PlannedDemand:
    """The capacity to plan for without the operator's demand history: what the operator last
    planned for (`status.requiredCapacity`), else a fixed demand's steady state, else the floor
    the operator keeps while demand is unknown."""
    status = pool.body.get("status") or {}
    settings = scaling_settings(pool.model)
    floor = max(settings.min_capacity_rps, settings.safe_floor_rps)
    required = status.get("requiredCapacity")
    fixed = pool.model.spec.demand.fixed
    steady = max(fixed / settings.target_utilization, floor) if fixed is not None else None
    if isinstance(required, int | float) and status.get("observedGeneration") == pool.generation:
        if steady is not None and round(steady, 1) == required:
            # the status is rounded to 0.1 req/s; the exact figure is the one the engine got
            return PlannedDemand(steady, "spec.demand.fixed (= status.requiredCapacity)", True)
        return PlannedDemand(float(required), "status.requiredCapacity", True)
    if steady is not None:
        return PlannedDemand(steady, "spec.demand.fixed / targetUtilization", True)
    if isinstance(required, int | float):
        return PlannedDemand(float(required), "status.requiredCapacity (older generation)",
                             True)
    return PlannedDemand(floor, "unknown: no status yet; planned at the floor "
                         "(replicas.min of the smallest variant)", False)


@dataclass(frozen=True)
class HealthVerdicts:
    stocked_out: list[str]
    broken: frozenset[tuple[str, str]]
    why: dict[str, str]  # node pool or "pool/variant" -> reason


def one_shot_health(inputs: ClusterInputs, settings: Settings, at: dt.datetime
                    ) -> HealthVerdicts:
    """The health verdicts the operator would reach on seeing these pods for the first time
    at `at`: node pools with replicas unschedulable longer than --stockout-seconds, variants
    whose replicas crash or fail to start longer than --broken-seconds."""
    tracker = HealthTracker(stockout_seconds=settings.stockout_seconds,
                            broken_seconds=settings.broken_seconds)
    timeouts = {p.key: float(p.model.spec.rollout.ready_timeout_seconds) for p in inputs.pools}
    tracker.observe(inputs.pods, timeouts, 0.0, at)
    why: dict[str, str] = dict(tracker.stockout_why)
    why.update({f"{k[0]}/{k[1]}": v for k, v in tracker.broken_why.items()})
    return HealthVerdicts(tracker.stocked_out(0.0), tracker.broken_variants(0.0), why)
