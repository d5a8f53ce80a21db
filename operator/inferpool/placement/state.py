"""A mutable placement under construction: replica counts plus exact per-node-pool capacity.

The fast solver and the baselines build plans through `State` so that no plan they return can
over-commit a node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from inferpool.placement.cover import Item, Rules
from inferpool.placement.packing import PackState
from inferpool.placement.problem import Group, Problem


class State:
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.packs = [PackState(np) for np in problem.node_pools]
        self.counts = [0] * problem.n_options
        # replicas taken from where they run (max_moves counts these); stale ones always are
        self.removed = sum(problem.opt_current) + sum(problem.stale_current.values())
        self.classes = problem.np_class
        self.groups = problem.pool_groups
        self._largest_node = [max(np.free, default=0) for np in problem.node_pools]

    # --- capacity -----------------------------------------------------------------------------

    def room(self, o: int) -> int:
        return self.packs[self.problem.opt_node_pool[o]].room(self.problem.opt_k[o])

    def add(self, o: int, m: int) -> int:
        """Add up to m replicas of option o; returns how many fitted."""
        m = min(m, self.room(o))
        if m > 0:
            cur, before = self.problem.opt_current[o], self.counts[o]
            self.removed -= max(0, cur - before) - max(0, cur - before - m)
            self.counts[o] += m
            self.packs[self.problem.opt_node_pool[o]].add(self.problem.opt_k[o], m)
        return max(m, 0)

    def load(self, counts: Sequence[int]) -> None:
        """Replace the placement with `counts`, known to fit (another State built it): no
        room queries, which cost a packing simulation each where sizes do not divide."""
        for p in range(len(self.problem.pools)):
            self.clear_pool(p)
        pr = self.problem
        for o, m in enumerate(counts):
            if m > 0:
                cur = pr.opt_current[o]
                self.removed -= min(cur, m)
                self.counts[o] = m
                self.packs[pr.opt_node_pool[o]].add(pr.opt_k[o], m)

    def remove(self, o: int, m: int) -> None:
        m = min(m, self.counts[o])
        if m > 0:
            cur, before = self.problem.opt_current[o], self.counts[o]
            self.removed += max(0, cur - before + m) - max(0, cur - before)
            self.counts[o] -= m
            self.packs[self.problem.opt_node_pool[o]].remove(self.problem.opt_k[o], m)

    def clear_pool(self, p: int) -> dict[int, int]:
        old = {o: self.counts[o] for o in self.problem.pools[p].options if self.counts[o]}
        for o, m in old.items():
            self.remove(o, m)
        return old

    def restore(self, p: int, counts: dict[int, int]) -> None:
        self.clear_pool(p)
        for o, m in sorted(counts.items()):
            placed = self.add(o, m)
            assert placed == m, "restoring a pool's own replicas must fit"

    # --- the pool's view ----------------------------------------------------------------------

    def items(self, p: int, banned_class: int | None = None) -> tuple[list[Item], Rules]:
        """What pool p could have now (release its own replicas first); `banned_class` hides
        one capacity class (used when a pool is asked to make room)."""
        pr = self.problem
        h = pr.hysteresis
        items = []
        for group in self.groups[p]:
            avail = 0
            keep = 0
            for o in group.options if group.klass != banned_class else ():
                r = self.room(o)
                avail += r
                keep += min(pr.opt_current[o], r)
            o0 = group.options[0]
            c = pr.opt_cost[o0]
            items.append(
                Item(
                    cost=c,
                    keep_cost=c * (1.0 - h),
                    keep=keep,
                    avail=avail,
                    rps=pr.opt_rps[o0],
                    family=pr.opt_family[o0],
                    preference=pr.opt_variant[o0].preference,
                    group=pr.opt_node_pool[o0] if len(group.options) == 1 else -1 - group.klass,
                )
            )
        rules = rules_of(pr, p)
        if pr.options_in.max_moves is not None:
            # what this pool may still take away, its own replicas being released already
            own = sum(pr.opt_current[o] for o in pr.pools[p].options)
            allowance = pr.options_in.max_moves - (self.removed - own)
            rules = replace(rules, max_removed=max(0, allowance))
        return items, rules

    def place_groups(self, p: int, counts: Sequence[int]) -> None:
        """Spread each group's replicas over its node pools, largest replicas first."""
        groups = self.groups[p]
        order = sorted(range(len(groups)),
                       key=lambda g: (-self.problem.opt_k[groups[g].options[0]], g))
        for g in order:
            if counts[g] > 0:
                self.place_group(groups[g], counts[g])

    def group_counts(self, p: int) -> tuple[int, ...]:
        return tuple(sum(self.counts[o] for o in g.options) for g in self.groups[p])

    def fits_groups(self, p: int, counts: Sequence[int]) -> bool:
        """Would `place_groups(p, counts)` place every replica? (tries, then undoes)"""
        old = self.clear_pool(p)
        self.place_groups(p, counts)
        ok = all(
            sum(self.counts[o] for o in g.options) == c
            for g, c in zip(self.groups[p], counts, strict=True)
        )
        self.restore(p, old)
        return ok

    def place_group(self, group: Group, want: int) -> int:
        """Current places first, then node pools with the smallest nodes (best fit), so large
        nodes stay free for large replicas. Returns how many were placed."""
        pr = self.problem
        left = want
        for o in group.options:
            if left <= 0:
                break
            left -= self.add(o, min(left, pr.opt_current[o]))
        for o in sorted(group.options, key=lambda o: (self._largest_node[pr.opt_node_pool[o]], o)):
            if left <= 0:
                break
            left -= self.add(o, left)
        return want - left


def rules_of(problem: Problem, p: int) -> Rules:
    info = problem.pools[p]
    d = info.demand
    return Rules(
        required=d.required_rps,
        min_replicas=info.min_replicas,
        max_replicas=info.max_replicas,
        family_share=d.max_family_share,
        node_pool_share=d.max_node_pool_share,
        min_families=d.min_families,
        scale=info.scale,
    )
