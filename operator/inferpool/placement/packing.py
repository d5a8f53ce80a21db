"""Node-level capacity of one node pool: how many more replicas of k accelerators fit.

Replicas of several sizes share the nodes of a pool. When the sizes divide each other (1, 2, 4,
8, 16: what GPU, TPU and Neuron variants use in practice), counting is exact: a set of replicas
fits iff for every size s,

    sum over replicas of size k >= s of k/s  <=  sum over nodes of floor(free/s).

(Necessary because each node holds whole multiples of s; sufficient because placing the largest
replicas first on any node lowers every smaller size's slot count by exactly k/s.) The MILP uses
the same inequalities. For other size sets each node is simulated (first-fit decreasing), which
never over-commits a node but may miss a tight packing the MILP's pattern formulation finds.
"""

from __future__ import annotations

from inferpool.placement.problem import NodePoolCapacity


class PackState:
    """Replicas placed in one node pool, with an exact "how many more fit" query."""

    __slots__ = ("_counts", "_free", "_slots", "_used", "acc_used", "chain", "limit", "sizes")

    def __init__(self, capacity: NodePoolCapacity) -> None:
        self.sizes = capacity.sizes
        self.chain = capacity.chain
        self.limit = capacity.limit
        self.acc_used = 0
        self._free = capacity.free
        self._slots = [capacity.slots(s) for s in self.sizes]
        self._used = [0] * len(self.sizes)
        self._counts: dict[int, int] = {}

    def room(self, k: int) -> int:
        """How many more replicas of k accelerators fit now."""
        best = (self.limit - self.acc_used) // k if self.limit is not None else 1 << 40
        if self.chain:
            for i, s in enumerate(self.sizes):
                if s > k:
                    break
                best = min(best, (self._slots[i] - self._used[i]) // (k // s))
            return max(0, best)
        best = min(best, sum(f // k for f in self._free))
        return self._simulated_room(k, best) if best > 0 else 0

    def add(self, k: int, m: int) -> None:
        self._apply(k, m)

    def remove(self, k: int, m: int) -> None:
        self._apply(k, -m)

    def _apply(self, k: int, m: int) -> None:
        if m == 0:
            return
        self.acc_used += m * k
        self._counts[k] = self._counts.get(k, 0) + m
        for i, s in enumerate(self.sizes):
            if s > k:
                break
            self._used[i] += m * (k // s)

    def _simulated_room(self, k: int, upper: int) -> int:
        lo, hi = 0, upper
        while lo < hi:  # fits() is monotone in the added count
            mid = (lo + hi + 1) // 2
            if self._fits_with(k, mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _fits_with(self, k: int, extra: int) -> bool:
        counts = dict(self._counts)
        counts[k] = counts.get(k, 0) + extra
        return fits(self._free, counts)


def fits(free: tuple[int, ...], counts: dict[int, int]) -> bool:
    """First-fit decreasing: largest replicas first, each onto the fullest node it fits."""
    room = sorted(free)
    for size in sorted((s for s, c in counts.items() if c > 0), reverse=True):
        for _ in range(counts[size]):
            for i, r in enumerate(room):
                if r >= size:
                    room[i] = r - size
                    break
            else:
                return False
            room.sort()
    return True
