"""The policies compared, each acting once per step on its own simulated cluster.

- `inferpool`: the operator's planner loop with its own code: DemandTracker per pool,
  HealthTracker (stockout and broken-variant backoff) fed with pod views, `planning.engine_call`
  for the engine's arguments, `place()`, then `make_before_break` and the replacement of pods on
  failed nodes. Only the loop's glue is restated, because planner.py imports the Kubernetes
  client (the simulated nodes are never renamed nor in a zone-scale failure, so no pod keeps a
  vanished node pool alive and nothing is frozen).
- `static`: one Deployment per model on NVIDIA (the model's cheapest NVIDIA variant per rps),
  scaled by the same DemandTracker like an autoscaler would; the Kubernetes scheduler spreads its
  pods over every node pool of that product; a failed node's pods leave only by eviction.
- `spill`: cheapest-first spill-over without resilience rules: what is missing is placed by
  `placement.baselines.greedy_spillover` on the room the running replicas leave, scale-downs
  take the most expensive replicas, nothing is moved for cost, and a stockout is noticed the
  way a cluster autoscaler notices one (a node group that cannot grow for 15 min is backed
  off), with the operator's HealthTracker set to that patience.
The offline bound is not a policy on a cluster: see bound.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from inferpool.api.inference_pool import InferencePool
from inferpool.controller.demand import scaling_settings
from inferpool.controller.health import Backoff, HealthTracker, dead_node_pools
from inferpool.controller.planning import ClusterInputs, engine_call
from inferpool.controller.settings import Settings
from inferpool.controller.translate import (
    LiveDeployment,
    MoveClock,
    ParsedPool,
    make_before_break,
    time_moves,
    to_demand,
)
from inferpool.placement import PlacementKey, PlacementOptions, Plan, PoolDemand, place
from inferpool.placement.baselines import greedy_spillover
from inferpool.scaling import DemandTracker, ManualClock, Reading
from inferpool.simulate.cluster import ANY_POOL, DepKey, Shape, SimCluster, shapes_of, wall
from inferpool.simulate.scenario import NAMESPACE, ModelSpec, Scenario

PlanKey = tuple[object, ...]


class Policy(Protocol):
    name: str
    plans: int  # engine (or baseline planner) calls actually made

    def act(self, now: float, demand: Mapping[str, float], cluster: SimCluster) -> None:
        """Observe the cluster and the demand at `now`, and change Deployments."""


def parsed_pool(model: ModelSpec) -> ParsedPool:
    body = model.inference_pool_body()
    return ParsedPool(model.key, body, InferencePool.model_validate(body))


class _Tracked:
    """Per-model DemandTrackers, with the operator's mapping of the spec onto them."""

    def __init__(self, scenario: Scenario, clock: ManualClock) -> None:
        self.scenario = scenario
        self.pools = [parsed_pool(m) for m in sorted(scenario.models, key=lambda m: m.key)]
        self.by_key = {p.key: p for p in self.pools}
        self.trackers = {p.key: DemandTracker(scaling_settings(p.model), clock)
                         for p in self.pools}
        shapes = shapes_of(scenario)
        self.shape_of = {(m.key, v.name): shapes[(m.name, v.name)]
                         for m in scenario.models for v in m.variants}

    def required(self, demand: Mapping[str, float], capacity: Mapping[str, float]
                 ) -> dict[str, float]:
        """One observation per tracker per step, as the planner makes one per reconcile."""
        out = {}
        for key, tracker in self.trackers.items():
            name = key.split("/", 1)[1]
            status = tracker.observe(Reading.good(demand[name]), capacity_rps=capacity[key])
            out[key] = status.required_rps
        return out

    def shapes(self, keys: Iterable[DepKey]) -> dict[DepKey, Shape]:
        return {k: self.shape_of[(k[0], k[1])] for k in keys}


def _live(cluster: SimCluster, now: float) -> dict[PlacementKey, LiveDeployment]:
    return {
        key: LiveDeployment(key=key, name="-".join(key).replace("/", "-"), namespace=NAMESPACE,
                            replicas=dep.replicas, ready=cluster.ready_count(key, now), body={})
        for key, dep in cluster.deployments.items()}


def _ready_capacity(tracked: _Tracked, live: Mapping[PlacementKey, LiveDeployment]
                    ) -> dict[str, float]:
    """As the planner's `demand.running(...).ready_rps`: Ready replicas x the variant's capacity."""
    out = {key: 0.0 for key in tracked.by_key}
    for key, d in live.items():
        if key[0] in out:
            out[key[0]] += d.ready * tracked.shape_of[(key[0], key[1])].capacity
    return out


class InferpoolPolicy:
    name = "inferpool"

    def __init__(self, scenario: Scenario, clock: ManualClock) -> None:
        knobs = scenario.operator
        self.settings = Settings(
            solver=knobs.solver, solver_time_budget_seconds=knobs.solver_time_budget_seconds,
            hysteresis=knobs.hysteresis, max_moves_per_plan=knobs.max_moves_per_plan,
            stockout_seconds=knobs.stockout_seconds,
            retry_backoff_seconds=knobs.retry_backoff_seconds,
            toleration_seconds=math.ceil(knobs.toleration_seconds))
        s = self.settings
        self.tracked = _Tracked(scenario, clock)
        self.health = HealthTracker(
            stockout_seconds=s.stockout_seconds, broken_seconds=s.broken_seconds,
            stockouts=Backoff(initial=s.retry_backoff_seconds),
            broken=Backoff(initial=s.retry_backoff_seconds))
        self.timeouts = {p.key: float(p.model.spec.rollout.ready_timeout_seconds)
                         for p in self.tracked.pools}
        self.moves: MoveClock = {}
        self.plans = 0
        self.stockout_trips = 0
        self._cache: dict[PlanKey, Plan] = {}

    def act(self, now: float, demand: Mapping[str, float], cluster: SimCluster) -> None:
        # 1. snapshot and live Deployments
        snapshot = cluster.snapshot()
        live = _live(cluster, now)
        # 2. demand
        required = self.tracked.required(demand, _ready_capacity(self.tracked, live))
        # 3. health verdicts, then the engine with the operator's own arguments
        views = cluster.pod_views(now)
        before = set(self.health.stocked_out(now))
        elastic = {p.name: p.elastic.provisioning_timeout_s for p in snapshot.pools
                   if p.elastic is not None}
        self.health.observe(views, self.timeouts, now, wall(now), elastic=elastic,
                            autoscaler=cluster.autoscaler_signals())
        stocked_out = self.health.stocked_out(now)
        self.stockout_trips += len(set(stocked_out) - before)
        broken = self.health.broken_variants(now)
        inputs = ClusterInputs(nodes={}, pods=views, accelerator_pools=[],
                               pools=self.tracked.pools, invalid=[], snapshot=snapshot,
                               live=live)
        call = engine_call(inputs, required, self.settings, stocked_out, broken)
        key: PlanKey = (cluster.version, tuple(sorted(required.items())),
                        tuple(sorted(call.options.pool_accelerator_limits.items())),
                        call.options.excluded_variants, tuple(sorted(call.current.items())))
        plan = self._cache.get(key)
        if plan is None:
            # Re-plan only when an input changed: place() is deterministic, so an unchanged
            # input gives the plan the operator's periodic tick would compute again.
            plan = place(call.snapshot, call.demands, call.current, call.options)
            self._cache = {key: plan}
            self.plans += 1
        # 4. apply, make-before-break (the planner's step 4)
        dead = dead_node_pools(snapshot, {k[2] for k in live}, frozenset())
        no_hold = dead | frozenset(stocked_out)
        started = time_moves(self.moves, plan.replicas, live, now)
        gate = make_before_break(plan.replicas, live, self.tracked.by_key, started, now,
                                 no_hold, broken)
        cluster.set_targets(gate.targets, self.tracked.shapes(gate.targets),
                            float(self.settings.toleration_seconds), now)
        if self.settings.replace_pods_on_failed_nodes:
            cluster.delete_pods_on_failed_nodes()


class StaticPolicy:
    name = "static"

    def __init__(self, scenario: Scenario, clock: ManualClock) -> None:
        self.tracked = _Tracked(scenario, clock)
        self.eviction = scenario.cluster.eviction_seconds
        self.plans = 0
        # per pool key: (Deployment key, shape, node pools cheapest first, min, max)
        self.deployments: dict[str, tuple[DepKey, Shape, tuple[str, ...], int, int]] = {}
        for m in scenario.models:
            best: tuple[float, str, tuple[str, ...]] | None = None
            for v in m.variants:
                pools = sorted(scenario.matching_pools(v),
                               key=lambda p: (p.price_per_accelerator_hour, p.name))
                if v.accelerator.family != "nvidia" or not pools:
                    continue
                shape = self.tracked.shape_of[(m.key, v.name)]
                hourly = (v.cost_per_hour if v.cost_per_hour is not None
                          else shape.accelerators * pools[0].price_per_accelerator_hour)
                candidate = (hourly / v.capacity, v.name, tuple(p.name for p in pools))
                best = candidate if best is None or candidate < best else best
            if best is not None:  # a model without an NVIDIA variant gets nothing
                _, variant, names = best
                self.deployments[m.key] = ((m.key, variant, ANY_POOL),
                                           self.tracked.shape_of[(m.key, variant)], names,
                                           m.replicas.min, m.replicas.max)

    def act(self, now: float, demand: Mapping[str, float], cluster: SimCluster) -> None:
        capacity = {key: 0.0 for key in self.tracked.by_key}
        for pool_key, (dep_key, shape, _, _, _) in self.deployments.items():
            capacity[pool_key] = cluster.ready_count(dep_key, now) * shape.capacity
        required = self.tracked.required(demand, capacity)
        for pool_key, (dep_key, shape, pools, low, high) in self.deployments.items():
            replicas = min(max(math.ceil(required[pool_key] / shape.capacity - 1e-9), low), high)
            if replicas != cluster.replicas(dep_key):
                self.plans += 1
                cluster.set_replicas(dep_key, replicas, shape, pools, self.eviction, now)


class SpillPolicy:
    """Scale-ups go to the cheapest room (greedy spill-over on what is free after the running
    replicas); scale-downs remove the most expensive replicas; running replicas never move for
    cost. Replicas on NotReady nodes are given up (the snapshot shows them), pending ones in a
    node pool are given up once it is seen stocked out (after 15 min, as a cluster autoscaler)."""

    name = "spill"

    def __init__(self, scenario: Scenario, clock: ManualClock) -> None:
        knobs = scenario.spill
        self.tracked = _Tracked(scenario, clock)
        self.eviction = scenario.cluster.eviction_seconds
        # the operator's HealthTracker, with a cluster autoscaler's patience and backoff
        self.health = HealthTracker(
            stockout_seconds=knobs.stockout_detection_seconds,
            stockouts=Backoff(initial=knobs.backoff_seconds, maximum=knobs.max_backoff_seconds))
        self.plans = 0

    def act(self, now: float, demand: Mapping[str, float], cluster: SimCluster) -> None:
        snapshot = cluster.snapshot()
        live = _live(cluster, now)
        required = self.tracked.required(demand, _ready_capacity(self.tracked, live))
        views = cluster.pod_views(now)
        # a pending pod in an elastic pool waits for its node as long as for any other
        patience = self.health.stockout_seconds
        self.health.observe(views, {}, now, wall(now), elastic={
            p.name: patience for p in snapshot.pools if p.elastic is not None})
        stocked = set(self.health.stocked_out(now))
        dead = {p.name for p in snapshot.pools
                if not any(n.ready for n in snapshot.nodes_of(p.name))}
        targets = {k: d.replicas for k, d in live.items()}
        for k, dep in cluster.deployments.items():
            if k[2] in dead:
                targets[k] = 0
            elif k[2] in stocked:
                targets[k] = min(targets[k], sum(1 for p in dep.pods if p.node is not None))
        short: list[PoolDemand] = []
        for pool in self.tracked.pools:
            mine = {k: n for k, n in targets.items() if k[0] == pool.key and n > 0}
            rps = {k: self.tracked.shape_of[(k[0], k[1])].capacity for k in mine}
            capacity = sum(n * rps[k] for k, n in mine.items())
            replicas = sum(mine.values())
            spec = pool.model.spec.replicas
            need = required[pool.key]
            if capacity < need - 1e-9 or replicas < spec.min:
                demand_ = replace(to_demand(pool, need - capacity), max_family_share=1.0,
                                  max_node_pool_share=1.0, min_families=1,
                                  min_replicas=max(0, spec.min - replicas),
                                  max_replicas=max(0, spec.max - replicas))
                short.append(demand_)
                continue
            # scale down: the most expensive per rps first, never below need or min
            for k in sorted(mine, key=lambda k: (-self._cost(cluster, k) / rps[k], k)):
                while (targets[k] > 0 and replicas > spec.min
                       and capacity - rps[k] >= need - 1e-9):
                    targets[k] -= 1
                    replicas -= 1
                    capacity -= rps[k]
        if short:
            self.plans += 1
            limits = {p: 0 for p in stocked}
            plan = greedy_spillover(cluster.snapshot(taken=True), short,
                                    PlacementOptions(pool_accelerator_limits=limits))
            for k, n in plan.replicas.items():
                targets[k] = targets.get(k, 0) + n
        cluster.set_targets(targets, self.tracked.shapes(targets), self.eviction, now)

    def _cost(self, cluster: SimCluster, key: PlacementKey) -> float:
        return self.tracked.shape_of[(key[0], key[1])].accelerators * cluster.prices[key[2]]


POLICY_TYPES: dict[str, type[InferpoolPolicy] | type[StaticPolicy] | type[SpillPolicy]] = {
    "inferpool": InferpoolPolicy,
    "static": StaticPolicy,
    "spill": SpillPolicy,
}
