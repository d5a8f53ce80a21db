"""Replay a synthetic day of demand through DemandTracker and a capacity plan, on a ManualClock.

    .venv/bin/python -m bench.scaling [--hours 24] [--tick 15] [--seed 7] [--sample-minutes 30]

Prints one JSON document: per-run figures (oscillations per hour, ticks to cover each spike,
cost, under-provisioned time) for the tracker with its defaults and for an HPA-like baseline
(the HorizontalPodAutoscaler's algorithm with its defaults: a 10 % tolerance, a 300 s
scale-down stabilization window, scale-up by at most max(100 %, 4 pods) per 15 s, nothing done
while the metric is missing), both placed by the same engine, plus sampled series of replicas
per family and cost per hour.

The trace: a diurnal curve (low at 04:00, high at 16:00) with 4 % per-tick noise, three spikes
(one small enough for the x2 step cap, two that need panic mode) and a 20-minute load-source
outage. Readings are the true demand of the tick; a real `rate(...[1m])` adds up to a minute of
lag in front of all this, which the tracker cannot remove.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inferpool.scaling import (
    DemandTracker,
    ManualClock,
    Reading,
    Reason,
    ScalingSettings,
    SourceState,
)

HOUR = 3600.0
TARGET_UTILIZATION = 0.7

# A plan turns required capacity (rps) into replicas per accelerator family.
Planner = Callable[[float], dict[str, int]]


@dataclass(frozen=True)
class Variant:
    family: str
    capacity_rps: float  # one replica, within the SLO
    cost_per_hour: float  # one replica; illustrative list prices, not quotes
    stock: int  # replicas the family's node pools can hold


VARIANTS = (
    Variant("nvidia", 40.0, 12.0, 10),  # 4 x H100
    Variant("neuron", 30.0, 12.98, 16),  # inf2.48xlarge
    Variant("tpu", 35.0, 21.6, 12),  # v6e 2x4
)
COST = {v.family: v.cost_per_hour for v in VARIANTS}
CAPACITY = {v.family: v.capacity_rps for v in VARIANTS}


def engine_planner() -> Planner:
    """The real placement engine on three node pools (one replica per node), re-planning from
    its own last placement so hysteresis applies as in the operator."""
    from inferpool.cluster import ClusterSnapshot, Node, NodePool
    from inferpool.placement import PlacementOptions, PoolDemand, VariantDemand, place

    resource = {"nvidia": "nvidia.com/gpu", "tpu": "google.com/tpu",
                "neuron": "aws.amazon.com/neuron"}
    snapshot = ClusterSnapshot(
        pools=tuple(NodePool(name=v.family, family=v.family, product=None,  # type: ignore[arg-type]
                             topology=None, price_per_accelerator_hour=v.cost_per_hour,
                             capacity_type="on-demand", node_selector={}, resource=resource[
                                 v.family]) for v in VARIANTS),
        nodes=tuple(Node(name=f"{v.family}-{i}", pool=v.family, allocatable=1)
                    for v in VARIANTS for i in range(v.stock)))
    variants = tuple(VariantDemand(name=v.family, family=v.family,  # type: ignore[arg-type]
                                   product=None, topology=None, accelerators=1,
                                   capacity_rps=v.capacity_rps, cost_per_hour=v.cost_per_hour)
                     for v in VARIANTS)
    current: dict[tuple[str, str, str], int] = {}

    def plan(required_rps: float) -> dict[str, int]:
        demand = PoolDemand(key="bench/model", required_rps=required_rps, min_replicas=1,
                            max_replicas=sum(v.stock for v in VARIANTS), variants=variants)
        result = place(snapshot, [demand], current, PlacementOptions())
        current.clear()
        current.update(result.replicas)
        out = {v.family: 0 for v in VARIANTS}
        for (_, variant, _), n in result.replicas.items():
            out[variant] += n
        return out

    return plan




@dataclass(frozen=True)
class Spike:
    start_hour: float
    minutes: float
    factor: float


SPIKES = (
    Spike(2.0, 10, 3.0),  # at night, x3: panic
    Spike(9.5, 10, 2.5),  # morning ramp, x2.5: panic
    Spike(20.0, 5, 1.6),  # evening, x1.6: within the x2 step cap, no panic needed
)
OUTAGE = (14.0, 14 + 20 / 60)  # hours: Prometheus unreachable


def diurnal(hour: float) -> float:
    """120 rps at 04:00 to 600 rps at 16:00."""
    return 120.0 + 480.0 * (1 - math.cos(2 * math.pi * (hour - 4) / 24)) / 2


def demand_at(t: float, rng: random.Random) -> float:
    hour = t / HOUR
    rps = diurnal(hour % 24)
    for s in SPIKES:
        if s.start_hour <= hour < s.start_hour + s.minutes / 60:
            rps *= s.factor
    return max(0.0, rps * rng.gauss(1.0, 0.04))


@dataclass
class Run:
    name: str
    settings: ScalingSettings
    replicas: list[dict[str, int]] = field(default_factory=list)
    capacity: list[float] = field(default_factory=list)
    cost_rate: list[float] = field(default_factory=list)
    states: list[SourceState] = field(default_factory=list)
    panics: list[bool] = field(default_factory=list)


def replay(
    name: str, settings: ScalingSettings, demand: Sequence[float], tick: float, planner: Planner
) -> Run:
    clock = ManualClock()
    # Start warm, as an operator restart over a running pool would: the first tick is not a spike.
    tracker = DemandTracker(
        settings, clock, initial_required_rps=demand[0] / settings.target_utilization
    )
    run = Run(name, settings)
    capacity = 0.0
    for i, rps in enumerate(demand):
        hour = i * tick / HOUR
        if OUTAGE[0] <= hour < OUTAGE[1]:
            reading = Reading.failed(Reason.UNREACHABLE, "connection refused")
        else:
            reading = Reading.good(rps)
        status = tracker.observe(reading, capacity_rps=capacity)
        plan = planner(status.required_rps)
        capacity = sum(n * CAPACITY[f] for f, n in plan.items())
        run.replicas.append(plan)
        run.capacity.append(capacity)
        run.cost_rate.append(sum(n * COST[f] for f, n in plan.items()))
        run.states.append(status.state)
        run.panics.append(status.panic)
        clock.advance(tick)
    return run


# The HorizontalPodAutoscaler's defaults (kube-controller-manager flags and the autoscaling/v2
# default behaviour).
HPA_TOLERANCE = 0.1
HPA_DOWN_WINDOW_S = 300.0
HPA_UP_PERIOD_S = 15.0
HPA_UP_PODS = 4


def replay_hpa(demand: Sequence[float], tick: float, planner: Planner) -> Run:
    """The HPA's rule on the pool's capacity: desired = current x utilization / target, skipped
    within the tolerance; scale-down takes the highest recommendation of the last 300 s;
    scale-up is bounded per period; a failed metric changes nothing."""
    settings = ScalingSettings(target_utilization=TARGET_UTILIZATION)
    run = Run("hpa", settings)
    per_pod = sum(CAPACITY.values()) / len(CAPACITY)  # "4 pods" of capacity, on average
    required = demand[0] / TARGET_UTILIZATION  # warm, like the tracked run
    plan = planner(required)
    capacity = sum(n * CAPACITY[f] for f, n in plan.items())
    history: list[tuple[float, float]] = []  # (time, recommended capacity)
    for i, rps in enumerate(demand):
        now, hour = i * tick, i * tick / HOUR
        outage = OUTAGE[0] <= hour < OUTAGE[1]
        if not outage:
            ratio = (rps / capacity) / TARGET_UTILIZATION if capacity > 0 else math.inf
            recommended = capacity if abs(ratio - 1.0) <= HPA_TOLERANCE else rps / (
                TARGET_UTILIZATION)
            history = [(t, r) for t, r in history if now - t < HPA_DOWN_WINDOW_S]
            history.append((now, recommended))
            if recommended > capacity:
                periods = max(1.0, tick / HPA_UP_PERIOD_S)
                limit = capacity + periods * max(capacity, HPA_UP_PODS * per_pod)
                required = min(recommended, limit)
            else:
                required = max(r for _, r in history)
            plan = planner(required)
            capacity = sum(n * CAPACITY[f] for f, n in plan.items())
        run.replicas.append(plan)
        run.capacity.append(capacity)
        run.cost_rate.append(sum(n * COST[f] for f, n in plan.items()))
        run.states.append(SourceState.UNKNOWN if outage else SourceState.OK)
        run.panics.append(False)
    return run


def reversals(series: Sequence[int]) -> int:
    """Direction changes of a series, ignoring flat stretches."""
    count, last = 0, 0
    for a, b in itertools.pairwise(series):
        step = (b > a) - (b < a)
        if step and last and step != last:
            count += 1
        if step:
            last = step
    return count


def spike_reactions(run: Run, demand: Sequence[float], tick: float) -> list[dict[str, Any]]:
    """Ticks until the planned capacity serves the spike's demand, and until it is back at the
    target utilization (capacity >= demand / u). 1 = the plan of the first tick that sees it;
    None = not within the spike."""
    out = []
    u = run.settings.target_utilization
    for s in SPIKES:
        first = math.ceil(s.start_hour * HOUR / tick)
        span = range(first, first + int(s.minutes * 60 / tick))
        serves = [run.capacity[i] >= demand[i] for i in span]
        at_target = [run.capacity[i] * u >= demand[i] for i in span]
        out.append(
            {
                "at_hour": s.start_hour,
                "factor": s.factor,
                "ticks_to_serve": _first_true(serves),
                "ticks_to_target": _first_true(at_target),
                "panic": any(run.panics[i] for i in span),
            }
        )
    return out


def _first_true(flags: Sequence[bool]) -> int | None:
    """1-based index of the first True, None if there is none."""
    return next((n for n, flag in enumerate(flags, start=1) if flag), None)


def summarize(run: Run, demand: Sequence[float], tick: float) -> dict[str, Any]:
    hours = len(demand) * tick / HOUR
    totals = [sum(p.values()) for p in run.replicas]
    short = sum(c < d for c, d in zip(run.capacity, demand, strict=True))
    osc = reversals(totals)
    return {
        "oscillations": osc,
        "oscillations_per_hour": round(osc / hours, 3),
        "spikes": spike_reactions(run, demand, tick),
        "cost_usd": round(sum(run.cost_rate) * tick / HOUR, 2),
        "underprovisioned_minutes": round(short * tick / 60, 2),
        "max_replicas": max(totals),
        "ticks_stale": sum(s is SourceState.STALE for s in run.states),
        "ticks_unknown": sum(s is SourceState.UNKNOWN for s in run.states),
    }


def sampled(run: Run, every: int) -> dict[str, Any]:
    picks = range(0, len(run.replicas), every)
    return {
        "replicas": {v.family: [run.replicas[i][v.family] for i in picks] for v in VARIANTS},
        "cost_per_hour": [round(run.cost_rate[i], 2) for i in picks],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--tick", type=float, default=15.0, help="seconds between readings")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample-minutes", type=float, default=30.0)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    ticks = int(args.hours * HOUR / args.tick)
    demand = [demand_at(i * args.tick, rng) for i in range(ticks)]
    runs = [
        replay(
            "tracked",
            ScalingSettings(target_utilization=TARGET_UTILIZATION),
            demand,
            args.tick,
            engine_planner(),
        ),
        replay_hpa(demand, args.tick, engine_planner()),
    ]
    every = max(1, int(args.sample_minutes * 60 / args.tick))
    doc = {
        "trace": {
            "hours": args.hours,
            "tick_seconds": args.tick,
            "seed": args.seed,
            "target_utilization": TARGET_UTILIZATION,
            "planner": "inferpool.placement.place (the real engine)",
            "spikes": [vars(s) for s in SPIKES],
            "outage_hours": list(OUTAGE),
        },
        "summary": {r.name: summarize(r, demand, args.tick) for r in runs},
        "series": {
            "every_minutes": args.sample_minutes,
            "hour": [round(i * args.tick / HOUR, 2) for i in range(0, ticks, every)],
            "demand_rps": [round(demand[i], 1) for i in range(0, ticks, every)],
            **{r.name: sampled(r, every) for r in runs},
        },
    }
    json.dump(doc, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
