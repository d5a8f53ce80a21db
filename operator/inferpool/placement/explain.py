"""Turn solver counts into a Plan: outcomes, moves, shortfall causes and short reasons."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from types import MappingProxyType

from inferpool.cluster.snapshot import FAMILIES, Family
from inferpool.placement.model import Move, PlacementKey, Plan, PoolOutcome
from inferpool.placement.objective import EPS, pool_terms
from inferpool.placement.packing import PackState
from inferpool.placement.problem import Group, PoolInfo, Problem

MAX_REASONS = 8


def plan_from_counts(
    problem: Problem, counts: Sequence[int], solver: str, seconds: float, optimal: bool
) -> Plan:
    """The Plan a solver's replica count per option makes: replicas per placement, each
    InferencePool's outcome with its reasons, and the moves from the current placement."""
    counts = list(counts)  # the lazy reasons keep a copy, not the caller's list
    nonzero = [o for o, x in enumerate(counts) if x > 0]
    replicas = dict(sorted((problem.key(o), counts[o]) for o in nonzero))
    rooms = _Rooms(problem, _packs_after(problem, counts), _Holders(problem, counts))
    placed_by_pool: dict[int, list[int]] = defaultdict(list)
    for o in nonzero:
        placed_by_pool[problem.opt_pool[o]].append(o)
    outcomes = {
        info.key: _outcome(problem, info, counts, rooms, placed_by_pool.get(info.index, []))
        for info in problem.pools
    }
    return Plan(
        replicas=MappingProxyType(replicas),
        outcomes=MappingProxyType(outcomes),
        moves=_moves(problem, counts),
        solver=solver,
        solve_seconds=seconds,
        optimal=optimal,
    )


def _moves(problem: Problem, counts: Sequence[int]) -> tuple[Move, ...]:
    changes: dict[PlacementKey, tuple[int, int]] = {}
    for o in range(problem.n_options):
        before, after = problem.opt_current[o], counts[o]
        if before != after:
            changes[problem.key(o)] = (before, after)
    for key, before in problem.stale_current.items():
        changes[key] = (before, 0)
    return tuple(Move(key, b, a) for key, (b, a) in sorted(changes.items()))


class _Rooms:
    """Room left after the plan, per (node pools of a group, replica size), memoised: many
    pools share the same groups."""

    def __init__(self, problem: Problem, packs: list[PackState], holders: _Holders) -> None:
        self.problem = problem
        self.packs = packs
        self.holders = holders
        self._memo: dict[tuple[tuple[int, ...], int], int] = {}
        self._why: dict[tuple[int, int], str | None] = {}
        self.causes: dict[tuple[object, ...], str] = {}

    def why_full(self, node_pool: int, k: int) -> str | None:
        """"capped" (the accelerator limit is reached), "fragmented" (enough accelerators
        free, but no node with k of them) or None, per (node pool, size)."""
        key = (node_pool, k)
        if key not in self._why:
            np = self.problem.node_pools[node_pool]
            pack = self.packs[node_pool]
            why = None
            if np.limit is not None and pack.acc_used + k > np.limit:
                why = "capped"
            elif sum(np.free) - pack.acc_used >= k and pack.room(k) == 0:
                why = "fragmented"
            self._why[key] = why
        return self._why[key]

    def of_group(self, group: Group) -> int:
        pr = self.problem
        node_pools = tuple(pr.opt_node_pool[o] for o in group.options)
        k = pr.opt_k[group.options[0]]
        key = (node_pools, k)
        room = self._memo.get(key)
        if room is None:
            room = self._memo[key] = sum(self.packs[i].room(k) for i in node_pools)
        return room


def _packs_after(problem: Problem, counts: Sequence[int]) -> list[PackState]:
    packs = [PackState(np) for np in problem.node_pools]
    for o, x in enumerate(counts):
        if x:
            packs[problem.opt_node_pool[o]].add(problem.opt_k[o], x)
    return packs


def _outcome(
    problem: Problem, info: PoolInfo, counts: Sequence[int], rooms: _Rooms, placed: list[int]
) -> PoolOutcome:
    terms = pool_terms(problem, info.index, counts, sorted({*placed, *info.current_options}))
    d = info.demand
    shortfall = max(0.0, d.required_rps - terms.capacity)
    families: list[Family] = sorted(
        {FAMILIES[problem.opt_family[o]] for o in placed}, key=FAMILIES.index
    )
    short = shortfall > EPS or terms.replicas < info.min_replicas
    return PoolOutcome(
        capacity_rps=round(terms.capacity, 6),
        cost_per_hour=round(terms.cost, 6),
        shortfall_rps=round(shortfall, 6),
        shortfall_cause=(
            _cause(problem, info, rooms, terms.replicas) if short else None
        ),
        families=tuple(families),
        # computed on first use: status does not show them (see PoolOutcome)
        explain=lambda: tuple(_reasons(problem, info, counts, rooms, placed, terms.capacity,
                                       terms.replicas, terms.violation)[:MAX_REASONS]),
    )


def _cause(problem: Problem, info: PoolInfo, rooms: _Rooms, replicas: int) -> str:
    if not info.options:
        return "; ".join(info.unmatched) or "no variants"
    if replicas >= info.max_replicas:
        return f"max replicas {info.max_replicas} reached"
    # pools of one model shape and priority share the text: computed once per shape
    shape = (info.demand.priority, tuple(map(problem.opt_node_pool.__getitem__, info.options)),
             tuple(map(problem.opt_k.__getitem__, info.options)))
    found = rooms.causes.get(shape)
    if found is None:
        found = rooms.causes[shape] = _shape_cause(problem, info, rooms)
    return found


def _shape_cause(problem: Problem, info: PoolInfo, rooms: _Rooms) -> str:
    parts: list[str] = []
    families = sorted({problem.opt_family[o] for o in info.options})
    names = "/".join(FAMILIES[f] for f in families)
    parts.append(f"no free {names} accelerators in matching pools")
    fragmented = []
    capped = []
    for o in info.options:
        np = problem.node_pools[problem.opt_node_pool[o]]
        why = rooms.why_full(np.index, problem.opt_k[o])
        if why == "capped":
            capped.append(f"{np.pool.name} capped at {np.limit}")
        elif why == "fragmented":
            fragmented.append(np.pool.name)
    if capped:
        parts.append(", ".join(sorted(set(capped))[:3]))
    if fragmented:
        parts.append(f"free accelerators too fragmented for one replica in "
                     f"{', '.join(sorted(set(fragmented))[:3])}")
    rivals = _outranking(problem, info, rooms.holders)
    if rivals:
        parts.append("outranked by " + ", ".join(rivals[:3]))
    return "; ".join(parts)


class _Holders:
    """Per node pool, the pools with replicas there, highest priority first: built once per
    plan, so naming who outranks a short pool does not scan every pool (with ~1,600 short
    pools that scan took seconds)."""

    def __init__(self, problem: Problem, counts: Sequence[int]) -> None:
        found: dict[int, set[int]] = defaultdict(set)
        for o, x in enumerate(counts):
            if x > 0:
                found[problem.opt_node_pool[o]].add(problem.opt_pool[o])
        self.by_node_pool = {
            np: sorted(((problem.pools[p].demand.priority, problem.pools[p].key) for p in pools),
                       key=lambda pk: (-pk[0], pk[1]))
            for np, pools in found.items()
        }

    def above(self, node_pools: set[int], priority: int, limit: int) -> list[tuple[int, str]]:
        """The `limit` highest-priority pools above `priority` holding any of `node_pools`.
        Each list's first `limit` distinct entries above `priority` contain the overall first
        `limit`, so nothing past them is looked at."""
        picked: dict[str, int] = {}
        for np in node_pools:
            for taken, (prio, key) in enumerate(self.by_node_pool.get(np, ())):
                if prio <= priority or taken >= limit:
                    break
                picked[key] = prio
        return sorted(((prio, key) for key, prio in picked.items()),
                      key=lambda pk: (-pk[0], pk[1]))[:limit]


def _outranking(problem: Problem, info: PoolInfo, holders: _Holders) -> list[str]:
    mine = {problem.opt_node_pool[o] for o in info.options}
    return [f"priority {prio} pool {key}"
            for prio, key in holders.above(mine, info.demand.priority, 3)]


def _reasons(
    problem: Problem, info: PoolInfo, counts: Sequence[int], rooms: _Rooms, placed_options:
    list[int], capacity: float, replicas: int, violation: float,
) -> list[str]:
    d = info.demand
    reasons: list[str] = []
    if d.required_rps <= 0 and info.min_replicas == 0:
        reasons.append("no demand and no minimum: 0 replicas")
    for o in sorted(placed_options, key=problem.key):
        _, variant, node_pool = problem.key(o)
        reasons.append(f"{counts[o]}x {variant} in {node_pool} at ${problem.opt_cost[o]:.2f}/h")
    smallest = min((problem.opt_rps[o] for o in placed_options), default=0.0)
    if info.min_replicas and replicas == info.min_replicas and (
        capacity - smallest >= d.required_rps - EPS
    ):
        reasons.append(f"min replicas {info.min_replicas} is above what demand needs")
    groups = problem.pool_groups[info.index]
    placed_set = set(placed_options)
    used = [g for g in groups if not placed_set.isdisjoint(g.options)]
    reasons.extend(_spill_over(problem, groups, used, rooms))
    kept = sum(min(counts[o], problem.opt_current[o]) for o in placed_options)
    if kept and _cheaper_room(problem, groups, used, rooms):
        reasons.append(
            f"kept {kept} replicas in place: moving saves less than "
            f"{problem.hysteresis:.0%} of their cost"
        )
    if violation > 0:
        reasons.append(_relaxed(problem, info, counts, capacity))
    for o in placed_options:
        pool = problem.node_pools[problem.opt_node_pool[o]].pool
        if not pool.price_known:
            reasons.append(f"price unknown for {pool.name}: fallback price used")
    reasons.extend(info.unmatched)
    return list(dict.fromkeys(reasons))


def _efficiency(problem: Problem, group: Group) -> float:
    o = group.options[0]
    r = problem.opt_rps[o]
    return problem.opt_cost[o] / r if r > 0 else float("inf")


def _spill_over(problem: Problem, groups: list[Group], used: list[Group], rooms: _Rooms
                ) -> list[str]:
    if not used:
        return []
    worst = max(used, key=lambda g: (_efficiency(problem, g), g.options))
    limit = _efficiency(problem, worst) - EPS
    full = [g for g in groups if _efficiency(problem, g) < limit and rooms.of_group(g) == 0]
    if not full:
        return []
    name = problem.node_pools[problem.opt_node_pool[worst.options[0]]].pool.name
    cheaper = sorted({problem.node_pools[problem.opt_node_pool[g.options[0]]].pool.name
                      for g in full})
    return [f"spilled over to {name}: cheaper {', '.join(cheaper[:2])} full"]


def _cheaper_room(problem: Problem, groups: list[Group], used: list[Group], rooms: _Rooms
                  ) -> bool:
    if not used:
        return False
    worst = max(_efficiency(problem, g) for g in used)
    return any(_efficiency(problem, g) < worst - EPS and rooms.of_group(g) > 0 for g in groups)


def _relaxed(problem: Problem, info: PoolInfo, counts: Sequence[int], capacity: float) -> str:
    d = info.demand
    by_family: dict[int, float] = defaultdict(float)
    for o in info.options:
        by_family[problem.opt_family[o]] += problem.opt_rps[o] * counts[o]
    if d.max_family_share < 1.0 and capacity > 0:
        f, c = max(sorted(by_family.items()), key=lambda kv: kv[1])
        if c > d.max_family_share * capacity + EPS:
            return (f"resilience relaxed: {FAMILIES[f]} serves {c / capacity:.0%} "
                    f"(limit {d.max_family_share:.0%}), no room in other families")
    if d.min_families > 1:
        used = sum(1 for v in by_family.values() if v > 0)
        if used < d.min_families:
            return (f"resilience relaxed: {used} families (wanted {d.min_families}), "
                    "no room in others")
    return "resilience relaxed: node pool share above limit, no room elsewhere"
