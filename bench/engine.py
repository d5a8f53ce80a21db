"""Benchmark of the placement engine on generated clusters.

    .venv/bin/python -m bench.engine [--quick] [--large] [--runs 50] [--seeds 3] [--seed 1]

Prints ONE JSON document on stdout (progress goes to stderr), with the command that made it:
- `timing`: per size (500 / 2,000 nodes; with --large also 5,000 / 10,000), `--runs` plans of
  one "tight" cluster at the default 1 s budget, every pool's demand moved by up to +-10 % per
  run (so the engine's structure cache never hits): plan time p50 / p99 / max, plans over
  budget + 10 %, unmet req/s beside greedy spill-over's and how often the plan was worse than
  greedy, and a re-plan after losing the busiest node pool's largest node;
- `comparison`: per instance family (FAMILIES), `--seeds` instances of 150 nodes / 16 node
  pools / 40 InferencePools: the engine, greedy spill-over and the exact MILP (warm-started
  from the engine, `--milp-seconds`) with coverage per priority tier, resilience violation
  and cost side by side;
- `solvers` (--libraries): the MILP library measurement on one cost-stage model.
The generator draws node pools of ten shapes across the three families at list prices, and
InferencePools of 8B / 70B / 405B models with 1-3 variants; H100s are deliberately scarce.
The families change what docs/placement.md lists: load, nodes partly used by others, family
shares and min_families, and Neuron replica sizes that do not divide each other.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from inferpool.cluster import ClusterSnapshot, Family, Node, NodePool
from inferpool.placement import (
    PlacementOptions,
    Plan,
    PoolDemand,
    VariantDemand,
    baselines,
    place,
)
from inferpool.placement.linear import LinearModel
from inferpool.placement.milp import cost_stage_model, solve_milp
from inferpool.placement.objective import pool_terms
from inferpool.placement.problem import Problem, compile_problem

# --- instance generator --------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A kind of node: family, product, topology, accelerators per node, price, weight."""

    family: Family
    product: str
    topology: str | None
    per_node: int
    price: float
    resource: str
    selector_label: str
    weight: float


SHAPES: tuple[Shape, ...] = (
    Shape("nvidia", "NVIDIA-H100-80GB-HBM3", None, 8, 6.88, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.10),
    Shape("nvidia", "NVIDIA-A100-SXM4-80GB", None, 8, 5.07, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.10),
    Shape("nvidia", "NVIDIA-L4", None, 1, 0.7068, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.08),
    Shape("nvidia", "NVIDIA-L4", None, 4, 0.7068, "nvidia.com/gpu",
          "cloud.google.com/gke-nodepool", 0.07),
    Shape("tpu", "tpu-v5-lite-podslice", "2x4", 8, 1.20, "google.com/tpu",
          "cloud.google.com/gke-nodepool", 0.12),
    Shape("tpu", "tpu-v5-lite-podslice", "2x2", 4, 1.20, "google.com/tpu",
          "cloud.google.com/gke-nodepool", 0.08),
    Shape("tpu", "tpu-v6e-slice", "2x4", 8, 2.70, "google.com/tpu",
          "cloud.google.com/gke-nodepool", 0.10),
    Shape("neuron", "inferentia2", None, 12, 1.08, "aws.amazon.com/neuron",
          "eks.amazonaws.com/nodegroup", 0.15),
    Shape("neuron", "trainium", None, 16, 1.34, "aws.amazon.com/neuron",
          "eks.amazonaws.com/nodegroup", 0.10),
    Shape("nvidia", "NVIDIA-H100-80GB-HBM3", None, 8, 6.88, "nvidia.com/gpu",
          "karpenter.sh/nodepool", 0.10),
)


@dataclass(frozen=True)
class Archetype:
    """A model size and how it is served on each accelerator type: (shape index, k, rps)."""

    name: str
    variants: tuple[tuple[str, Family, str, str | None, int, float], ...]
    rps_range: tuple[float, float]


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "8b",
        (
            ("l4", "nvidia", "NVIDIA-L4", None, 1, 6.0),
            ("h100", "nvidia", "NVIDIA-H100-80GB-HBM3", None, 1, 45.0),
            ("v5e", "tpu", "tpu-v5-lite-podslice", "2x2", 4, 28.0),
            ("inf2", "neuron", "inferentia2", None, 2, 13.0),
        ),
        (20.0, 400.0),
    ),
    Archetype(
        "70b",
        (
            ("h100", "nvidia", "NVIDIA-H100-80GB-HBM3", None, 4, 40.0),
            ("a100", "nvidia", "NVIDIA-A100-SXM4-80GB", None, 8, 38.0),
            ("v6e", "tpu", "tpu-v6e-slice", "2x4", 8, 36.0),
            ("v5e", "tpu", "tpu-v5-lite-podslice", "2x4", 8, 14.0),
            ("trn1", "neuron", "trainium", None, 16, 34.0),
            ("inf2", "neuron", "inferentia2", None, 12, 24.0),
        ),
        (20.0, 250.0),
    ),
    Archetype(
        "405b",
        (
            ("h100", "nvidia", "NVIDIA-H100-80GB-HBM3", None, 8, 12.0),
            ("trn1", "neuron", "trainium", None, 16, 7.0),
        ),
        (5.0, 40.0),
    ),
)


@dataclass(frozen=True)
class Instance:
    snapshot: ClusterSnapshot
    demands: tuple[PoolDemand, ...]

    @property
    def size(self) -> dict[str, int]:
        return {
            "nodes": len(self.snapshot.nodes),
            "node_pools": len(self.snapshot.pools),
            "inference_pools": len(self.demands),
            "variants": sum(len(d.variants) for d in self.demands),
            "accelerators": sum(n.allocatable for n in self.snapshot.nodes),
        }


@dataclass(frozen=True)
class InstanceFamily:
    """How a family of instances is drawn (see FAMILIES and docs/placement.md)."""

    name: str
    load: float = 0.35  # demand, on each pool's leanest variant, as a share of free accelerators
    partly_used: float = 0.15  # share of nodes where other pods hold 1..all accelerators
    share_probability: float = 0.2  # pools (with 2+ families) given max_family_share
    family_share: float = 0.7
    min_families_probability: float = 0.0  # pools (with 2+ families) asking min_families 2
    neuron_weight: float = 1.0  # x the Neuron shapes' weight
    neuron_sizes: tuple[int, ...] = ()  # if set, Neuron variants draw k from these


FAMILIES: dict[str, InstanceFamily] = {f.name: f for f in (
    InstanceFamily("light"),
    InstanceFamily("tight", load=1.0),
    InstanceFamily("fragmented", load=0.7, partly_used=0.6),
    # 4 and 6 on 12-device inf2, 6 and 8 on 16-device trn1: sizes that do not divide
    InstanceFamily("neuron-sizes", load=0.8, neuron_weight=4.0, neuron_sizes=(4, 6, 8)),
    InstanceFamily("resilience", load=0.7, share_probability=0.8, family_share=0.5,
                   min_families_probability=0.3),
    InstanceFamily("mixed", load=0.9, partly_used=0.4, share_probability=0.5,
                   neuron_weight=2.0, neuron_sizes=(4, 6, 8), min_families_probability=0.1),
)}


def generate(nodes: int, node_pools: int, pools: int, seed: int, load: float = 0.7,
             family: InstanceFamily | None = None) -> Instance:
    fam = family or InstanceFamily("custom", load=load)
    rng = random.Random(seed)
    weights = [s.weight * (fam.neuron_weight if s.family == "neuron" else 1.0) for s in SHAPES]
    pool_shapes = [SHAPES[i % len(SHAPES)] for i in range(len(SHAPES))]
    pool_shapes += rng.choices(SHAPES, weights=weights, k=max(0, node_pools - len(SHAPES)))
    pool_shapes = pool_shapes[:node_pools]
    # H100 pools are small: the scarce, popular accelerator
    sizes = [rng.uniform(0.3, 0.6) if s.product.startswith("NVIDIA-H100") else rng.uniform(0.6, 1.6)
             for s in pool_shapes]
    scale = nodes / sum(sizes)
    counts = [max(1, round(x * scale)) for x in sizes]
    counts[-1] = max(1, counts[-1] + nodes - sum(counts))

    np_list: list[NodePool] = []
    node_list: list[Node] = []
    for i, (shape, count) in enumerate(zip(pool_shapes, counts, strict=True)):
        roll = rng.random()
        capacity_type = "spot" if roll < 0.25 else "reserved" if roll < 0.35 else "on-demand"
        discount = {"spot": 0.4, "reserved": 0.7}.get(capacity_type, 1.0)
        price = shape.price * discount
        name = f"np-{i:03d}-{shape.family}-{shape.product.lower()[:12]}"
        np_list.append(
            NodePool(
                name=name,
                family=shape.family,
                product=shape.product,
                topology=shape.topology,
                price_per_accelerator_hour=round(price, 4),
                capacity_type=capacity_type,
                node_selector={shape.selector_label: name},
                resource=shape.resource,
                max_accelerators=None,
                price_known=True,
            )
        )
        for j in range(count):
            used = 0
            if rng.random() < fam.partly_used:  # other workloads hold part of some nodes
                used = rng.randint(1, shape.per_node)
            healthy = rng.random() > 0.01
            node_list.append(
                Node(
                    name=f"{name}-n{j:03d}",
                    pool=name,
                    allocatable=shape.per_node,
                    used_by_others=used,
                    ready=healthy,
                    schedulable=True,
                )
            )
    snapshot = ClusterSnapshot(pools=tuple(np_list), nodes=tuple(node_list))
    demands = _demands(snapshot, pools, rng, fam)
    return Instance(snapshot, demands)


def _demands(
    snapshot: ClusterSnapshot, count: int, rng: random.Random, fam: InstanceFamily
) -> tuple[PoolDemand, ...]:
    free_accelerators = sum(n.free for n in snapshot.nodes)
    drafts = []
    for i in range(count):
        arch = rng.choices(ARCHETYPES, weights=(0.5, 0.4, 0.1))[0]
        n_variants = rng.choice((1, 2, 2, 3, 3))
        picks = rng.sample(arch.variants, k=min(n_variants, len(arch.variants)))
        variants = []
        for name, family, product, topology, k, rps in sorted(picks):
            if family == "neuron" and fam.neuron_sizes:
                drawn = rng.choice(fam.neuron_sizes)
                rps, k = rps * drawn / k, drawn  # throughput scales with the devices
            variants.append(VariantDemand(
                name=name,
                family=family,
                product=product,
                topology=topology,
                accelerators=k,
                capacity_rps=round(rps * rng.uniform(0.85, 1.15), 2),
                preference=rng.choice((0, 0, 1)),
            ))
        families = {v.family for v in variants}
        several = len(families) >= 2
        share = fam.family_share if several and rng.random() < fam.share_probability else 1.0
        min_families = 2 if several and rng.random() < fam.min_families_probability else 1
        drafts.append((i, arch, tuple(variants), share, min_families,
                       rng.uniform(*arch.rps_range)))
    # scale demand to need about `load` x the free accelerators (each pool on its leanest variant)
    est = sum(
        rps * min(v.accelerators / v.capacity_rps for v in variants)
        for _, _, variants, _, _, rps in drafts
    )
    factor = fam.load * free_accelerators / max(est, 1e-9)
    demands = []
    for i, arch, variants, share, min_families, rps in drafts:
        priority = rng.choices((0, 50, 100), weights=(0.7, 0.2, 0.1))[0]
        demands.append(
            PoolDemand(
                key=f"ns-{i % 17:02d}/{arch.name}-{i:04d}",
                required_rps=round(rps * factor, 1),
                min_replicas=rng.choice((1, 1, 2)),
                max_replicas=200,
                variants=variants,
                priority=priority,
                max_family_share=share,
                min_families=min_families,
            )
        )
    return tuple(demands)


def vary(instance: Instance, rng: random.Random, spread: float = 0.1) -> Instance:
    """The same cluster with every pool's demand moved by up to +-spread: a new problem for
    the engine's structure cache, as on a live cluster where demand moves between plans."""
    demands = tuple(replace(d, required_rps=round(d.required_rps * rng.uniform(1 - spread,
                                                                                 1 + spread), 1))
                    for d in instance.demands)
    return Instance(instance.snapshot, demands)


# --- measurements --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def node_to_lose(instance: Instance, plan: Plan) -> str:
    """A node in the node pool that holds most of the plan's replicas: a loss that matters."""
    busiest = Counter(k[2] for k, n in plan.replicas.items() for _ in range(n)).most_common(1)
    pool = busiest[0][0] if busiest else instance.snapshot.pools[0].name
    nodes = sorted(instance.snapshot.nodes_of(pool), key=lambda n: (-n.free, n.name))
    return nodes[0].name




def levels(problem: Problem, counts: list[int]) -> dict[str, Any]:
    """The objective's levels: normalised shortfall per priority tier (highest first), the
    resilience violation, the cost; plus unmet req/s and short pools."""
    terms = [pool_terms(problem, p.index, counts) for p in problem.pools]
    unmet = sum(max(0.0, p.demand.required_rps - t.capacity)
                for p, t in zip(problem.pools, terms, strict=True))
    return {
        "coverage_by_tier": [round(sum(terms[p].shortfall for p in tier), 6)
                             for tier in problem.priority_tiers()],
        "resilience_violation": round(sum(t.violation for t in terms), 6),
        "cost_per_hour": round(sum(t.cost for t in terms), 2),
        "unmet_rps": round(unmet, 1),
        "pools_short": sum(1 for t in terms if t.shortfall > 0),
    }


def _key(lv: dict[str, Any]) -> tuple[Any, ...]:
    return (*lv["coverage_by_tier"], lv["resilience_violation"], lv["cost_per_hour"])


def worse(a: dict[str, Any], b: dict[str, Any], tolerance: float = 1e-6) -> bool:
    """a is lexicographically worse than b on coverage per tier, then resilience (cost
    only when both are equal)."""
    for x, y in zip([*a["coverage_by_tier"], a["resilience_violation"]],
                    [*b["coverage_by_tier"], b["resilience_violation"]], strict=True):
        if x > y + tolerance:
            return True
        if x < y - tolerance:
            return False
    return bool(a["cost_per_hour"] > b["cost_per_hour"] * (1 + 1e-4) + 1e-6)


def summary_of(values: list[float], digits: int = 3) -> dict[str, float]:
    return {"p50": round(percentile(values, 0.5), digits),
            "p99": round(percentile(values, 0.99), digits),
            "max": round(max(values), digits)}


def timing(nodes: int, node_pools: int, pools: int, family: InstanceFamily, runs: int,
           seed: int, budget: float) -> dict[str, Any]:
    """`runs` plans of one cluster, demand varied per run (no cache hit), each with greedy
    spill-over beside it and a re-plan after the loss of the busiest node pool's largest
    node."""
    base = generate(nodes, node_pools, pools, seed, family=family)
    rng = random.Random(seed * 1000 + 7)
    options = PlacementOptions(time_budget_s=budget)
    plan_times, replan_times = [], []
    unmet, greedy_unmet, replan_unmet = [], [], []
    worse_than_greedy = 0
    over = 0
    replan_over = 0
    solvers: Counter[str] = Counter()
    for run in range(runs):
        instance = vary(base, rng)
        began = time.perf_counter()
        plan = place(instance.snapshot, instance.demands, options=options)
        plan_times.append(time.perf_counter() - began)
        over += plan_times[-1] > budget * 1.1
        solvers[plan.solver] += 1
        problem = compile_problem(instance.snapshot, instance.demands, None, options)
        mine = levels(problem, problem.counts_of(plan.replicas))
        greedy = baselines.greedy_spillover(instance.snapshot, instance.demands)
        theirs = levels(problem, problem.counts_of(greedy.replicas))
        worse_than_greedy += worse(mine, theirs)
        unmet.append(mine["unmet_rps"])
        greedy_unmet.append(theirs["unmet_rps"])
        after = instance.snapshot.without_node(node_to_lose(instance, plan))
        began = time.perf_counter()
        replan = place(after, instance.demands, current=plan.replicas, options=options)
        replan_times.append(time.perf_counter() - began)
        replan_over += replan_times[-1] > budget * 1.1
        replan_unmet.append(replan.shortfall_rps)
        if run % 10 == 9:
            log(f"    {run + 1}/{runs} runs")
    return {
        "family": family.name,
        "size": base.size,
        "runs": runs,
        "budget_s": budget,
        "plan_seconds": summary_of(plan_times),
        "plans_over_budget_plus_10_percent": over,
        "solver_used": dict(sorted(solvers.items())),
        "unmet_rps": {"engine": summary_of(unmet, 1), "greedy_spillover": summary_of(
            greedy_unmet, 1)},
        "runs_worse_than_greedy": worse_than_greedy,
        "replan_after_node_loss_seconds": summary_of(replan_times),
        "replans_over_budget_plus_10_percent": replan_over,
        "replan_unmet_rps": summary_of(replan_unmet, 1),
    }


def compare(family: InstanceFamily, nodes: int, node_pools: int, pools: int, seed: int,
            milp_seconds: float) -> dict[str, Any]:
    """Engine vs greedy spill-over vs the exact MILP (warm-started from the engine's plan,
    `milp_seconds`), on one instance."""
    instance = generate(nodes, node_pools, pools, seed, family=family)
    options = PlacementOptions()
    began = time.perf_counter()
    engine = place(instance.snapshot, instance.demands, options=options)
    engine_seconds = time.perf_counter() - began
    problem = compile_problem(instance.snapshot, instance.demands, None, options)
    counts = problem.counts_of(engine.replicas)
    greedy = baselines.greedy_spillover(instance.snapshot, instance.demands)
    began = time.perf_counter()
    exact = solve_milp(problem, time.perf_counter() + milp_seconds, start=counts)
    milp_seconds_used = time.perf_counter() - began
    mine, best = levels(problem, counts), levels(problem, exact.counts)
    greedy_levels = levels(problem, problem.counts_of(greedy.replicas))
    same_coverage = all(abs(a - b) <= 1e-6 for a, b in zip(
        mine["coverage_by_tier"], best["coverage_by_tier"], strict=True))
    same_resilience = same_coverage and abs(
        mine["resilience_violation"] - best["resilience_violation"]) <= 1e-6
    gap = 100 * (mine["cost_per_hour"] - best["cost_per_hour"]) / max(best["cost_per_hour"],
                                                                     1e-9)
    return {
        "family": family.name,
        "seed": seed,
        "size": instance.size,
        "engine": {**mine, "seconds": round(engine_seconds, 3), "solver": engine.solver,
                   "claims_optimal": engine.optimal},
        "greedy_spillover": greedy_levels,
        "milp": {**best, "seconds": round(milp_seconds_used, 2), "proved": exact.optimal,
                 "cost_bound": (round(exact.cost_bound, 2) if exact.cost_bound is not None
                                else None)},
        "engine_coverage_equals_milp": same_coverage,
        "engine_resilience_equals_milp": same_resilience,
        "engine_vs_milp_cost_percent_at_equal_levels": round(gap, 3) if same_resilience else None,
        "engine_worse_than_greedy": worse(mine, greedy_levels),
    }


def family_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    proved = [r for r in rows if r["milp"]["proved"]]
    gaps = [r["engine_vs_milp_cost_percent_at_equal_levels"] for r in proved
            if r["engine_vs_milp_cost_percent_at_equal_levels"] is not None]
    return {
        "instances": len(rows),
        "milp_proved": len(proved),
        "coverage_equal_to_proved_optimum": sum(r["engine_coverage_equals_milp"]
                                                for r in proved),
        "resilience_equal_too": sum(r["engine_resilience_equals_milp"] for r in proved),
        "cost_gap_percent_at_equal_levels": (
            {"median": round(statistics.median(gaps), 3), "max": round(max(gaps), 3)}
            if gaps else None),
        "unmet_rps_engine_vs_milp": [(r["engine"]["unmet_rps"], r["milp"]["unmet_rps"])
                                     for r in rows],
        "engine_worse_than_greedy": sum(r["engine_worse_than_greedy"] for r in rows),
    }


# --- MILP library measurement --------------------------------------------------------------------


def measure_milp_libraries(instance: Instance, seconds: float) -> dict[str, Any]:
    """Solve the same single-objective MILP (the cost stage, coverage held) with each library."""
    options = PlacementOptions()
    problem = compile_problem(instance.snapshot, instance.demands, None, options)
    engine = place(instance.snapshot, instance.demands, options=options)
    index = {info.key: info.index for info in problem.pools}
    start = [0] * problem.n_options
    for key, n in engine.replicas.items():
        o = problem.option_of(key, index)
        assert o is not None
        start[o] = n
    model, objective = cost_stage_model(problem, start)
    result: dict[str, Any] = {"columns": model.num_cols, "rows": model.num_rows,
                              "integer_columns": sum(model.integer), "time_limit_s": seconds}
    for name, run in (("highspy", _run_highs), ("scipy.optimize.milp", _run_scipy),
                      ("pyscipopt", _run_pyscipopt),
                      ("ortools-scip", _in_subprocess("SCIP")),
                      ("ortools-cp-sat", _in_subprocess("CP_SAT"))):
        log(f"  MILP library {name} ...")
        try:
            result[name] = run(model, objective, seconds)
        except Exception as error:  # a missing or failing library is a finding, not a crash
            result[name] = {"error": f"{type(error).__name__}: {error}"}
    return result


def _run_highs(model: LinearModel, objective: list[float], seconds: float) -> dict[str, Any]:
    h = model.to_highs(objective)
    h.setOptionValue("time_limit", seconds)
    h.setOptionValue("mip_rel_gap", 1e-4)
    began = time.perf_counter()
    h.run()
    info = h.getInfo()
    return {"seconds": round(time.perf_counter() - began, 2),
            "status": h.modelStatusToString(h.getModelStatus()),
            "objective": round(info.objective_function_value, 3),
            "gap": round(info.mip_gap, 6)}


def _run_pyscipopt(model: LinearModel, objective: list[float], seconds: float
                   ) -> dict[str, Any]:
    import pyscipopt

    m = pyscipopt.Model()
    m.hideOutput()
    m.setParam("limits/time", seconds)
    m.setParam("limits/gap", 1e-4)
    m.setParam("parallel/maxnthreads", 1)
    inf = m.infinity()

    def fin(v: float) -> float:
        return inf if v == float("inf") else -inf if v == -float("inf") else v

    xs = [m.addVar(vtype="I" if integer else "C", lb=fin(lo), ub=fin(hi), obj=c)
          for lo, hi, integer, c in zip(model.lower, model.upper, model.integer, objective,
                                        strict=True)]
    for r in range(model.num_rows):
        terms = pyscipopt.quicksum(model.row_value[k] * xs[model.row_index[k]]
                                   for k in range(model.row_start[r], model.row_start[r + 1]))
        lo, hi = model.row_lower[r], model.row_upper[r]
        if lo > -float("inf"):
            m.addCons(terms >= lo)
        if hi < float("inf"):
            m.addCons(terms <= hi)
    began = time.perf_counter()
    m.optimize()
    has = m.getNSols() > 0
    return {"seconds": round(time.perf_counter() - began, 2), "status": m.getStatus(),
            "objective": round(m.getObjVal(), 3) if has else None,
            "bound": round(m.getDualbound(), 3)}


def _run_scipy(model: LinearModel, objective: list[float], seconds: float) -> dict[str, Any]:
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array

    start, index, value = model.dense_rows()
    matrix = csr_array((value, index, start), shape=(model.num_rows, model.num_cols))
    began = time.perf_counter()
    res = milp(
        c=np.asarray(objective),
        constraints=LinearConstraint(matrix, np.asarray(model.row_lower),
                                     np.asarray(model.row_upper)),
        integrality=np.asarray(model.integer, dtype=int),
        bounds=Bounds(np.asarray(model.lower), np.asarray(model.upper)),
        options={"time_limit": seconds, "mip_rel_gap": 1e-4},
    )
    return {"seconds": round(time.perf_counter() - began, 2), "status": res.message,
            "objective": round(float(res.fun), 3) if res.fun is not None else None,
            "gap": getattr(res, "mip_gap", None)}


def _in_subprocess(backend: str) -> Callable[[LinearModel, list[float], float], dict[str, Any]]:
    """OR-Tools bundles its own HiGHS, whose symbols clash with highspy's once both are loaded:
    run it in a fresh interpreter that never imports highspy."""

    def run(model: LinearModel, objective: list[float], seconds: float) -> dict[str, Any]:
        import subprocess
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump({"lower": model.lower, "upper": model.upper, "integer": model.integer,
                       "row_lower": model.row_lower, "row_upper": model.row_upper,
                       "row_start": model.row_start, "row_index": model.row_index,
                       "row_value": model.row_value, "objective": objective},
                      handle, allow_nan=True)
        out = subprocess.run(
            [sys.executable, "-c", _ORTOOLS_WORKER, handle.name, backend, str(seconds)],
            capture_output=True, text=True, timeout=seconds * 3 + 60, check=False,
        )
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    return run


# Runs in a fresh interpreter (see _in_subprocess): plain OR-Tools, no inferpool import.
_ORTOOLS_WORKER = r"""
import json, sys, time
from ortools.linear_solver import pywraplp
path, backend, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
m = json.load(open(path))
solver = pywraplp.Solver.CreateSolver(backend)
inf = solver.infinity()
def fin(v):
    return inf if v == float("inf") else -inf if v == -float("inf") else v
xs = [(solver.IntVar if i else solver.NumVar)(fin(lo), fin(hi), "x%d" % n)
      for n, (lo, hi, i) in enumerate(zip(m["lower"], m["upper"], m["integer"]))]
for r in range(len(m["row_lower"])):
    row = solver.RowConstraint(fin(m["row_lower"][r]), fin(m["row_upper"][r]), "")
    for k in range(m["row_start"][r], m["row_start"][r + 1]):
        row.SetCoefficient(xs[m["row_index"][k]], m["row_value"][k])
goal = solver.Objective()
for n, c in enumerate(m["objective"]):
    if c:
        goal.SetCoefficient(xs[n], c)
goal.SetMinimization()
solver.SetTimeLimit(int(seconds * 1000))
solver.SetNumThreads(1)
began = time.perf_counter()
status = solver.Solve()
names = {solver.OPTIMAL: "optimal", solver.FEASIBLE: "feasible",
         solver.INFEASIBLE: "infeasible", solver.NOT_SOLVED: "not solved"}
ok = status in (solver.OPTIMAL, solver.FEASIBLE)
print(json.dumps({"seconds": round(time.perf_counter() - began, 2),
                  "status": names.get(status, str(status)),
                  "objective": round(goal.Value(), 3) if ok else None,
                  "bound": round(goal.BestBound(), 3) if ok else None}))
"""


# --- main ----------------------------------------------------------------------------------------


SMALL = (150, 16, 40)  # nodes, node pools, InferencePools: the MILP proves most of these
DEFAULT_SIZES = ((500, 40, 100), (2000, 100, 400))
LARGE_SIZES = ((5000, 200, 1000), (10000, 400, 2000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one size, few runs (~1 minute)")
    parser.add_argument("--large", action="store_true",
                        help="also 5,000 nodes / 1,000 and 10,000 nodes / 2,000 InferencePools")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50, help="plans per size (p99 needs 50+)")
    parser.add_argument("--seeds", type=int, default=3, help="instances per family vs the MILP")
    parser.add_argument("--milp-seconds", type=float, default=30.0)
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated, of: " + ", ".join(FAMILIES))
    parser.add_argument("--sizes", default="",
                        help="instead of the default sizes: NODESxNODEPOOLSxPOOLS,... "
                             "(e.g. 5000x200x1000)")
    parser.add_argument("--libraries", action="store_true",
                        help="also time MILP libraries on one cost-stage model")
    args = parser.parse_args(argv)
    families = [FAMILIES[name] for name in args.families.split(",") if name]
    sizes: tuple[tuple[int, int, int], ...] = DEFAULT_SIZES + (LARGE_SIZES if args.large else ())
    if args.sizes:
        sizes = tuple(tuple(int(x) for x in size.split("x")) for size in  # type: ignore[misc]
                      args.sizes.split(","))
    runs, seeds = args.runs, args.seeds
    if args.quick:
        sizes, runs, seeds = ((500, 40, 100),), min(runs, 5), 1

    summary: dict[str, Any] = {
        "command": "python -m bench.engine " + " ".join(argv if argv is not None else
                                                         sys.argv[1:]),
        "seed": args.seed, "budget_s": 1.0,
        "families": {f.name: {k: v for k, v in vars(f).items() if k != "name"}
                     for f in families},
        "machine_load_average_at_start": os.getloadavg()[0],
        "timing": [], "comparison": {},
    }
    for nodes, node_pools, pools in sizes:
        log(f"timing {nodes} nodes / {node_pools} node pools / {pools} InferencePools, "
            f"tight, {runs} runs ...")
        summary["timing"].append(timing(nodes, node_pools, pools, FAMILIES["tight"], runs,
                                        args.seed, 1.0))
    for family in families:
        rows = []
        for seed in range(args.seed, args.seed + seeds):
            log(f"comparing with greedy and the MILP: {family.name}, seed {seed} ...")
            rows.append(compare(family, *SMALL, seed, args.milp_seconds))
        summary["comparison"][family.name] = {"summary": family_summary(rows), "instances": rows}
    if args.libraries:
        log("measuring MILP libraries on one comparison instance ...")
        summary["solvers"] = measure_milp_libraries(generate(500, 40, 100, args.seed, 0.35),
                                                    30.0)
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary["machine_load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(summary, indent=2, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
