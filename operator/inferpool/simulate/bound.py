"""The offline bound: what serving the trace would cost with perfect knowledge and no delays.

Per step and per model: the cheapest whole number of replicas (min/max replicas and the
model's resilience rule respected) whose capacity covers demand / targetUtilization, on the node
pools that are up at that step, at that step's prices, Ready at once. It is a lower bound on the
cost of every policy that follows the same rules and provisions the same headroom at every
step, because it relaxes everything else:
- no start-up delay, no stabilization, no tolerance band, no hysteresis, no moves;
- each model is costed alone with every pool to itself (models do not compete), so its cost is
  at most the joint optimum's; whole replicas per node, as in the cluster;
- stocked-out pools count as available (a policy could have had replicas there before).
Two more figures use the same machinery: `no_resilience` drops the resilience rule (the bound
for policies that ignore it, and the price of the rule), `full` covers the bare demand without
headroom or resilience (the floor of any policy that serves it all).

The per-model problem is tiny (a handful of (variant, node pool) options), so it is solved
exactly by branch and bound, and each answer is reused for every later demand it covers: the
cheapest cost is non-decreasing in the demand, so the optimum found for R with capacity C is
also optimal for every demand in [R, C].
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from inferpool.simulate.scenario import (
    ModelSpec,
    Outage,
    PriceChange,
    ResilienceSpec,
    Scenario,
    replica_accelerators,
)

EPS = 1e-9
MODES = ("offline", "no_resilience", "full")


@dataclass(frozen=True, slots=True)
class Option:
    cost: float  # per replica-hour
    rps: float
    limit: int  # replicas that fit in the pool
    family: str
    pool: str


@dataclass(frozen=True, slots=True)
class Cover:
    cost: float  # per hour
    capacity: float  # rps
    counts: tuple[int, ...]


def cheapest_cover(options: Sequence[Option], required: float, low: int, high: int,
                   resilience: ResilienceSpec | None = None) -> Cover | None:
    """Exact minimum-cost integer replica counts with capacity >= required and
    low <= replicas <= high (and the resilience rule, if given); None if impossible.
    Depth-first branch and bound, options in order of cost per rps, each bounded below by
    the fractional cover of what is still missing."""
    order = sorted(range(len(options)), key=lambda i: (options[i].cost / options[i].rps, i))
    opts = [options[i] for i in order]
    n = len(opts)
    best_cost = math.inf
    best: list[int] | None = None
    counts = [0] * n

    def fractional(i: int, need: float) -> float:
        cost = 0.0
        for o in opts[i:]:
            if need <= EPS:
                break
            take = min(float(o.limit), need / o.rps)
            cost += take * o.cost
            need -= take * o.rps
        return cost if need <= EPS else math.inf

    def feasible() -> bool:
        if resilience is None:
            return True
        total = sum(c * o.rps for c, o in zip(counts, opts, strict=True))
        by_family: dict[str, float] = {}
        by_pool: dict[str, float] = {}
        for c, o in zip(counts, opts, strict=True):
            if c:
                by_family[o.family] = by_family.get(o.family, 0.0) + c * o.rps
                by_pool[o.pool] = by_pool.get(o.pool, 0.0) + c * o.rps
        if any(v > resilience.max_family_share * total + EPS for v in by_family.values()):
            return False
        if any(v > resilience.max_node_pool_share * total + EPS for v in by_pool.values()):
            return False
        replicas = sum(counts)
        return not (replicas >= resilience.min_families
                    and len(by_family) < resilience.min_families)

    def search(i: int, need: float, cost: float, replicas: int) -> None:
        nonlocal best_cost, best
        if cost >= best_cost - EPS:
            return
        if need <= EPS and replicas >= low and feasible():
            best_cost, best = cost, list(counts)
            return
        if i == n or cost + fractional(i, need) >= best_cost - EPS:
            return
        o = opts[i]
        most = min(o.limit, high - replicas,
                   max(math.ceil(need / o.rps - EPS) if need > EPS else 0, low - replicas)
                   if resilience is None else high - replicas)
        for x in range(max(most, 0), -1, -1):
            counts[i] = x
            search(i + 1, need - x * o.rps, cost + x * o.cost, replicas + x)
        counts[i] = 0

    search(0, required, 0.0, 0)
    if best is None:
        return None
    result = [0] * n
    for pos, i in enumerate(order):
        result[i] = best[pos]
    capacity = sum(c * o.rps for c, o in zip(result, options, strict=True))
    return Cover(best_cost, capacity, tuple(result))


def max_capacity(options: Sequence[Option], high: int) -> float:
    """Most rps reachable with at most `high` replicas: the largest replicas first."""
    left = high
    total = 0.0
    for o in sorted(options, key=lambda o: -o.rps):
        take = min(o.limit, left)
        total += take * o.rps
        left -= take
    return total


@dataclass
class _Memo:
    starts: list[float] = field(default_factory=list)
    covers: list[tuple[float, Cover]] = field(default_factory=list)  # (up to capacity, cover)

    def find(self, required: float) -> Cover | None:
        i = bisect.bisect_right(self.starts, required + EPS)
        for j in range(i - 1, max(-1, i - 4), -1):
            if self.covers[j][0] >= required - EPS:
                return self.covers[j][1]
        return None

    def add(self, required: float, cover: Cover) -> None:
        i = bisect.bisect_right(self.starts, required)
        self.starts.insert(i, required)
        self.covers.insert(i, (cover.capacity, cover))


@dataclass
class BoundRun:
    cost_per_hour: dict[str, list[float]]  # mode -> per step
    capacity: dict[str, list[float]]  # model -> per step (main mode)
    solves: int


class OfflineBound:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._memo: dict[tuple[str, int, str], _Memo] = {}
        self._options: dict[tuple[str, int], list[Option]] = {}
        self._states: dict[tuple[frozenset[str], tuple[float, ...]], int] = {}
        self.solves = 0

    def run(self, demand: Mapping[str, Sequence[float]]) -> BoundRun:
        sc = self.scenario
        cost: dict[str, list[float]] = {mode: [] for mode in MODES}
        capacity: dict[str, list[float]] = {m.name: [] for m in sc.models}
        for i in range(sc.steps):
            t = i * sc.step_seconds
            state = self._state_at(t)
            totals = dict.fromkeys(MODES, 0.0)
            for m in sc.models:
                d = demand[m.name][i]
                for mode in MODES:
                    need = d if mode == "full" else d / m.target_utilization
                    cover = self.cover(m, state, mode, need)
                    totals[mode] += cover.cost
                    if mode == "offline":
                        capacity[m.name].append(cover.capacity)
            for mode in MODES:
                cost[mode].append(totals[mode])
        return BoundRun(cost, capacity, self.solves)

    def _state_at(self, t: float) -> int:
        """An id for which pools are down and what every pool costs at `t`."""
        sc = self.scenario
        down = frozenset(e.pool for e in sc.events
                         if isinstance(e, Outage) and e.from_ <= t < e.to)
        prices = {p.name: float(p.price_per_accelerator_hour) for p in sc.node_pools}
        for e in sorted((e for e in sc.events if isinstance(e, PriceChange)),
                        key=lambda e: e.at):
            if e.at <= t:
                prices[e.pool] = e.price_per_accelerator_hour
        key = (down, tuple(prices[p.name] for p in sc.node_pools))
        if key not in self._states:
            self._states[key] = len(self._states)
            for m in sc.models:
                self._options[(m.name, self._states[key])] = self._build_options(m, down, prices)
        return self._states[key]

    def _build_options(self, m: ModelSpec, down: frozenset[str], prices: Mapping[str, float]
                       ) -> list[Option]:
        out = []
        for v in m.variants:
            k = replica_accelerators(v.accelerator)
            for p in self.scenario.matching_pools(v):
                if p.name in down:
                    continue
                hourly = v.cost_per_hour if v.cost_per_hour is not None else k * prices[p.name]
                out.append(Option(hourly, float(v.capacity),
                                  p.max_nodes * (p.accelerators_per_node // k),
                                  v.accelerator.family, p.name))
        return out

    def cover(self, m: ModelSpec, state: int, mode: str, need: float) -> Cover:
        options = self._options[(m.name, state)]
        memo = self._memo.setdefault((m.name, state, mode), _Memo())
        need = min(need, max_capacity(options, m.replicas.max))  # cover what can be covered
        found = memo.find(need)
        if found is not None:
            return found
        self.solves += 1
        cover = None
        if mode == "offline":
            cover = cheapest_cover(options, need, m.replicas.min, m.replicas.max, m.resilience)
        if cover is None:  # the engine, too, relaxes resilience when it cannot be met
            cover = cheapest_cover(options, need, m.replicas.min, m.replicas.max)
        if cover is None:  # no option at all (every pool of the model is down)
            cover = Cover(0.0, 0.0, tuple(0 for _ in options))
        memo.add(need, cover)
        return cover
