"""Table-driven placement cases, each run through both solvers (exact MILP and fast path)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from inferpool.cluster import ClusterSnapshot
from inferpool.placement import PlacementKey, PlacementOptions, Plan, PoolDemand, place
from tests.unit.factories import cluster, demand, pool, variant

SOLVERS = ("milp", "fast")


@dataclass(frozen=True)
class Case:
    name: str
    snapshot: ClusterSnapshot
    demands: tuple[PoolDemand, ...]
    expect: Callable[[Plan], None]
    options: PlacementOptions = field(default_factory=PlacementOptions)


def replicas_in(plan: Plan, node_pool: str) -> int:
    return sum(n for (_, _, np), n in plan.replicas.items() if np == node_pool)


def replicas_of(plan: Plan, key: str) -> int:
    return sum(n for (p, _, _), n in plan.replicas.items() if p == key)


def check_each_family_alone(family: str) -> Callable[[Plan], None]:
    def check(plan: Plan) -> None:
        out = plan.outcomes["ns/m"]
        assert out.shortfall_rps == 0
        assert out.families == (family,)
        assert replicas_of(plan, "ns/m") == 3  # 25 rps at 10 rps per replica
        assert out.cost_per_hour == pytest.approx(3 * 2 * 1.5)

    return check


def family_alone(family: str) -> Case:
    extra = {"topology": "2x2"} if family == "tpu" else {}
    return Case(
        f"{family} alone",
        cluster(pool("p", family, price=1.5, per_node=4, nodes=2, **extra)),
        (demand("ns/m", 25, variant("v", family, k=2, rps=10)),),
        check_each_family_alone(family),
    )


def spill_over(plan: Plan) -> None:
    # the cheap pool holds 2 replicas (one 8-GPU node, 4 GPUs each); the rest goes to dear
    assert replicas_in(plan, "cheap") == 2
    assert replicas_in(plan, "dear") == 2
    assert plan.outcomes["ns/m"].shortfall_rps == 0
    assert any("spilled over to dear" in r for r in plan.outcomes["ns/m"].reasons)


def stockout(plan: Plan) -> None:
    out = plan.outcomes["ns/m"]
    assert plan.replicas == {}
    assert out.shortfall_rps == 30
    assert out.shortfall_cause is not None
    assert "no free nvidia accelerators" in out.shortfall_cause


def priority_wins(plan: Plan) -> None:
    assert replicas_of(plan, "ns/high") == 2
    assert plan.outcomes["ns/high"].shortfall_rps == 0
    low = plan.outcomes["ns/low"]
    assert low.shortfall_rps == 20
    assert low.shortfall_cause is not None
    assert "outranked by priority 100 pool ns/high" in low.shortfall_cause


def resilience_share(plan: Plan) -> None:
    out = plan.outcomes["ns/m"]
    # cheapest would be all-GPU; at most half the capacity may sit in one family
    assert out.families == ("nvidia", "tpu")
    by_family = {"nvidia": 0.0, "tpu": 0.0}
    for (_, v, _), n in plan.replicas.items():
        by_family["nvidia" if v == "gpu" else "tpu"] += 10 * n
    assert max(by_family.values()) <= 0.5 * sum(by_family.values()) + 1e-9


def share_relaxed(plan: Plan) -> None:
    out = plan.outcomes["ns/m"]
    assert out.shortfall_rps == 0
    assert out.families == ("nvidia",)
    assert any("resilience relaxed" in r for r in out.reasons)


def tpu_topology(plan: Plan) -> None:
    # a 2x4 replica needs a whole 8-chip node: only the untouched node of the 2x4 pool fits,
    # and the 2x2 pool never matches
    assert plan.replicas == {("ns/m", "v6e", "slice-2x4"): 1}
    assert plan.outcomes["ns/m"].shortfall_rps == 10


def fragmentation(plan: Plan) -> None:
    # 8 GPUs free in total, but 2 per node: no 4-GPU replica fits
    assert plan.replicas == {}
    cause = plan.outcomes["ns/m"].shortfall_cause
    assert cause is not None
    assert "fragmented" in cause


def min_replicas_above_demand(plan: Plan) -> None:
    assert replicas_of(plan, "ns/m") == 3
    assert any("min replicas 3" in r for r in plan.outcomes["ns/m"].reasons)


def zero_demand(plan: Plan) -> None:
    assert plan.replicas == {}
    out = plan.outcomes["ns/m"]
    assert out.cost_per_hour == 0
    assert out.shortfall_rps == 0
    assert out.shortfall_cause is None
    assert "no demand and no minimum: 0 replicas" in out.reasons


def unhealthy_offers_nothing(plan: Plan) -> None:
    assert replicas_in(plan, "gpu") == 1  # one healthy node of two: 8 GPUs, 8 per replica
    assert plan.outcomes["ns/m"].shortfall_rps == 10


def accelerator_limit(plan: Plan) -> None:
    assert replicas_in(plan, "gpu") == 2  # limit 4 GPUs = 2 replicas of 2
    assert replicas_in(plan, "other") == 1


def excluded_variant(plan: Plan) -> None:
    assert {v for (_, v, _) in plan.replicas} == {"backup"}
    assert any("excluded" in r for r in plan.outcomes["ns/m"].reasons)


def max_replicas(plan: Plan) -> None:
    assert replicas_of(plan, "ns/m") == 2
    assert plan.outcomes["ns/m"].shortfall_cause == "max replicas 2 reached"


def preference_breaks_ties(plan: Plan) -> None:
    assert {v for (_, v, _) in plan.replicas} == {"preferred"}


CASES = [
    family_alone("nvidia"),
    family_alone("tpu"),
    family_alone("neuron"),
    Case(
        "spill-over when the cheapest family is full",
        cluster(pool("cheap", "nvidia", price=1.0), pool("dear", "tpu", price=3.0)),
        (demand("ns/m", 40, variant("gpu", "nvidia", k=4, rps=10),
                variant("tpu", "tpu", k=4, rps=10)),),
        spill_over,
    ),
    Case(
        "stockout",
        cluster(pool("gpu", "nvidia", nodes=2, used=(8, 8))),
        (demand("ns/m", 30, variant("gpu", "nvidia", k=2)),),
        stockout,
    ),
    Case(
        "two pools compete for scarce H100s by priority",
        cluster(pool("h100", "nvidia", per_node=8, nodes=1)),
        (demand("ns/high", 20, variant("h", "nvidia", k=4), priority=100),
         demand("ns/low", 20, variant("h", "nvidia", k=4), priority=0)),
        priority_wins,
    ),
    Case(
        "resilience share spreads over families",
        cluster(pool("gpu", "nvidia", price=1.0, nodes=2), pool("tpu", "tpu", price=2.0)),
        (demand("ns/m", 40, variant("gpu", "nvidia", k=2), variant("tpu", "tpu", k=2),
                family_share=0.5),),
        resilience_share,
    ),
    Case(
        "resilience share relaxed when only one family has room",
        cluster(pool("gpu", "nvidia", nodes=2), pool("tpu", "tpu", used=(8,))),
        (demand("ns/m", 40, variant("gpu", "nvidia", k=2), variant("tpu", "tpu", k=2),
                family_share=0.5),),
        share_relaxed,
    ),
    Case(
        "TPU topology: whole slice, matching topology only",
        cluster(pool("slice-2x4", "tpu", topology="2x4", nodes=2, used=(1, 0)),
                pool("slice-2x2", "tpu", topology="2x2", per_node=4, nodes=4)),
        (demand("ns/m", 20, variant("v6e", "tpu", k=1, topology="2x4")),),
        tpu_topology,
    ),
    Case(
        "fragmentation across nodes",
        cluster(pool("gpu", "nvidia", per_node=8, nodes=4, used=(6, 6, 6, 6))),
        (demand("ns/m", 10, variant("gpu", "nvidia", k=4)),),
        fragmentation,
    ),
    Case(
        "min replicas above demand",
        cluster(pool("gpu", "nvidia")),
        (demand("ns/m", 5, variant("gpu", "nvidia", k=1), min_replicas=3),),
        min_replicas_above_demand,
    ),
    Case(
        "zero demand",
        cluster(pool("gpu", "nvidia")),
        (demand("ns/m", 0, variant("gpu", "nvidia")),),
        zero_demand,
    ),
    Case(
        "unhealthy nodes offer nothing",
        cluster(pool("gpu", "nvidia", nodes=2, unhealthy=1)),
        (demand("ns/m", 20, variant("gpu", "nvidia", k=8)),),
        unhealthy_offers_nothing,
    ),
    Case(
        "pool accelerator limit (stockout backoff)",
        cluster(pool("gpu", "nvidia", price=1.0), pool("other", "nvidia", price=2.0)),
        (demand("ns/m", 30, variant("gpu", "nvidia", k=2)),),
        accelerator_limit,
        PlacementOptions(pool_accelerator_limits={"gpu": 4}),
    ),
    Case(
        "excluded (degraded) variant",
        cluster(pool("gpu", "nvidia", price=1.0), pool("tpu", "tpu", price=5.0)),
        (demand("ns/m", 10, variant("main", "nvidia"), variant("backup", "tpu")),),
        excluded_variant,
        PlacementOptions(excluded_variants=frozenset({("ns/m", "main")})),
    ),
    Case(
        "max replicas bounds the pool",
        cluster(pool("gpu", "nvidia")),
        (demand("ns/m", 50, variant("gpu", "nvidia"), max_replicas=2),),
        max_replicas,
    ),
    Case(
        "preference breaks a cost tie",
        cluster(pool("gpu", "nvidia", price=1.0), pool("tpu", "tpu", price=1.0)),
        (demand("ns/m", 10, variant("plain", "nvidia"),
                variant("preferred", "tpu", preference=1)),),
        preference_breaks_ties,
    ),
]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case(case: Case, solver: str) -> None:
    options = PlacementOptions(
        solver=solver,  # type: ignore[arg-type]
        time_budget_s=10.0,
        pool_accelerator_limits=case.options.pool_accelerator_limits,
        excluded_variants=case.options.excluded_variants,
    )
    case.expect(place(case.snapshot, case.demands, options=options))


# --- hysteresis, moves and determinism -----------------------------------------------------------

TWO_POOLS = cluster(pool("a", "nvidia", price=1.00), pool("b", "nvidia", price=1.03))
ONE_DEMAND = (demand("ns/m", 20, variant("gpu", "nvidia", k=2)),)
IN_B: dict[PlacementKey, int] = {("ns/m", "gpu", "b"): 2}


@pytest.mark.parametrize("solver", SOLVERS)
def test_hysteresis_keeps_replicas_for_a_small_saving(solver: str) -> None:
    options = PlacementOptions(solver=solver, hysteresis=0.05)  # type: ignore[arg-type]
    plan = place(TWO_POOLS, ONE_DEMAND, current=IN_B, options=options)
    assert plan.replicas == IN_B
    assert plan.moves == ()


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_saving_above_hysteresis_moves(solver: str) -> None:
    options = PlacementOptions(solver=solver, hysteresis=0.01)  # type: ignore[arg-type]
    plan = place(TWO_POOLS, ONE_DEMAND, current=IN_B, options=options)
    assert plan.replicas == {("ns/m", "gpu", "a"): 2}
    assert {(m.key, m.before, m.after) for m in plan.moves} == {
        (("ns/m", "gpu", "a"), 0, 2),
        (("ns/m", "gpu", "b"), 2, 0),
    }


def test_stale_current_replicas_become_moves() -> None:
    plan = place(TWO_POOLS, ONE_DEMAND, current={("ns/m", "old-variant", "a"): 1})
    assert any(m.key == ("ns/m", "old-variant", "a") and m.after == 0 for m in plan.moves)


@pytest.mark.parametrize("solver", SOLVERS)
def test_max_moves_bounds_churn(solver: str) -> None:
    current: dict[PlacementKey, int] = {("ns/m", "gpu", "b"): 4}
    demands = (demand("ns/m", 40, variant("gpu", "nvidia", k=2)),)
    options = PlacementOptions(solver=solver, hysteresis=0.0, max_moves=1)  # type: ignore[arg-type]
    plan = place(TWO_POOLS, demands, current=current, options=options)
    removed = sum(max(0, m.before - m.after) for m in plan.moves)
    assert removed == 1
    assert plan.outcomes["ns/m"].shortfall_rps == 0


def test_same_input_same_plan_whatever_the_order() -> None:
    snapshot = cluster(pool("a", "nvidia", nodes=2), pool("t", "tpu", price=2.0))
    demands = [
        demand("ns/x", 30, variant("g", "nvidia", k=2), variant("t", "tpu", k=2)),
        demand("ns/y", 50, variant("g", "nvidia", k=4), variant("t", "tpu", k=4),
               family_share=0.7),
    ]
    first = place(snapshot, demands)
    again = place(cluster(pool("t", "tpu", price=2.0), pool("a", "nvidia", nodes=2)),
                  list(reversed(demands)))
    assert first.replicas == again.replicas
    assert first.outcomes == again.outcomes
    assert first.moves == again.moves
