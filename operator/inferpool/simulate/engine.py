"""The simulation loop: one simulated clock, one cluster per policy, the same trace for all.

Each step of `stepSeconds`, for each policy:
1. the cluster catches up to now: events (failures, stockouts, prices), evictions, ReplicaSets
   replacing deleted pods, the scheduler binding pending pods, pods turning Ready;
2. the policy observes (demand reading, Ready capacity, pods) and changes Deployments, as the
   operator's planner does on a tick (one tick per step);
3. new pods are bound at once (they become Ready after their start-up delay);
4. the step is measured: served = min(demand, Ready capacity) per model, cost = accelerators of
   bound pods on working nodes x the pool's price, both held for the whole step.
The trace starts warm: what a policy places on the first step is Ready at once, as if the
service had been running before the trace began.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from inferpool.cluster import FAMILIES
from inferpool.scaling import ManualClock
from inferpool.simulate.bound import MODES, OfflineBound
from inferpool.simulate.cluster import SimCluster
from inferpool.simulate.policies import POLICY_TYPES
from inferpool.simulate.scenario import Scenario
from inferpool.simulate.traces import demand_traces

OFFLINE: Final = "offline"
POLICIES: Final = ("inferpool", "static", "spill", OFFLINE)


@dataclass
class PolicyRun:
    name: str
    cost_per_hour: list[float] = field(default_factory=list)
    capacity: dict[str, list[float]] = field(default_factory=dict)  # model -> Ready rps
    ready: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # model -> family
    moves: int = 0
    pods_started: int = 0
    plans: int = 0
    stockout_trips: int = 0
    nodes_launched: int = 0  # by elastic pools' autoscaler
    nodes_removed: int = 0
    seconds: float = 0.0
    extra_cost_per_hour: dict[str, list[float]] = field(default_factory=dict)  # bound variants


@dataclass
class SimulationResult:
    scenario: Scenario
    times: list[float]
    demand: dict[str, list[float]]
    runs: dict[str, PolicyRun]


def simulate(scenario: Scenario, policies: Sequence[str] = POLICIES,
             progress: Callable[[str], None] | None = None) -> SimulationResult:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policies: {', '.join(unknown)} (known: {', '.join(POLICIES)})")
    demand = demand_traces(scenario)
    times = [i * float(scenario.step_seconds) for i in range(scenario.steps)]
    runs: dict[str, PolicyRun] = {}
    for name in policies:
        began = time.perf_counter()
        run = run_offline(scenario, demand) if name == OFFLINE else run_policy(
            scenario, name, demand, times)
        run.seconds = time.perf_counter() - began
        runs[name] = run
        if progress is not None:
            progress(f"{name}: {len(times)} steps in {run.seconds:.1f} s "
                     f"({run.plans} plans)")
    return SimulationResult(scenario, times, demand, runs)


def run_policy(scenario: Scenario, name: str, demand: Mapping[str, Sequence[float]],
               times: Sequence[float]) -> PolicyRun:
    clock = ManualClock(0.0)
    cluster = SimCluster(scenario, warm_until=times[0] if times else 0.0)
    policy = POLICY_TYPES[name](scenario, clock)
    run = PolicyRun(name, capacity={m.name: [] for m in scenario.models},
                    ready={m.name: {f: [] for f in FAMILIES} for m in scenario.models})
    for i, now in enumerate(times):
        clock.advance(now - clock.now())
        cluster.advance(now)
        policy.act(now, {m: series[i] for m, series in demand.items()}, cluster)
        cluster.settle(now)
        measure = cluster.measure(now)
        run.cost_per_hour.append(measure.cost_per_hour)
        for model, series in run.capacity.items():
            series.append(measure.capacity.get(model, 0.0))
            for family, counts in run.ready[model].items():
                counts.append(measure.ready.get((model, family), 0))
    run.moves = cluster.moves
    run.pods_started = cluster.pods_started
    run.nodes_launched, run.nodes_removed = cluster.nodes_launched, cluster.nodes_removed
    run.plans = policy.plans
    run.stockout_trips = getattr(policy, "stockout_trips", 0)
    return run


def run_offline(scenario: Scenario, demand: Mapping[str, Sequence[float]]) -> PolicyRun:
    bound = OfflineBound(scenario)
    result = bound.run(demand)
    run = PolicyRun(OFFLINE, cost_per_hour=result.cost_per_hour[OFFLINE],
                    capacity=result.capacity, plans=result.solves)
    run.extra_cost_per_hour = {m: result.cost_per_hour[m] for m in MODES if m != OFFLINE}
    return run
