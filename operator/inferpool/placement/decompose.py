"""Global guidance for the fast path: Dantzig-Wolfe decomposition per InferencePool.

A plain LP relaxation splits replicas into fractions and misjudges how the last, chunky
replica of each pool lands (an 8-chip TPU replica is either there or not). Here each column is
a whole, integral cover of one pool (a "pattern" found by the exact per-pool search of
cover.py), and the master LP only chooses, per pool, a mix of patterns under the shared
capacity of each capacity class. New patterns are priced with the master's capacity duals, so
a pool is steered away from accelerators that others need more. The master's solution is almost
integral (at most one fractional pool per binding capacity row); the fast path rounds it and
repairs locally.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace

import highspy
import numpy as np

from inferpool.placement.cover import Item, best_cover, evaluate
from inferpool.placement.linear import INF, LinearModel, new_highs
from inferpool.placement.state import State, rules_of

MAX_ROUNDS = 6
PRICE_TOLERANCE = 0.005
# Scalarisation of the lexicographic objective inside the master LP (guidance only).
SHORTFALL_WEIGHT = 20.0  # x the largest pool's cost, per unit of normalised shortfall
TIER_FACTOR = 100.0  # each higher priority tier weighs this much more
VIOLATION_WEIGHT = 1.0  # x the largest pool's cost, per unit of normalised violation

Shadow = dict[tuple[int, int], float]  # (capacity class, replica size) -> price per replica


@dataclass(frozen=True, slots=True)
class Guidance:
    patterns: dict[int, list[tuple[float, tuple[int, ...]]]]  # pool -> [(weight, counts)]
    shadow: Shadow
    rounds: int
    ideal: dict[int, tuple[int, ...]]  # pool -> its best cover were it alone in the cluster
    converged: bool  # False: the deadline stopped column generation early


class _Master:
    def __init__(self, state: State) -> None:
        pr = state.problem
        self.state = state
        self.model = LinearModel()
        self.highs: highspy.Highs | None = None
        # rows: one convexity row per pool, then capacity rows per (class, size) and limits
        for _ in pr.pools:
            self.model.row((), 1.0, 1.0)
        self.usage: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
        members: dict[int, list[int]] = defaultdict(list)
        for npc in pr.node_pools:
            members[state.classes[npc.index]].append(npc.index)
        for klass, nps in sorted(members.items()):
            caps = [pr.node_pools[i] for i in nps]
            sizes = sorted({s for c in caps for s in c.sizes})
            for s in sizes:
                row = self.model.row((), -INF, float(sum(c.slots(s) for c in caps)))
                for k in sizes:
                    if k >= s:
                        self.usage[(klass, k)].append((row, k / s))
            limits = [c.limit for c in caps if c.limit is not None]
            if limits:
                row = self.model.row((), -INF, float(sum(limits)))
                for k in sizes:
                    self.usage[(klass, k)].append((row, float(k)))
        self.columns: list[tuple[int, tuple[int, ...]]] = []  # (pool, counts)
        self.col_cost: list[float] = []
        self.col_rows: list[dict[int, float]] = []

    def column_rows(self, p: int, counts: tuple[int, ...]) -> dict[int, float]:
        pr, state = self.state.problem, self.state
        rows: dict[int, float] = {p: 1.0}
        for group, x in zip(state.groups[p], counts, strict=True):
            if x:
                k = pr.opt_k[group.options[0]]
                for row, coef in self.usage[(group.klass, k)]:
                    rows[row] = rows.get(row, 0.0) + x * coef
        return rows

    def add(self, p: int, counts: tuple[int, ...], cost: float) -> None:
        """Queue a column; it reaches the solver at the next solve()."""
        self.columns.append((p, counts))
        self.col_cost.append(cost)
        self.col_rows.append(self.column_rows(p, counts))

    def _flush(self) -> None:
        assert self.highs is not None
        first = self.highs.getNumCol()
        new = range(first, len(self.col_cost))
        if not new:
            return
        starts: list[int] = []
        index: list[int] = []
        value: list[float] = []
        for c in new:
            starts.append(len(index))
            rows = self.col_rows[c]
            for row in sorted(rows):
                index.append(row)
                value.append(rows[row])
        self.highs.addCols(
            len(new), np.asarray([self.col_cost[c] for c in new], dtype=float),
            np.zeros(len(new)), np.full(len(new), INF), len(index),
            np.asarray(starts, dtype=np.int32), np.asarray(index, dtype=np.int32),
            np.asarray(value, dtype=float),
        )

    def solve(self, time_limit: float) -> tuple[list[float], list[float]] | None:
        if self.highs is None:
            self.highs = self._build()
        else:
            self._flush()
        self.highs.setOptionValue("time_limit", max(time_limit, 0.01))
        self.highs.run()
        if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        solution = self.highs.getSolution()
        return list(solution.col_value), list(solution.row_dual)

    def _build(self) -> highspy.Highs:
        # rows were declared empty above: the matrix is filled column-wise from the patterns
        m = self.model
        starts = [0]
        index: list[int] = []
        value: list[float] = []
        for rows in self.col_rows:
            for row in sorted(rows):
                index.append(row)
                value.append(rows[row])
            starts.append(len(index))
        lp = highspy.HighsLp()
        lp.num_col_ = len(self.col_cost)
        lp.num_row_ = m.num_rows
        lp.col_cost_ = np.asarray(self.col_cost, dtype=float)
        lp.col_lower_ = np.zeros(len(self.col_cost))
        lp.col_upper_ = np.full(len(self.col_cost), INF)
        lp.row_lower_ = np.asarray(m.row_lower, dtype=float)
        lp.row_upper_ = np.asarray(m.row_upper, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.asarray(starts, dtype=np.int32)
        lp.a_matrix_.index_ = np.asarray(index, dtype=np.int32)
        lp.a_matrix_.value_ = np.asarray(value, dtype=float)
        h = new_highs()
        h.passModel(lp)
        return h


def guide(state: State, deadline: float) -> Guidance | None:
    """Column generation until no pattern prices out, MAX_ROUNDS, or the deadline."""
    pr = state.problem
    master = _Master(state)
    # one scale for all pools: the objective counts every pool's normalised shortfall alike
    scale = max((_cost_scale(state, p) for p in range(len(pr.pools))), default=1.0)
    tiers = pr.priority_tiers()
    tier_weight = {p: TIER_FACTOR ** rank for rank, tier in enumerate(reversed(tiers))
                   for p in tier}
    room_memo: dict[tuple[tuple[int, ...], int], int] = {}
    static: list[list[Item]] = []  # filled in the first loop, which watches the deadline

    weighted = [
        replace(rules_of(pr, p), weights=(SHORTFALL_WEIGHT * tier_weight[p] * scale,
                                          VIOLATION_WEIGHT * scale))
        for p in range(len(pr.pools))
    ]

    def scalar(p: int, counts: list[int]) -> float:
        return evaluate(static[p], counts, weighted[p])[2]

    seen: set[tuple[int, tuple[int, ...]]] = set()
    ideal: dict[int, tuple[int, ...]] = {}
    priced: dict[int, tuple[float, ...]] = {}
    for p in range(len(pr.pools)):
        if time.perf_counter() > deadline:
            return None  # not even one column per pool in time: no guidance
        static.append(_static_items(state, p, room_memo))
        empty = tuple(0 for _ in state.groups[p])
        ideal[p] = tuple(best_cover(static[p], rules_of(pr, p)))
        # the first cover is priced at zero shadow: reprice only once prices move
        first = (tuple(best_cover(static[p], weighted[p])) if weighted[p].resilient
                 else ideal[p])  # without resilience rules both rank covers the same way
        priced[p] = tuple(0.0 for _ in state.groups[p])
        for counts in (empty, ideal[p], first):
            if (p, counts) not in seen:
                seen.add((p, counts))
                master.add(p, counts, scalar(p, list(counts)))
    rounds = 0
    added = 0
    converged = False
    result = None
    while rounds < MAX_ROUNDS:
        remaining = deadline - time.perf_counter()
        if remaining <= 0.02:
            break  # the deadline is hard: without a first master solve there is no guidance
        rounds += 1
        solved = master.solve(remaining)
        if solved is None:
            break  # out of time (or no optimum): the last solution, if any, still guides
        result = solved
        _, duals = result
        shadow = _shadow(master, duals)
        added = 0
        for p in range(len(pr.pools)):
            if time.perf_counter() > deadline:
                break
            prices = tuple(round(shadow.get((g.klass, pr.opt_k[g.options[0]]), 0.0), 6)
                           for g in state.groups[p])
            if _close(priced[p], prices, static[p]):
                continue  # (nearly) the prices it was last priced at: same pattern again
            priced[p] = prices
            items = [_priced(item, extra)
                     for item, extra in zip(static[p], prices, strict=True)]
            counts = tuple(best_cover(items, weighted[p]))
            if (p, counts) in seen:
                continue
            cost = scalar(p, list(counts))
            rows = master.column_rows(p, counts)
            reduced = cost - sum(duals[r] * a for r, a in rows.items())
            if reduced < -1e-6 * max(1.0, abs(cost)):
                seen.add((p, counts))
                master.add(p, counts, cost)
                added += 1
        if added == 0:
            converged = True
            break
    if result is None:
        return None
    if added and deadline - time.perf_counter() > 0.02:
        result = master.solve(deadline - time.perf_counter()) or result
    values, duals = result
    patterns: dict[int, list[tuple[float, tuple[int, ...]]]] = defaultdict(list)
    # if the last solve ran out of time, `values` predates the newest columns
    for (p, counts), value in zip(master.columns[: len(values)], values, strict=True):
        if value > 1e-6:
            patterns[p].append((value, counts))
    for p in patterns:
        patterns[p].sort(key=lambda wc: (-wc[0], wc[1]))
    converged = converged or rounds == MAX_ROUNDS
    return Guidance(dict(patterns), _shadow(master, duals), rounds, ideal, converged)


def _close(old: tuple[float, ...], new: tuple[float, ...], items: list[Item]) -> bool:
    """Prices within PRICE_TOLERANCE of a replica's cost cannot change the pattern much."""
    return all(abs(a - b) <= PRICE_TOLERANCE * max(it.cost, 1e-9)
               for a, b, it in zip(old, new, items, strict=True))


def _shadow(master: _Master, duals: list[float]) -> Shadow:
    return {key: sum(abs(duals[row]) * coef for row, coef in entries)
            for key, entries in master.usage.items()}


def _priced(item: Item, extra: float) -> Item:
    if extra <= 0:
        return item
    return Item(cost=item.cost + extra, keep_cost=item.keep_cost + extra, keep=item.keep,
                avail=item.avail, rps=item.rps, family=item.family,
                preference=item.preference, group=item.group)


def _static_items(state: State, p: int,
                  memo: dict[tuple[tuple[int, ...], int], int]) -> list[Item]:
    """The pool's items in an otherwise empty cluster: what a pattern may use at most.
    `memo` holds the room per (node pools, size): pools of one model shape share it."""
    pr = state.problem
    h = pr.hysteresis
    items = []
    for group in state.groups[p]:
        o0 = group.options[0]
        k = pr.opt_k[o0]
        where = (tuple(pr.opt_node_pool[o] for o in group.options), k)
        avail = memo.get(where, -1)
        if avail < 0:
            avail = 0
            for i in where[0]:
                npc = pr.node_pools[i]
                room = npc.slots(k)
                if npc.limit is not None:
                    room = min(room, npc.limit // k)
                avail += room
            memo[where] = avail
        c = pr.opt_cost[o0]
        items.append(Item(
            cost=c, keep_cost=c * (1.0 - h),
            keep=sum(pr.opt_current[o] for o in group.options),
            avail=min(avail, pr.pools[p].max_replicas), rps=pr.opt_rps[o0],
            family=pr.opt_family[o0], preference=pr.opt_variant[o0].preference,
            group=pr.opt_node_pool[o0] if len(group.options) == 1 else -1 - group.klass,
        ))
    return items


def _cost_scale(state: State, p: int) -> float:
    """Roughly what covering pool p costs: the unit that makes shortfall weights comparable."""
    pr = state.problem
    info = pr.pools[p]
    per_rps = [pr.opt_cost[o] / pr.opt_rps[o] for o in info.options if pr.opt_rps[o] > 0]
    per_replica = [pr.opt_cost[o] for o in info.options]
    return max(
        (max(per_rps) * info.demand.required_rps) if per_rps else 0.0,
        (max(per_replica) * info.min_replicas) if per_replica else 0.0,
        1.0,
    )
