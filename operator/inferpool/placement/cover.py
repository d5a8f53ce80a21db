"""Best replicas for ONE InferencePool given what is free: a small exact branch and bound.

An item is one way to add replicas: a variant at one price, with how many can be added now
(`avail`), of which the first `keep` stay where they run (costing 1 - hysteresis). The pool's
objective is the lexicographic one of objective.py restricted to the pool:
(shortfall, resilience violation, adjusted cost, -preference).

When the demand cannot be covered, capacity wins: the largest replicas first. Otherwise a
depth-first search over items in cost-per-rps order, pruned by a fractional lower bound on cost,
finds the cheapest cover. The search is bounded by a node count (not by time) so the result is
the same on a fast and a slow machine. The search starts from a known cover (largest replicas
first) so that its node limits bound it from the first node: without one, a pool whose only
covers use its dearest variant explored millions of nodes before its first leaf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from inferpool.placement.objective import EPS, shortfall_of, violation_of

NODE_LIMIT = 1500
RESILIENT_NODE_LIMIT = 200
# hard cap whatever the search has found (with the seed cover it is only reached when the seed
# breaks a max_moves allowance)
HARD_NODE_LIMIT = 20000


@dataclass(frozen=True, slots=True)
class Item:
    cost: float
    keep_cost: float
    keep: int
    avail: int
    rps: float
    family: int
    preference: int
    group: int  # node pool index (for node pool shares)


@dataclass(frozen=True, slots=True)
class Rules:
    required: float
    min_replicas: int
    max_replicas: int
    family_share: float = 1.0
    node_pool_share: float = 1.0
    min_families: int = 1
    scale: float = 1.0
    # (per unit of normalised shortfall, per unit of violation): fold both into the cost, as
    # the decomposition's master LP does, instead of ranking them before it
    weights: tuple[float, float] | None = None
    # at most this many replicas may leave the places they run in (max_moves); None: any
    max_removed: int | None = None

    @property
    def resilient(self) -> bool:
        return self.family_share < 1.0 or self.node_pool_share < 1.0 or self.min_families > 1


PoolKey = tuple[float, float, float, float]


def item_cost(item: Item, n: int) -> float:
    kept = min(n, item.keep)
    return kept * item.keep_cost + (n - kept) * item.cost


def evaluate(items: Sequence[Item], counts: Sequence[int], rules: Rules) -> PoolKey:
    cap = 0.0
    n = 0
    cost = 0.0
    pref = 0
    fam = [0.0, 0.0, 0.0]
    fam_n = [0, 0, 0]
    groups: dict[int, float] = {}
    for item, x in zip(items, counts, strict=True):
        if x <= 0:
            continue
        cap += item.rps * x
        n += x
        cost += item_cost(item, x)
        pref += item.preference * x
        fam[item.family] += item.rps * x
        fam_n[item.family] += x
        if rules.node_pool_share < 1.0:
            groups[item.group] = groups.get(item.group, 0.0) + item.rps * x
    violation = 0.0
    if rules.resilient:
        violation = violation_of(
            rules.family_share,
            rules.node_pool_share,
            rules.min_families,
            rules.scale,
            cap,
            fam,
            groups.values(),
            sum(1 for v in fam_n if v > 0),
        )
    shortfall = shortfall_of(rules.required, rules.min_replicas, cap, n)
    if rules.weights is not None:
        scalar = cost + rules.weights[0] * shortfall + rules.weights[1] * violation
        return (0.0, 0.0, round(scalar, 6), -float(pref))
    return (round(shortfall, 9), round(violation, 9), round(cost, 6), -float(pref))


def churn_ok(items: Sequence[Item], counts: Sequence[int], rules: Rules) -> bool:
    if rules.max_removed is None:
        return True
    removed = sum(max(0, it.keep - x) for it, x in zip(items, counts, strict=True))
    return removed <= rules.max_removed


def best_cover(items: Sequence[Item], rules: Rules) -> list[int]:
    """Replica count per item minimising the pool's lexicographic objective."""
    if not items or rules.max_replicas <= 0:
        return [0] * len(items)
    first = _largest_first(items, rules)
    if not _covers(items, first, rules):
        return first  # even the largest replicas cannot cover demand: take them
    keep = _undominated(items, rules)
    sub = [items[i] for i in keep]
    seed = [first[i] for i in keep]
    found = None
    if rules.resilient:
        # the cheapest cover ignoring the rules is optimal whenever it happens to obey them
        relaxed = _Search(sub, replace(rules, family_share=1.0, node_pool_share=1.0,
                                       min_families=1))
        relaxed.offer(seed)
        plain = relaxed.run()
        if plain is not None and evaluate(sub, plain, replace(rules, weights=None))[1] == 0.0:
            found = plain
    if found is None:
        search = _Search(sub, rules)
        search.offer(seed)
        if rules.resilient:
            search.offer(_spread_greedy(sub, rules))
        found = search.run()
    # the node limit can stop the search before any cover is seen: fall back to largest-first
    if found is None:
        return first
    result = [0] * len(items)
    for i, x in zip(keep, found, strict=True):
        result[i] = x
    return result


def _undominated(items: Sequence[Item], rules: Rules) -> list[int]:
    """Drop items another item beats on every count: no dearer, no smaller, at least as
    preferred, in the same family (and node pool, when shares count), with room for every
    replica the pool could ever want."""
    min_rps = min((it.rps for it in items if it.rps > 0), default=0.0)
    most = rules.max_replicas
    if min_rps > 0:
        most = min(most, math.ceil(rules.required / min_rps) + rules.min_replicas)
    # only items with room for every replica can dominate; cheapest first, so the scan for
    # one item stops at the first dearer candidate (linear in practice, not quadratic)
    candidates = sorted((a.cost, i) for i, a in enumerate(items) if a.avail >= most)
    kept = []
    for j, b in enumerate(items):
        dominated = False
        for cost, i in candidates:
            if cost > b.cost:
                break
            a = items[i]
            if i == j or a.rps < b.rps or a.preference < b.preference:
                continue
            if a.keep_cost > b.keep_cost or (b.keep and a.keep < b.keep):
                continue
            if b.keep and a.cost > b.keep_cost:
                continue  # a replica of `b` that stays may be cheaper than a new one of `a`
            if rules.resilient and (a.family != b.family or a.group != b.group):
                continue
            same = (a.cost, a.keep_cost, a.rps, a.preference, a.keep) == (
                b.cost, b.keep_cost, b.rps, b.preference, b.keep)
            if same and i > j:
                continue  # identical items: keep the first
            dominated = True
            break
        if not dominated:
            kept.append(j)
    return kept


def _spread_greedy(items: Sequence[Item], rules: Rules) -> list[int]:
    """A first cover that respects the family share: cheapest per rps first, skipping a
    replica that would push its family above the share of the capacity reached so far."""
    order = sorted(
        range(len(items)),
        key=lambda i: (items[i].cost / items[i].rps if items[i].rps > 0 else math.inf, i),
    )
    counts = [0] * len(items)
    fam = [0.0, 0.0, 0.0]
    cap = 0.0
    n = 0
    share = rules.family_share
    while n < rules.max_replicas and (cap < rules.required - EPS or n < rules.min_replicas):
        choice = None
        for i in order:
            it = items[i]
            if counts[i] >= it.avail:
                continue
            after = cap + it.rps
            if fam[it.family] + it.rps <= share * max(after, rules.required) + EPS:
                choice = i
                break
        if choice is None:  # nothing keeps the share: take the cheapest anyway
            choice = next((i for i in order if counts[i] < items[i].avail), None)
            if choice is None:
                break
        counts[choice] += 1
        fam[items[choice].family] += items[choice].rps
        cap += items[choice].rps
        n += 1
    return counts


def _covers(items: Sequence[Item], counts: Sequence[int], rules: Rules) -> bool:
    cap = sum(c * it.rps for c, it in zip(counts, items, strict=True))
    return cap >= rules.required - EPS and sum(counts) >= rules.min_replicas


def _largest_first(items: Sequence[Item], rules: Rules) -> list[int]:
    """Highest-rps replicas first (cheapest on ties) until covered or out of room."""
    order = sorted(range(len(items)), key=lambda i: (-items[i].rps, items[i].cost, i))
    counts = [0] * len(items)
    left = rules.max_replicas
    cap = 0.0
    n = 0
    for i in order:
        item = items[i]
        missing = rules.required - cap
        units = math.ceil(missing / item.rps - 1e-9) if item.rps > 0 and missing > EPS else 0
        take = min(item.avail, left, max(units, rules.min_replicas - n))
        if take <= 0:
            continue
        counts[i] = take
        left -= take
        n += take
        cap += take * item.rps
    return counts


class _Search:
    def __init__(self, items: Sequence[Item], rules: Rules) -> None:
        self.rules = rules
        # cost per rps (kept replicas at their discounted cost), preference, then input order
        self.order = sorted(
            range(len(items)),
            key=lambda i: (
                items[i].keep_cost / items[i].rps if items[i].keep and items[i].rps > 0 else
                items[i].cost / items[i].rps if items[i].rps > 0 else math.inf,
                -items[i].preference,
                i,
            ),
        )
        self.items = [items[i] for i in self.order]
        self.nodes = 0
        self.best: list[int] | None = None
        self.best_key: PoolKey | None = None
        self.counts = [0] * len(self.items)
        # over-provisioning can fix a share violation: allow up to required / share
        share = min(rules.family_share, rules.node_pool_share)
        self.target = rules.required / max(share, 0.25) if rules.resilient else rules.required
        # (cost per rps, rps, units, position) of every item, cheapest per rps first: the
        # bound of a suffix skips the positions before it (one list, not one per suffix)
        self._segments = self._all_segments()
        # the most rps one replica from `i` on can add: with max_replicas, a branch whose
        # remaining replicas cannot reach demand holds no cover (the cost bound ignores this)
        n_items = len(self.items)
        self._top_rps = [0.0] * (n_items + 1)
        self._cheapest = [math.inf] * (n_items + 1)
        for i in range(n_items - 1, -1, -1):  # suffix maxima and minima, in one sweep
            it = self.items[i]
            self._top_rps[i] = max(self._top_rps[i + 1], it.rps if it.avail else 0.0)
            price = (it.keep_cost if it.keep else it.cost) if it.avail else math.inf
            self._cheapest[i] = min(self._cheapest[i + 1], price)

    def _all_segments(self) -> list[tuple[float, float, int, int]]:
        segments = []
        for pos, it in enumerate(self.items):
            if it.rps <= 0 or it.avail <= 0:
                continue
            keep = min(it.keep, it.avail)
            if keep:
                segments.append((it.keep_cost / it.rps, it.rps, keep, pos))
            if it.avail - keep:
                segments.append((it.cost / it.rps, it.rps, it.avail - keep, pos))
        segments.sort()
        return segments

    def offer(self, counts_in_input_order: list[int]) -> None:
        """Seed the search with a known cover (counts indexed like the input items)."""
        counts = [counts_in_input_order[i] for i in self.order]
        key = evaluate(self.items, counts, self.rules)
        if key[0] == 0.0 and (self.best_key is None or key < self.best_key) and churn_ok(
            self.items, counts, self.rules
        ):
            self.best_key, self.best = key, counts

    def run(self) -> list[int] | None:
        # churn bounds need every count tried, which the resilient search does
        if self.rules.resilient or self.rules.max_removed is not None:
            self._dfs(0, 0.0, 0, 0.0)
        else:
            self._plain_best = (
                (self.best_key[2], self.best_key[3]) if self.best_key else (math.inf, 0.0)
            )
            self._rps = [it.rps for it in self.items]
            self._dfs_plain(0, 0.0, 0, 0.0, 0)
        if self.best is None:
            return None
        result = [0] * len(self.items)
        for pos, i in enumerate(self.order):
            result[i] = self.best[pos]
        return result

    def _two_items(
        self, i: int = 0, cap: float = 0.0, n: int = 0, cost: float = 0.0, pref: int = 0
    ) -> None:
        """The last two items (or the only one) as a loop instead of recursion: the cheaper
        per rps from most to fewest, the other completing the cover."""
        rules = self.rules
        a = self.items[i]
        b = self.items[i + 1] if i + 1 < len(self.items) else None
        need_all = rules.required - cap
        upper = min(a.avail, rules.max_replicas - n)
        least_n = rules.min_replicas - n
        if a.rps > 0 and need_all > EPS:
            upper = min(upper, max(math.ceil(need_all / a.rps - 1e-9), least_n))
        else:
            upper = min(upper, max(least_n, 0))
        for xa in range(max(upper, 0), -1, -1):
            cost_a = cost + item_cost(a, xa)
            need = need_all - xa * a.rps
            need_n = least_n - xa
            if cost_a + self._lower_bound(i + 1, need, need_n) > self._plain_best[0] + 1e-7:
                continue  # not monotone in xa once min replicas bind: keep looking
            xb = 0
            if b is not None:
                units = math.ceil(need / b.rps - 1e-9) if b.rps > 0 and need > EPS else 0
                xb = max(units, need_n, 0)
                if xb > b.avail:
                    break  # fewer of `a` only needs more of `b`
                if xb > rules.max_replicas - n - xa:
                    continue  # fewer of `a` leaves more replicas for `b`
            elif need > EPS or need_n > 0:
                break
            total = cost_a + (item_cost(b, xb) if b is not None else 0.0)
            p = pref + a.preference * xa + (b.preference * xb if b is not None else 0)
            key = (round(total, 6), -float(p))
            if key < self._plain_best:
                counts = self.counts[:i] + [xa] + ([xb] if b is not None else [])
                counts += [0] * (len(self.items) - len(counts))
                if rules.max_removed is None or churn_ok(self.items, counts, rules):
                    self._plain_best = key
                    self.best = counts
                    self.best_key = (0.0, 0.0, key[0], key[1])

    def _lower_bound(self, start: int, need: float, need_n: int) -> float:
        bound = 0.0
        if need > EPS:
            for per_rps, rps, units, pos in self._segments:
                if pos < start:
                    continue
                take = min(need, rps * units)
                bound += take * per_rps
                need -= take
                if need <= EPS:
                    break
            else:
                return math.inf
        if need_n > 0:
            bound = max(bound, need_n * self._cheapest[start])
        return bound

    def _dfs_plain(self, i: int, cap: float, n: int, cost: float, pref: int) -> None:
        """The search without resilience rules: a leaf as soon as demand is covered, and the
        key is just (cost, -preference)."""
        self.nodes += 1
        rules = self.rules
        need = rules.required - cap
        need_n = rules.min_replicas - n
        if self.nodes > HARD_NODE_LIMIT:
            return
        if need <= EPS and need_n <= 0:
            key = (round(cost, 6), -float(pref))
            if key < self._plain_best and (
                rules.max_removed is None
                or churn_ok(self.items, self.counts[:i] + [0] * (len(self.items) - i), rules)
            ):
                self._plain_best = key
                self.best = self.counts[:i] + [0] * (len(self.items) - i)
                self.best_key = (0.0, 0.0, key[0], key[1])
            return
        if i == len(self.items):
            return
        if need > EPS and need > (rules.max_replicas - n) * self._top_rps[i] + EPS:
            return  # no cover below
        best_cost = self._plain_best[0]
        if best_cost < math.inf:
            if self.nodes > NODE_LIMIT:
                return
            # strict: an equal-cost cover may still win on preference
            if cost + self._lower_bound(i, need, need_n) > best_cost + 1e-7:
                return
        if len(self.items) - i <= 2:
            self._two_items(i, cap, n, cost, pref)
            return
        item = self.items[i]
        rps = item.rps
        useful = math.ceil(need / rps - 1e-9) if rps > 0 and need > EPS else 0
        least = max(useful, need_n, 0)
        upper = min(item.avail, rules.max_replicas - n, least)
        if i == len(self.items) - 1:
            candidates: range = range(least, least - 1, -1) if least <= upper else range(0)
        else:
            candidates = range(max(upper, 0), -1, -1)
        keep, keep_cost, new_cost, p = item.keep, item.keep_cost, item.cost, item.preference
        counts = self.counts
        for x in candidates:
            counts[i] = x
            c = keep_cost * x if x <= keep else keep_cost * keep + new_cost * (x - keep)
            self._dfs_plain(i + 1, cap + x * rps, n + x, cost + c, pref + x * p)
            if ((self.nodes > NODE_LIMIT and self.best is not None)
                    or self.nodes > HARD_NODE_LIMIT):
                break
        counts[i] = 0

    def _dfs(self, i: int, cap: float, n: int, cost: float) -> None:
        """The search with resilience rules: covers are evaluated whole (shares depend on the
        mix), and more capacity than demand may pay off when it lowers a share."""
        self.nodes += 1
        rules = self.rules
        need = rules.required - cap
        need_n = rules.min_replicas - n
        if self.nodes > HARD_NODE_LIMIT:
            return
        if need > EPS and need > (rules.max_replicas - n) * self._top_rps[i] + EPS:
            return  # no cover below
        if self.best_key is not None:
            if self.nodes > RESILIENT_NODE_LIMIT:
                return
            # cost pruning is valid once the incumbent has no violation left to improve on
            bound = cost + self._lower_bound(i, need, need_n)
            if self.best_key[1] == 0.0 and bound >= self.best_key[2] - 1e-9:
                return
        if i == len(self.items):
            key = evaluate(self.items, self.counts, rules)
            if (key[0] == 0.0 and (self.best_key is None or key < self.best_key)
                    and churn_ok(self.items, self.counts, rules)):
                self.best_key = key
                self.best = list(self.counts)
            return
        item = self.items[i]
        useful = math.ceil(max(0.0, self.target - cap) / item.rps - 1e-9) if item.rps > 0 else 0
        upper = min(item.avail, rules.max_replicas - n, max(useful, need_n))
        for x in range(max(upper, 0), -1, -1):
            self.counts[i] = x
            self._dfs(i + 1, cap + x * item.rps, n + x, cost + item_cost(item, x))
            if ((self.nodes > RESILIENT_NODE_LIMIT and self.best_key is not None)
                    or self.nodes > HARD_NODE_LIMIT):
                break
        self.counts[i] = 0
