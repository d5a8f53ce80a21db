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
from inferpool.placement.explain import plan_from_counts
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
    return plan_from_counts(problem, counts, name, time.perf_counter() - began, optimal=False)


def spillover_counts(problem: Problem, single_family: bool) -> list[int]:
    state = State(problem)
    spill_over(state, single_family)
    return state.counts


def spill_over(state: State, single_family: bool = False) -> None:
    """Fill what each pool still misses, cheapest per rps first, pools in priority order."""
    problem = state.problem
    full: set[int] = set()  # node pool x size (as one int) with no room: filling only adds
    per_rps = [c / r if r > 0 else math.inf
               for c, r in zip(problem.opt_cost, problem.opt_rps, strict=True)]
    # the floor of every plan on large clusters too: keep the per-option work to set lookups
    span = max(problem.opt_k, default=0) + 1
    where = [np * span + k for np, k in zip(problem.opt_node_pool, problem.opt_k, strict=True)]
    for tier in problem.priority_tiers():
        for p in sorted(tier, key=lambda q: problem.pools[q].key):
            _fill(state, p, single_family, full, per_rps, where)


def _fill(state: State, p: int, single_family: bool, full: set[int], per_rps: list[float],
          where: list[int]) -> None:
    pr = state.problem
    info = pr.pools[p]
    counts, opt_rps = state.counts, pr.opt_rps
    # stable sort of ascending options: ties keep option order
    order = sorted(info.options, key=per_rps.__getitem__)
    if single_family and order:
        family = pr.opt_family[order[0]]
        order = [o for o in order if pr.opt_family[o] == family]
    order = [o for o in order if where[o] not in full]  # full places skipped up front
    # what the pool already has (a placement being extended): fill only what is missing
    cap = sum(opt_rps[o] * counts[o] for o in info.options if counts[o])
    n = sum(counts[o] for o in info.options)
    required, least, most = info.demand.required_rps, info.min_replicas, info.max_replicas
    for o in order:
        missing = required - cap
        rps = opt_rps[o]
        units = math.ceil(missing / rps - 1e-9) if rps > 0 and missing > EPS else 0
        want = min(max(units, least - n), most - n)
        if want <= 0:
            break
        if where[o] in full:
            continue
        got = state.add(o, want)
        if got < want:
            full.add(where[o])
        n += got
        cap += got * rps
