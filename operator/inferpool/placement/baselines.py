"""Reference strategies the benchmark compares the engine with (not used by the operator).

- `greedy_spillover`: what heterogeneous autoscalers do today: pool by pool (priority order),
  fill the cheapest-per-rps option, spill to the next cheapest when it is full.
- `static_single_family`: each model served by one family only, the one that looks cheapest
  per rps on paper, as a person sizing one Deployment per model would do.
Both respect node capacity exactly (through State) but know nothing of hysteresis, resilience
or the integer rounding of the last replica.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from inferpool.cluster.snapshot import ClusterSnapshot
from inferpool.placement.explain import build_plan
from inferpool.placement.model import PlacementOptions, Plan, PoolDemand
from inferpool.placement.objective import EPS
from inferpool.placement.problem import Problem, compile_problem
from inferpool.placement.state import State


def greedy_spillover(
    snapshot: ClusterSnapshot,
    demands: Sequence[PoolDemand],
    options: PlacementOptions = PlacementOptions(),  # noqa: B008 - frozen default
) -> Plan:
    return _run(snapshot, demands, options, "greedy-spillover", single_family=False)


def static_single_family(
    snapshot: ClusterSnapshot,
    demands: Sequence[PoolDemand],
    options: PlacementOptions = PlacementOptions(),  # noqa: B008 - frozen default
) -> Plan:
    return _run(snapshot, demands, options, "static-single-family", single_family=True)


def _run(
    snapshot: ClusterSnapshot,
    demands: Sequence[PoolDemand],
    options: PlacementOptions,
    name: str,
    single_family: bool,
) -> Plan:
    began = time.perf_counter()
    problem = compile_problem(snapshot, demands, None, options)
    counts = spillover_counts(problem, single_family)
    return build_plan(problem, counts, name, time.perf_counter() - began, optimal=False)


def spillover_counts(problem: Problem, single_family: bool) -> list[int]:
    state = State(problem)
    for tier in problem.priority_tiers():
        for p in sorted(tier, key=lambda q: problem.pools[q].key):
            _fill(state, p, single_family)
    return state.counts


def _fill(state: State, p: int, single_family: bool) -> None:
    pr = state.problem
    info = pr.pools[p]
    order = sorted(
        info.options,
        key=lambda o: (pr.opt_cost[o] / pr.opt_rps[o] if pr.opt_rps[o] > 0 else math.inf,
                       o),
    )
    if single_family and order:
        family = pr.opt_family[order[0]]
        order = [o for o in order if pr.opt_family[o] == family]
    cap = 0.0
    n = 0
    for o in order:
        missing = info.demand.required_rps - cap
        rps = pr.opt_rps[o]
        units = math.ceil(missing / rps - 1e-9) if rps > 0 and missing > EPS else 0
        want = min(max(units, info.min_replicas - n), info.max_replicas - n)
        if want <= 0:
            break
        got = state.add(o, want)
        n += got
        cap += got * pr.opt_rps[o]
