"""The objective, in one place: both solvers and every test compare plans with `score`.

Lexicographic, most important first:
1. shortfall per priority tier (highest priority first), each pool's normalised to [0, 2]:
   missing rps / required + missing replicas / min replicas;
2. replicas taken from their current place beyond `max_moves`;
3. resilience violations (family share, node pool share, too few families), normalised;
4. cost per hour, where replicas that stay where they run count (1 - hysteresis) of their cost:
   a plan that moves replicas must save more than the hysteresis to win;
5. preference (higher preferred) as the last tie-break.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from inferpool.placement.problem import Problem

EPS = 1e-9
Score = tuple[float, ...]


@dataclass(frozen=True, slots=True)
class PoolTerms:
    capacity: float
    replicas: int
    cost: float
    adjusted_cost: float
    shortfall: float  # normalised
    violation: float  # normalised
    preference: int
    removed: int  # replicas taken from their current place


def pool_terms(
    problem: Problem, pool: int, counts: Sequence[int], only: Iterable[int] | None = None
) -> PoolTerms:
    """The pool's share of the objective. `only` may narrow the options looked at to a set
    that contains every option with replicas now or before (a shortcut for large problems)."""
    info = problem.pools[pool]
    d = info.demand
    h = problem.hysteresis
    cap = 0.0
    n = 0
    cost = 0.0
    adjusted = 0.0
    pref = 0
    removed = 0
    by_family = [0.0, 0.0, 0.0]
    replicas_by_family = [0, 0, 0]
    by_node_pool: dict[int, float] = {}
    for o in info.options if only is None else only:
        x = counts[o]
        cur = problem.opt_current[o]
        if cur > x:
            removed += cur - x
        if x <= 0:
            continue
        r = problem.opt_rps[o]
        c = problem.opt_cost[o]
        cap += r * x
        n += x
        cost += c * x
        adjusted += c * x - h * c * min(x, cur)
        pref += problem.opt_variant[o].preference * x
        f = problem.opt_family[o]
        by_family[f] += r * x
        replicas_by_family[f] += x
        if d.max_node_pool_share < 1.0:
            np_index = problem.opt_node_pool[o]
            by_node_pool[np_index] = by_node_pool.get(np_index, 0.0) + r * x
    return PoolTerms(
        capacity=cap,
        replicas=n,
        cost=cost,
        adjusted_cost=adjusted,
        shortfall=shortfall_of(d.required_rps, info.min_replicas, cap, n),
        violation=violation_of(
            d.max_family_share,
            d.max_node_pool_share,
            d.min_families,
            info.scale,
            cap,
            by_family,
            by_node_pool.values(),
            sum(1 for x in replicas_by_family if x > 0),
        ),
        preference=pref,
        removed=removed,
    )


def shortfall_of(required: float, min_replicas: int, capacity: float, replicas: int) -> float:
    value = 0.0
    if required > EPS and capacity < required - EPS:
        value += (required - capacity) / required
    if min_replicas > 0 and replicas < min_replicas:
        value += (min_replicas - replicas) / min_replicas
    return value


def violation_of(
    family_share: float,
    node_pool_share: float,
    min_families: int,
    scale: float,
    capacity: float,
    by_family: Sequence[float],
    by_node_pool: Iterable[float],
    families_used: int,
) -> float:
    value = 0.0
    if family_share < 1.0:
        value += sum(max(0.0, c - family_share * capacity) for c in by_family) / scale
    if node_pool_share < 1.0:
        value += sum(max(0.0, c - node_pool_share * capacity) for c in by_node_pool) / scale
    if min_families > 1 and families_used < min_families:
        value += min_families - families_used
    return value if value > EPS else 0.0


def score(problem: Problem, counts: Sequence[int]) -> Score:
    terms = [pool_terms(problem, p.index, counts) for p in problem.pools]
    tiers = tuple(
        _r(sum(terms[p].shortfall for p in tier)) for tier in problem.priority_tiers()
    )
    removed = sum(t.removed for t in terms)
    limit = problem.options_in.max_moves
    excess = float(max(0, removed - limit)) if limit is not None else 0.0
    return (
        *tiers,
        excess,
        _r(sum(t.violation for t in terms)),
        _r(sum(t.adjusted_cost for t in terms)),
        -float(sum(t.preference for t in terms)),
    )


def _r(value: float) -> float:
    """Round so that float noise from summation order never decides between plans."""
    return round(value, 6)
