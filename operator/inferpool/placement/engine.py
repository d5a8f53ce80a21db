"""`place()`: the engine's one entry point.

1. compile the snapshot, demands and current placement into an indexed problem;
2. choose a solver: the exact MILP for small problems (or when asked), the fast path otherwise;
3. solve: the fast path always runs first, so there is a feasible plan whatever happens next,
   and it is the MILP's warm start;
4. build the Plan: replicas, per-pool outcomes and reasons, moves.
No I/O and no randomness: the same input gives the same plan (as long as no solver stops on its
time budget, which is the one thing that depends on the machine).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from inferpool.cluster.snapshot import ClusterSnapshot
from inferpool.placement.explain import plan_from_counts
from inferpool.placement.fast import solve_fast
from inferpool.placement.milp import solve_milp
from inferpool.placement.model import PlacementKey, PlacementOptions, Plan, PoolDemand
from inferpool.placement.objective import score
from inferpool.placement.problem import Problem, compile_problem

# "auto" uses the MILP up to this many (pool, variant, node pool) options. Measured (issue #16,
# bench.engine families, seed 1, 1 s budget): at ~180 options (150 nodes / 40 pools) the MILP
# reached the coverage a 10 s MILP reaches on all five scarce families, where the fast path
# left 20-70 % more normalised shortfall; at ~500 and ~1,250 options it was better on two or
# three families of five and worse on the others (its later stages cut by the budget).
AUTO_MILP_MAX_OPTIONS = 250
# share of the budget the fast path may use before the MILP starts (MILP solver only); the
# better of the two plans is returned
FAST_SHARE_BEFORE_MILP = 0.5
# Of the budget for solving; the rest builds the Plan (0.93 overran by 12-17 % in a full CI run).
PLAN_SHARE = 0.85


def place(
    snapshot: ClusterSnapshot,
    demands: Sequence[PoolDemand],
    current: Mapping[PlacementKey, int] | None = None,
    options: PlacementOptions = PlacementOptions(),  # noqa: B008 - frozen, safe as a default
) -> Plan:
    began = time.perf_counter()
    # leave a little of the budget for building the Plan (explanations, moves)
    deadline = began + PLAN_SHARE * max(options.time_budget_s, 0.0)
    problem = compile_problem(snapshot, demands, current, options)
    solver = choose_solver(problem, options)

    if solver == "fast":
        fast = solve_fast(problem, deadline, full=options.full_reoptimize)
        return plan_from_counts(problem, fast.counts, f"fast/{fast.mode}",
                          time.perf_counter() - began, optimal=False)

    fast_deadline = began + FAST_SHARE_BEFORE_MILP * max(options.time_budget_s, 0.0)
    fast = solve_fast(problem, fast_deadline, full=True)
    exact = solve_milp(problem, deadline, start=fast.counts)
    counts, name, optimal = exact.counts, "milp", exact.optimal
    fast_score, exact_score = score(problem, fast.counts), score(problem, exact.counts)
    if fast_score < exact_score:
        # the MILP stopped (budget, or within its gap) on an incumbent worse than its warm
        # start: keep the warm start, which is then at least as close to the proven bound.
        # Still proven only if it differs from a proven plan in cost (within the gap) or
        # preference alone: a better coverage or resilience level would disprove the proof
        counts, name = fast.counts, "milp+fast"
        optimal = optimal and fast_score[:-2] == exact_score[:-2]
    return plan_from_counts(problem, counts, name, time.perf_counter() - began, optimal=optimal)


def choose_solver(problem: Problem, options: PlacementOptions) -> str:
    if options.solver != "auto":
        return options.solver
    return "milp" if problem.n_options <= AUTO_MILP_MAX_OPTIONS else "fast"
