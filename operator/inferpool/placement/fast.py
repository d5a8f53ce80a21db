"""The fast path: decomposition-guided rounding, per-pool exact re-solves and repairs, under a
time budget.

Phases:
1. Start from the current placement, clipped to what still fits (hysteresis makes staying
   cheap).
2. Incremental re-plan when the change touched few pools: re-solve the touched, unhappy and
   improvable pools, repair the touched ones, done (a node loss re-plans in milliseconds).
3. Otherwise global: column generation per pool (decompose.py) decides who gets the scarce,
   cheap accelerators; its solution is rounded (whole patterns first, then the few fractional
   pools).
4. Local improvement: a pool is re-solved exactly against what is free (cover.py) and the
   change kept only if it improves that pool's lexicographic objective, which is the global
   objective because no other pool is touched.
5. Repair by ejection for pools still short or outside their resilience limits.
Every step places through the exact capacity counting, so whatever the budget, the result is a
valid plan.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, replace

from inferpool.placement.baselines import spill_over
from inferpool.placement.cover import best_cover
from inferpool.placement.decompose import Guidance, guide
from inferpool.placement.objective import EPS, pool_terms, score
from inferpool.placement.problem import Problem
from inferpool.placement.state import State

MAX_PASSES = 4
MAX_EJECT_CANDIDATES = 12  # holders tried per (pool, capacity class) in a repair
GUIDE_SHARE = 0.8  # of the budget for the decomposition: it decides most of the quality
REPAIR_SHARE_END = 0.95  # repairs stop here, leaving the rest for the last improvement
# above this share of pools touched by a change, a re-plan optimises globally, not locally
INCREMENTAL_LIMIT = 0.25
# the work after the search (final comparison, Plan and causes), in units of one `score` call,
# measured: building the Plan of ~1,600 short pools took 2-4 scores' time
FINISH_SCORES = 8.0


@dataclass(frozen=True, slots=True)
class FastResult:
    counts: list[int]
    mode: str  # "global", "incremental"
    passes: int
    lp_used: bool


def solve_fast(problem: Problem, deadline: float, full: bool = False) -> FastResult:
    """Anytime: a feasible floor first (greedy spill-over on the current placement), then the
    search; the floor is only replaced by a plan that beats it on the objective, so whatever
    the budget cuts, the result is never worse than greedy spill-over."""
    floor = State(problem)
    _start_from_current(floor)
    spill_over(floor)
    best = FastResult(list(floor.counts), "floor", 0, lp_used=False)
    timer = time.perf_counter()
    best_score = score(problem, best.counts)
    # what is left after the search scales with the problem: comparing with the floor (one
    # score) and building the Plan (a few scores' worth): keep that much of the budget
    deadline -= FINISH_SCORES * (time.perf_counter() - timer)

    def offer(result: FastResult) -> None:
        nonlocal best, best_score
        candidate = score(problem, result.counts)
        if candidate < best_score:
            best, best_score = result, candidate

    state = State(problem)
    touched, unhappy = _start_from_current(state)
    has_current = any(problem.opt_current) or bool(problem.stale_current)
    # a re-plan stays local unless the change itself (replicas that no longer fit or exist)
    # is large; pools that were short or outside their limits before are retried locally
    incremental = has_current and not full and len(touched) <= INCREMENTAL_LIMIT * max(
        1, len(problem.pools)
    )
    if incremental:
        offer(_incremental(state, touched, unhappy, deadline))
        tiers = len(problem.priority_tiers())
        if not any(best_score[:tiers]) or time.perf_counter() >= deadline:
            return best
        # demand left unmet: a local repair is not enough. Re-plan as a fresh plan would
        # (no current placement steering the search), scored with hysteresis as always
        fresh = replace(problem, opt_current=[0] * problem.n_options, stale_current={})
        offer(_global(State(fresh), deadline, floor.counts))
        return best
    offer(_global(state, deadline, floor.counts))
    return best


def _incremental(state: State, touched: set[int], unhappy: set[int],
                 deadline: float) -> FastResult:
    dirty = touched | unhappy | _cheaper_with_room(state)
    passes = _improve(state, dirty, deadline, all_pools=False)
    repaired = _repair(state, deadline, only=touched)
    if repaired:
        passes += _improve(state, repaired, deadline, all_pools=False)
    return FastResult(list(state.counts), "incremental", passes, lp_used=False)


def _global(state: State, deadline: float, floor: list[int]) -> FastResult:
    problem = state.problem
    began = time.perf_counter()
    guidance = guide(state, began + GUIDE_SHARE * (deadline - began))
    dirty = set(range(len(problem.pools)))
    skip: set[int] = set()
    if guidance is not None:
        _round(state, guidance, deadline)
        # a pool that got what it would choose alone cannot do better, and one that got the
        # master's whole pattern is where the LP's global optimum puts it: leave both alone
        settled = {p: {guidance.ideal.get(p)} | {c for w, c in guidance.patterns.get(p, ())
                                                  if w > 1 - 1e-6} for p in dirty}
        skip = {
            p for p in dirty
            if state.group_counts(p) in settled[p] and not _unhappy(state, p)
        }
        dirty -= skip
    else:
        # no master solution within the budget: improve the floor (greedy spill-over) instead
        state.load(floor)
    passes = _improve(state, dirty, deadline, all_pools=True, skip=skip)
    repaired = _repair(state, began + REPAIR_SHARE_END * (deadline - began))
    if repaired:
        passes += _improve(state, set(range(len(problem.pools))), deadline, all_pools=False)
    return FastResult(list(state.counts), "global", passes, lp_used=guidance is not None)


def _start_from_current(state: State) -> tuple[set[int], set[int]]:
    """Place current replicas that still fit. Returns the pools the change touched (replicas
    that no longer fit or no longer exist) and the pools that are short, outside their
    resilience limits or over-provisioned as they stand."""
    pr = state.problem
    touched: set[int] = set()
    stale_pools = {key[0] for key in pr.stale_current}
    for info in pr.pools:
        if info.key in stale_pools:
            touched.add(info.index)
    for tier in pr.priority_tiers():
        for p in tier:
            for o in pr.pools[p].options:
                cur = pr.opt_current[o]
                if cur and state.add(o, cur) < cur:
                    touched.add(p)
    unhappy: set[int] = set()
    for info in pr.pools:
        terms = pool_terms(pr, info.index, state.counts, info.current_options)
        if (
            terms.shortfall > 0
            or terms.violation > 0
            or terms.replicas > info.max_replicas
            or _over_provisioned(state, info.index, terms.capacity, terms.replicas)
        ):
            unhappy.add(info.index)
    return touched, unhappy


def _cheaper_with_room(state: State) -> set[int]:
    """Pools that have room, now, in a group cheaper per rps than one they use: the only
    pools whose re-solve could save anything when nothing else changed."""
    pr = state.problem
    memo: dict[tuple[int, int], int] = {}

    def room(o: int) -> int:
        key = (pr.opt_node_pool[o], pr.opt_k[o])
        if key not in memo:
            memo[key] = state.room(o)
        return memo[key]

    found = set()
    for info in pr.pools:
        used = [g for g in state.groups[info.index] if any(state.counts[o] for o in g.options)]
        if not used:
            continue
        worst = max(_per_rps(pr, g.options[0]) for g in used)
        for g in state.groups[info.index]:
            if _per_rps(pr, g.options[0]) < worst - EPS and any(room(o) for o in g.options):
                found.add(info.index)
                break
    return found


def _per_rps(pr: Problem, o: int) -> float:
    return pr.opt_cost[o] / pr.opt_rps[o] if pr.opt_rps[o] > 0 else math.inf


def _unhappy(state: State, p: int) -> bool:
    terms = pool_terms(state.problem, p, state.counts)
    return terms.shortfall > 0 or terms.violation > 0


def _over_provisioned(state: State, p: int, capacity: float, replicas: int) -> bool:
    """One replica could go without losing coverage (demand fell)."""
    pr = state.problem
    info = pr.pools[p]
    if replicas <= info.min_replicas:
        return False
    smallest = min((pr.opt_rps[o] for o in info.options if state.counts[o]), default=0.0)
    return capacity - smallest >= info.demand.required_rps - EPS


def _improve(
    state: State,
    dirty: set[int],
    deadline: float,
    all_pools: bool,
    skip: set[int] | frozenset[int] = frozenset(),
) -> int:
    pr = state.problem
    order = [p for tier in pr.priority_tiers() for p in sorted(tier, key=lambda q: pr.pools[q].key)]
    passes = 0
    todo = set(dirty)
    while todo and passes < MAX_PASSES:
        passes += 1
        changed_pools: set[int] = set()
        touched_classes: set[int] = set()
        for p in order:
            if p not in todo:
                continue
            if time.perf_counter() > deadline:
                return passes
            if reoptimize(state, p):
                changed_pools.add(p)
                touched_classes.update(g.klass for g in state.groups[p])
        if not changed_pools or not all_pools:
            break
        # next pass: pools that share capacity with a pool that changed
        todo = {
            p for p in order
            if p not in changed_pools and p not in skip
            and any(g.klass in touched_classes for g in state.groups[p])
        }
    return passes


def reoptimize(state: State, p: int) -> bool:
    """Re-solve pool p against what is free; keep the result only if it is better. Other
    pools are untouched, so better for p is better for the plan."""
    before = _key(state, p)
    old = state.clear_pool(p)
    items, rules = state.items(p)
    state.place_groups(p, best_cover(items, rules))
    if _key(state, p) < before:
        return True
    state.restore(p, old)
    return False


def _key(state: State, p: int) -> tuple[float, float, float, float, float]:
    t = pool_terms(state.problem, p, state.counts)
    limit = state.problem.options_in.max_moves
    excess = float(max(0, state.removed - limit)) if limit is not None else 0.0
    return (round(t.shortfall, 9), excess, round(t.violation, 9), round(t.adjusted_cost, 6),
            -float(t.preference))


def _repair(state: State, deadline: float, only: set[int] | None = None) -> set[int]:
    """Ejection for pools still short or outside their resilience limits: a pool holding a
    capacity class they could use re-covers itself without that class, and the first pool
    re-solves. Accepted only if the pair's objective improves (coverage by priority first,
    then resilience, then cost), so nothing is ever made worse."""
    pr = state.problem
    changed: set[int] = set()
    if time.perf_counter() > deadline:
        return changed

    def unhappy(p: int) -> bool:
        t = pool_terms(pr, p, state.counts)
        return t.shortfall > 0 or t.violation > 0

    targets = [
        p for tier in pr.priority_tiers() for p in sorted(tier, key=lambda q: pr.pools[q].key)
        if (only is None or p in only) and unhappy(p)
    ]
    holders_of: dict[int, set[int]] = defaultdict(set)
    for o in range(pr.n_options):
        if state.counts[o]:
            holders_of[state.classes[pr.opt_node_pool[o]]].add(pr.opt_pool[o])
    for p in targets:
        for klass in sorted({g.klass for g in state.groups[p]}):
            if not unhappy(p):
                break
            holders = sorted(
                holders_of[klass] - {p},
                key=lambda q: (pr.pools[q].demand.priority, pr.pools[q].key),
            )
            for q in holders[:MAX_EJECT_CANDIDATES]:
                if time.perf_counter() > deadline:
                    return changed
                if _eject(state, p, q, klass):
                    changed.update((p, q))
                    for g in state.groups[p] + state.groups[q]:
                        holders_of[g.klass].update((p, q))
                    if not unhappy(p):
                        break
    return changed


def _eject(state: State, p: int, q: int, klass: int) -> bool:
    before = _pair_key(state, (p, q))
    old_q = state.clear_pool(q)  # q re-covers itself without the class, p keeps its replicas
    items, rules = state.items(q, banned_class=klass)
    state.place_groups(q, best_cover(items, rules))
    old_p = state.clear_pool(p)
    items, rules = state.items(p)
    state.place_groups(p, best_cover(items, rules))
    reoptimize(state, q)  # q may take back what p left over in the class
    if _pair_key(state, (p, q)) < before:
        return True
    state.clear_pool(p)
    state.restore(q, old_q)
    state.restore(p, old_p)
    return False


def _pair_key(state: State, pools: tuple[int, ...]) -> tuple[object, ...]:
    pr = state.problem
    by_priority: dict[int, float] = defaultdict(float)
    violation = 0.0
    cost = 0.0
    for p in pools:
        t = pool_terms(pr, p, state.counts)
        by_priority[pr.pools[p].demand.priority] += t.shortfall
        violation += t.violation
        cost += t.adjusted_cost
    shortfalls = tuple(round(by_priority[k], 9) for k in sorted(by_priority, reverse=True))
    return (shortfalls, round(violation, 9), round(cost, 6))


def _round(state: State, guidance: Guidance, deadline: float) -> None:
    """Place the master's solution: first every pool it gives one whole pattern (those fit
    together, as they fit in the LP), largest replicas first; then the few fractional pools,
    in priority order, each taking its heaviest pattern that still fits, or else re-solved
    against what is left at the master's capacity prices."""
    pr = state.problem
    for p in range(len(pr.pools)):
        state.clear_pool(p)
    whole = {p: pats[0][1] for p, pats in guidance.patterns.items() if pats[0][0] > 1 - 1e-6}

    def largest(p: int) -> int:
        return max((pr.opt_k[g.options[0]] for g, x in zip(state.groups[p], whole[p],
                                                          strict=True) if x), default=0)

    for p in sorted(whole, key=lambda p: (-largest(p), pr.pools[p].key)):
        if time.perf_counter() > deadline:
            return  # the rest stays empty: the floor is returned unless this is better
        state.place_groups(p, whole[p])
    rest = sorted(
        (p for p in range(len(pr.pools)) if p not in whole),
        key=lambda p: (-pr.pools[p].demand.priority,
                       -max((w for w, _ in guidance.patterns.get(p, ())), default=0.0),
                       pr.pools[p].key),
    )
    for p in rest:
        if time.perf_counter() > deadline:
            return
        patterns = guidance.patterns.get(p, [])
        candidates = [counts for _, counts in patterns]
        # the weighted mix of patterns is itself a cover when it is whole (e.g. half of "2 in
        # class X" and half of "2 in class Y" is "1 in X, 1 in Y"), and it is what the LP used
        mix = [sum(w * c[g] for w, c in patterns) for g in range(len(state.groups[p]))]
        if patterns and all(abs(x - round(x)) < 1e-6 for x in mix):
            candidates.insert(0, tuple(round(x) for x in mix))
        for counts in candidates:
            if state.fits_groups(p, counts):
                state.place_groups(p, counts)
                break
        else:
            reoptimize(state, p)
