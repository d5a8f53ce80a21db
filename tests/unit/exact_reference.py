"""An exact reference MILP of the placement problem, written from docs/placement.md and
independent of milp.py: it assigns replicas to individual NODES (x[option, node]), so node
capacity needs neither the counting inequalities nor pattern variables, and the lexicographic
objective is solved in stages with exact holds and no warm start. Tests compare the engine's
plans with it; it is far too slow for the operator (one column per option and node).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import highspy
import numpy as np

from inferpool.placement.linear import INF, new_highs
from inferpool.placement.problem import Problem

STAGE_SECONDS = 60.0


class _Model:
    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.rows: list[tuple[dict[int, float], float, float]] = []

    def var(self, lo: float = 0.0, hi: float = INF, integer: bool = False) -> int:
        self.lower.append(lo)
        self.upper.append(hi)
        self.integer.append(integer)
        return len(self.lower) - 1

    def row(self, entries: dict[int, float], lo: float, hi: float) -> None:
        self.rows.append((entries, lo, hi))


def reference_levels(problem: Problem) -> tuple[float, ...] | None:
    """The optimal objective levels (per-tier shortfall, churn excess if max_moves is set,
    resilience violation, hysteresis-adjusted cost), or None if a stage was not proven."""
    pr = problem
    m = _Model()
    h = pr.hysteresis
    per_option: dict[int, list[int]] = defaultdict(list)  # option -> its x[option, node]
    node_of: dict[int, tuple[int, int]] = {}  # column -> (node pool, node)
    for o in range(pr.n_options):
        npc = pr.node_pools[pr.opt_node_pool[o]]
        k = pr.opt_k[o]
        for node, free in enumerate(npc.free):
            if free >= k:
                per_option[o].append(m.var(0.0, float(free // k), integer=True))
                node_of[per_option[o][-1]] = (npc.index, node)
    node_load: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)
    pool_load: dict[int, dict[int, float]] = defaultdict(dict)
    for o, cols in per_option.items():
        k = float(pr.opt_k[o])
        for c in cols:
            node_load[node_of[c]][c] = k
            pool_load[pr.opt_node_pool[o]][c] = k
    for (np_index, node), entries in node_load.items():
        m.row(entries, -INF, float(pr.node_pools[np_index].free[node]))
    for np_index, entries in pool_load.items():
        limit = pr.node_pools[np_index].limit
        if limit is not None:
            m.row(entries, -INF, float(limit))

    def total(o: int, weight: float = 1.0) -> dict[int, float]:
        return {c: weight for c in per_option.get(o, ())}

    stages: list[dict[int, float]] = []
    resilience: dict[int, float] = {}
    for tier in pr.priority_tiers():
        shortfall: dict[int, float] = {}
        for p in tier:
            info = pr.pools[p]
            d = info.demand
            cap: dict[int, float] = {}
            count: dict[int, float] = {}
            for o in info.options:
                cap.update(total(o, pr.opt_rps[o]))
                count.update(total(o))
            m.row(count, -INF, float(info.max_replicas))
            if d.required_rps > 0:
                s = m.var(0.0, INF)
                m.row({**cap, s: 1.0}, d.required_rps, INF)
                shortfall[s] = 1.0 / d.required_rps
            if info.min_replicas > 0:
                u = m.var(0.0, INF)
                m.row({**count, u: 1.0}, float(info.min_replicas), INF)
                shortfall[u] = 1.0 / info.min_replicas
            parts: list[tuple[float, list[int]]] = []
            if d.max_family_share < 1.0:
                for f in range(3):
                    parts.append((d.max_family_share,
                                  [o for o in info.options if pr.opt_family[o] == f]))
            if d.max_node_pool_share < 1.0:
                for np_index in range(len(pr.node_pools)):
                    parts.append((d.max_node_pool_share,
                                  [o for o in info.options if pr.opt_node_pool[o] == np_index]))
            for share, members in parts:
                if not members:
                    continue
                v = m.var(0.0, INF)
                entries = {c: -share * w for c, w in cap.items()}
                for o in members:
                    for c in per_option.get(o, ()):
                        entries[c] = entries.get(c, 0.0) + pr.opt_rps[o]
                entries[v] = -1.0
                m.row(entries, -INF, 0.0)
                resilience[v] = 1.0 / info.scale
            if d.min_families > 1:
                used: dict[int, float] = {}
                for f in range(3):
                    members = [c for o in info.options if pr.opt_family[o] == f
                               for c in per_option.get(o, ())]
                    if members:
                        z = m.var(0.0, 1.0, integer=True)
                        m.row({z: 1.0, **{c: -1.0 for c in members}}, -INF, 0.0)
                        used[z] = 1.0
                w = m.var(0.0, INF)
                m.row({**used, w: 1.0}, float(d.min_families), INF)
                resilience[w] = 1.0
        stages.append(shortfall)
    if pr.options_in.max_moves is not None:
        removed: dict[int, float] = {}
        for o in range(pr.n_options):
            cur = pr.opt_current[o]
            if cur:
                r = m.var(0.0, INF)
                m.row({r: 1.0, **total(o)}, float(cur), INF)
                removed[r] = 1.0
        excess = m.var(0.0, INF)
        stale = float(sum(pr.stale_current.values()))
        m.row({**removed, excess: -1.0}, -INF, float(pr.options_in.max_moves) - stale)
        stages.append({excess: 1.0})
    stages.append(resilience)
    cost: dict[int, float] = {}
    for o in range(pr.n_options):
        cost.update(total(o, pr.opt_cost[o]))
        cur = pr.opt_current[o]
        if cur and h > 0:
            kept = m.var(0.0, float(cur))
            m.row({kept: 1.0, **total(o, -1.0)}, -INF, 0.0)
            cost[kept] = -h * pr.opt_cost[o]
    stages.append(cost)
    return _solve_stages(m, stages)


def _solve_stages(m: _Model, stages: Sequence[dict[int, float]]) -> tuple[float, ...] | None:
    h = new_highs()
    lp = highspy.HighsLp()
    n = len(m.lower)
    lp.num_col_ = n
    lp.col_cost_ = np.zeros(n)
    lp.col_lower_ = np.asarray(m.lower, dtype=float)
    lp.col_upper_ = np.asarray(m.upper, dtype=float)
    h.passModel(lp)
    if any(m.integer):
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                np.asarray([highspy.HighsVarType.kInteger if i else
                                            highspy.HighsVarType.kContinuous
                                            for i in m.integer]))
    for entries, lo, hi in m.rows:
        cols = sorted(entries)
        h.addRow(lo, hi, len(cols), np.asarray(cols, dtype=np.int32),
                 np.asarray([entries[c] for c in cols], dtype=float))
    h.setOptionValue("time_limit", STAGE_SECONDS)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 1e-9)
    levels = []
    for objective in stages:
        if not objective:
            levels.append(0.0)
            continue
        costs = np.zeros(n)
        for c, w in objective.items():
            costs[c] = w
        h.changeColsCost(n, np.arange(n, dtype=np.int32), costs)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        values = h.getSolution().col_value
        value = float(sum(w * values[c] for c, w in objective.items()))
        levels.append(value)
        cols = sorted(objective)
        h.addRow(-INF, value + 1e-7 + 1e-9 * abs(value), len(cols),
                 np.asarray(cols, dtype=np.int32),
                 np.asarray([objective[c] for c in cols], dtype=float))
    return tuple(levels)
