"""The exact solver: a MILP over (pool, variant, node pool) replica counts, solved by HiGHS.

The objective of objective.py is lexicographic, so the MILP is solved in stages: each stage
minimises one term and then holds it at its optimum while the next is minimised (shortfall per
priority tier, churn beyond max_moves, resilience violations, hysteresis-adjusted cost). A stage
whose optimum is known to be zero from the warm start is fixed instead of solved.

Node capacity is exact: divisible replica sizes use the counting inequalities of packing.py,
other size sets use one pattern variable per (distinct free count, maximal packing pattern).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from inferpool.placement.backends import BackendName, Outcome, default_backend, make_backend
from inferpool.placement.linear import INF, LinearModel
from inferpool.placement.objective import pool_terms
from inferpool.placement.problem import NodePoolCapacity, Problem

MAX_PATTERNS = 400  # per distinct free count; beyond it the pattern set is truncated
LEXICOGRAPHIC_GAP = 1e-6  # shortfall, churn and resilience stages: (near) exact
COST_GAP = 1e-4  # the cost stage: proven within 0.01 %


@dataclass(frozen=True, slots=True)
class MilpResult:
    counts: list[int]
    optimal: bool
    seconds: float
    stages: tuple[str, ...]
    cost_bound: float | None  # proven lower bound of the last (cost) stage, if it was solved


@dataclass(slots=True)
class _Stage:
    name: str
    objective: dict[int, float]
    zero_in_start: bool = False


class MilpModel:
    """The MILP of one problem, with the objective split into lexicographic stages."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.model = LinearModel()
        self.x: list[int] = []
        self.stages: list[_Stage] = []
        # a pattern set cut at MAX_PATTERNS may miss the packing an optimum needs: not proven
        self.truncated = False
        self._build()

    # --- construction -------------------------------------------------------------------------

    def _build(self) -> None:
        pr, m = self.problem, self.model
        h = pr.hysteresis
        for o in range(pr.n_options):
            pool = pr.pools[pr.opt_pool[o]]
            np_cap = pr.node_pools[pr.opt_node_pool[o]]
            ub = min(pool.max_replicas, np_cap.slots(pr.opt_k[o]))
            if np_cap.limit is not None:
                ub = min(ub, np_cap.limit // pr.opt_k[o])
            self.x.append(m.var(0.0, float(max(0, ub)), integer=True))
        for np_cap in pr.node_pools:
            self._capacity_rows(np_cap)

        tier_objectives: list[dict[int, float]] = []
        resilience: dict[int, float] = {}
        for tier in pr.priority_tiers():
            obj: dict[int, float] = {}
            for p in tier:
                self._pool_rows(p, obj, resilience)
            tier_objectives.append(obj)
        for i, obj in enumerate(tier_objectives):
            self.stages.append(_Stage(f"shortfall[{i}]", obj))
        if pr.options_in.max_moves is not None:
            self.stages.append(_Stage("churn", self._churn_rows()))
        if resilience:
            self.stages.append(_Stage("resilience", resilience))
        cost: dict[int, float] = {}
        for o in range(pr.n_options):
            cost[self.x[o]] = pr.opt_cost[o]
            cur = pr.opt_current[o]
            if cur > 0 and h > 0:
                kept = m.var(0.0, float(cur))
                m.row([(kept, 1.0), (self.x[o], -1.0)], -INF, 0.0)
                cost[kept] = -h * pr.opt_cost[o]
        self.stages.append(_Stage("cost", cost))

    def _capacity_rows(self, np_cap: NodePoolCapacity) -> None:
        pr, m = self.problem, self.model
        members = [o for o in range(pr.n_options) if pr.opt_node_pool[o] == np_cap.index]
        if not members:
            return
        if np_cap.limit is not None:
            m.row(((self.x[o], float(pr.opt_k[o])) for o in members), -INF, float(np_cap.limit))
        if np_cap.chain:
            for s in np_cap.sizes:
                entries = [(self.x[o], float(pr.opt_k[o] // s))
                           for o in members if pr.opt_k[o] >= s]
                m.row(entries, -INF, float(np_cap.slots(s)))
            return
        # patterns: y[f, pattern] nodes with f free packed as `pattern`
        supply: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for free, nodes in sorted(Counter(np_cap.free).items()):
            ys = []
            patterns = maximal_patterns(np_cap.sizes, free)
            self.truncated = self.truncated or len(patterns) >= MAX_PATTERNS
            for pattern in patterns:
                y = m.var(0.0, float(nodes), integer=True)
                ys.append((y, 1.0))
                for size, count in pattern.items():
                    supply[size].append((y, -float(count)))
            m.row(ys, -INF, float(nodes))
        for s in np_cap.sizes:
            entries = [(self.x[o], 1.0) for o in members if pr.opt_k[o] == s]
            m.row(entries + supply[s], -INF, 0.0)

    def _pool_rows(self, p: int, shortfall: dict[int, float], resilience: dict[int, float]) -> None:
        pr, m = self.problem, self.model
        info = pr.pools[p]
        d = info.demand
        opts = info.options
        xs = [(self.x[o], 1.0) for o in opts]
        rps = [(self.x[o], pr.opt_rps[o]) for o in opts]
        if d.required_rps > 0:
            s = m.var(0.0, d.required_rps)
            m.row([*rps, (s, 1.0)], d.required_rps, INF)
            shortfall[s] = 1.0 / d.required_rps
        if info.min_replicas > 0:
            u = m.var(0.0, float(info.min_replicas))
            m.row([*xs, (u, 1.0)], float(info.min_replicas), INF)
            shortfall[u] = 1.0 / info.min_replicas
        if opts:
            m.row(xs, -INF, float(info.max_replicas))
        if d.max_family_share < 1.0:
            for f in sorted({pr.opt_family[o] for o in opts}):
                self._share_row(opts, [o for o in opts if pr.opt_family[o] == f],
                                d.max_family_share, info.scale, resilience)
        if d.max_node_pool_share < 1.0:
            for n in sorted({pr.opt_node_pool[o] for o in opts}):
                self._share_row(opts, [o for o in opts if pr.opt_node_pool[o] == n],
                                d.max_node_pool_share, info.scale, resilience)
        if d.min_families > 1:
            zs = []
            for f in sorted({pr.opt_family[o] for o in opts}):
                z = m.var(0.0, 1.0, integer=True)
                m.row([(z, 1.0), *((self.x[o], -1.0) for o in opts if pr.opt_family[o] == f)],
                      -INF, 0.0)
                zs.append((z, 1.0))
            w = m.var(0.0, float(d.min_families))
            m.row([*zs, (w, 1.0)], float(d.min_families), INF)
            resilience[w] = 1.0

    def _share_row(self, opts: list[int], part: list[int], share: float, scale: float,
                   resilience: dict[int, float]) -> None:
        pr, m = self.problem, self.model
        v = m.var()
        entries = [(self.x[o], -share * pr.opt_rps[o]) for o in opts]
        entries += [(self.x[o], pr.opt_rps[o]) for o in part]
        m.row([*entries, (v, -1.0)], -INF, 0.0)
        resilience[v] = 1.0 / scale

    def _churn_rows(self) -> dict[int, float]:
        pr, m = self.problem, self.model
        removed = []
        for o in range(pr.n_options):
            cur = pr.opt_current[o]
            if cur > 0:
                r = m.var(0.0, float(cur))
                m.row([(r, 1.0), (self.x[o], 1.0)], float(cur), INF)
                removed.append((r, 1.0))
        excess = m.var()
        limit = float(pr.options_in.max_moves or 0) - sum(pr.stale_current.values())
        m.row([*removed, (excess, -1.0)], -INF, limit)
        return {excess: 1.0}

    # --- solving ------------------------------------------------------------------------------

    def solve(
        self,
        deadline: float,
        start: Sequence[int] | None = None,
        backend: BackendName | None = None,
    ) -> MilpResult:
        began = time.perf_counter()
        pr = self.problem
        if self.model.num_cols == 0:  # nothing can be placed: the empty plan is optimal
            return MilpResult([], True, time.perf_counter() - began, (), 0.0)
        if start is not None:
            self._mark_zero_stages(start)
        solver = make_backend(backend or default_backend(), self.model)
        optimal = True
        bound: float | None = None
        solved: list[str] = []
        incumbent = list(start) if start is not None else None
        for stage in self.stages:
            if stage.zero_in_start and stage.name != "cost":
                # the warm start already attains 0: hold the stage there without solving it
                solver.fix_to_zero(sorted(stage.objective))
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0.01:
                optimal = False
                break
            warm = ({col: float(n) for col, n in zip(self.x, incumbent, strict=True)}
                    if incumbent is not None else None)
            gap = COST_GAP if stage.name == "cost" else LEXICOGRAPHIC_GAP
            outcome = solver.solve(stage.objective, remaining, gap, warm)
            proven = _proven(stage.objective, outcome, gap)
            if warm is not None and not proven and (
                outcome.values is None or outcome.optimal
            ) and deadline - time.perf_counter() > 0.01:
                # HiGHS can report a held stage infeasible from a start that violates the new
                # hold row by a rounding hair, and (1.16) "optimal" while handing back the
                # start's values above its own bound: retry cold, keep the better answer
                cold = solver.solve(stage.objective, deadline - time.perf_counter(), gap, None)
                if cold.values is not None and (
                    outcome.values is None
                    or _value(stage.objective, cold.values)
                    <= _value(stage.objective, outcome.values)
                ):
                    outcome, proven = cold, _proven(stage.objective, cold, gap)
            if outcome.values is None:
                optimal = False
                break
            values = outcome.values
            previous = incumbent
            incumbent = [round(values[c]) for c in self.x]
            solved.append(stage.name)
            optimal = optimal and proven
            if stage.name == "cost":
                bound = outcome.bound
            else:
                # hold the stage at its value, recomputed from the integer counts too: the
                # solver's continuous columns may sit a hair off what those counts imply
                best = max(sum(coef * values[col] for col, coef in stage.objective.items()),
                           self._stage_value(stage, incumbent))
                hold = best + 1e-6 + 1e-6 * abs(best)
                solver.hold(stage.objective, hold)
                if previous is not None and self._stage_value(stage, previous) <= hold:
                    # the previous incumbent attains this stage's optimum too: keep it as the
                    # next start. The solver's answer ignored the later stages, so it is often
                    # far worse on them, and a later stage cut by the budget would keep that
                    incumbent = previous
        counts = incumbent if incumbent is not None else [0] * pr.n_options
        return MilpResult(
            counts=counts,
            optimal=optimal and incumbent is not None and not self.truncated,
            seconds=time.perf_counter() - began,
            stages=tuple(solved),
            cost_bound=bound,
        )

    def _stage_value(self, stage: _Stage, counts: Sequence[int]) -> float:
        pr = self.problem
        terms = [pool_terms(pr, p.index, counts) for p in pr.pools]
        if stage.name.startswith("shortfall["):
            tier = pr.priority_tiers()[int(stage.name[len("shortfall["):-1])]
            return sum(terms[p].shortfall for p in tier)
        if stage.name == "churn":
            removed = sum(t.removed for t in terms) + sum(pr.stale_current.values())
            return float(max(0, removed - (pr.options_in.max_moves or 0)))
        if stage.name == "resilience":
            return sum(t.violation for t in terms)
        return 0.0

    def _mark_zero_stages(self, start: Sequence[int]) -> None:
        """A stage may be fixed at zero only while the start is zero on every stage before
        it too: then the start is optimal so far, and zero is this stage's optimum given it.
        (Zero shortfall in a start that is short elsewhere proves nothing.)"""
        for stage in self.stages:
            if stage.name == "cost":
                break
            stage.zero_in_start = self._stage_value(stage, start) == 0.0
            if not stage.zero_in_start:
                break

def _value(objective: dict[int, float], values: Sequence[float]) -> float:
    return sum(coef * values[col] for col, coef in objective.items())


def _proven(objective: dict[int, float], outcome: Outcome, gap: float) -> bool:
    """Optimal within `gap` by the solution actually returned, not only by the status: the
    objective of the returned values must be within the gap of the proven bound."""
    if not outcome.optimal or outcome.values is None or outcome.bound is None:
        return False
    value = _value(objective, outcome.values)
    return value - outcome.bound <= gap * max(abs(value), 1.0) + 1e-6


def solve_milp(
    problem: Problem,
    deadline: float,
    start: Sequence[int] | None = None,
    backend: BackendName | None = None,
) -> MilpResult:
    return MilpModel(problem).solve(deadline, start, backend)


def cost_stage_model(problem: Problem, start: Sequence[int]) -> tuple[LinearModel, list[float]]:
    """The single-objective MILP of the last stage, with every earlier stage held at the zero
    the start attains (used to compare MILP libraries on the same model)."""
    mm = MilpModel(problem)
    mm._mark_zero_stages(start)
    for stage in mm.stages:
        if stage.zero_in_start and stage.name != "cost":
            for col in stage.objective:
                mm.model.lower[col] = mm.model.upper[col] = 0.0
    objective = [0.0] * mm.model.num_cols
    for col, coef in mm.stages[-1].objective.items():
        objective[col] = coef
    return mm.model, objective


def maximal_patterns(sizes: Sequence[int], free: int) -> list[dict[int, int]]:
    """Multisets of sizes that fit in `free` and to which no further size can be added."""
    ordered = sorted(sizes, reverse=True)
    smallest = ordered[-1] if ordered else free + 1
    result: list[dict[int, int]] = []

    def extend(i: int, left: int, current: dict[int, int]) -> None:
        if len(result) >= MAX_PATTERNS:
            return
        if i == len(ordered):
            if left < smallest:
                result.append(dict(current))
            return
        size = ordered[i]
        for count in range(left // size, -1, -1):
            if count:
                current[size] = count
            else:
                current.pop(size, None)
            extend(i + 1, left - count * size, current)
        current.pop(size, None)

    extend(0, free, {})
    return result
