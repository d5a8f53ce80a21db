"""Benchmark of the placement engine on generated clusters.

    .venv/bin/python -m bench.engine [--quick] [--seed 1]

Prints ONE JSON document on stdout (progress goes to stderr):
- `instances`: per size, the plan time p50/p99 of `place()` (auto solver), the re-plan time
  after one node loss, peak memory, cost and shortfall;
- `comparison`: on instances small enough for the MILP to prove optimality, the engine's cost and
  time side by side with (a) the exact MILP optimum, (b) greedy cheapest-first spill-over (what
  today's heterogeneous autoscalers do) and (c) static single-family placement;
- `solvers`: the MILP library measurement (HiGHS vs scipy.optimize.milp vs OR-Tools) on the
  same models, if those libraries are installed.
The generator draws node pools of the three families with realistic shapes and prices, and
InferencePools with 1-3 variants in different families; H100s are deliberately scarce so that
pools compete for them.
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
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
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
from inferpool.placement.objective import score
from inferpool.placement.problem import compile_problem

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


def generate(nodes: int, node_pools: int, pools: int, seed: int, load: float = 0.7) -> Instance:
    rng = random.Random(seed)
    weights = [s.weight for s in SHAPES]
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
            if rng.random() < 0.15:  # other workloads hold part of some nodes
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
    demands = _demands(snapshot, pools, rng, load)
    return Instance(snapshot, demands)


def _demands(
    snapshot: ClusterSnapshot, count: int, rng: random.Random, load: float
) -> tuple[PoolDemand, ...]:
    free_accelerators = sum(n.free for n in snapshot.nodes)
    drafts = []
    for i in range(count):
        arch = rng.choices(ARCHETYPES, weights=(0.5, 0.4, 0.1))[0]
        n_variants = rng.choice((1, 2, 2, 3, 3))
        picks = rng.sample(arch.variants, k=min(n_variants, len(arch.variants)))
        variants = tuple(
            VariantDemand(
                name=name,
                family=family,
                product=product,
                topology=topology,
                accelerators=k,
                capacity_rps=round(rps * rng.uniform(0.85, 1.15), 2),
                preference=rng.choice((0, 0, 1)),
            )
            for name, family, product, topology, k, rps in sorted(picks)
        )
        families = {v.family for v in variants}
        share = 0.7 if len(families) >= 2 and rng.random() < 0.2 else 1.0
        drafts.append((i, arch, variants, share, rng.uniform(*arch.rps_range)))
    # scale demand to need about `load` x the free accelerators (each pool on its leanest variant)
    est = sum(
        rps * min(v.accelerators / v.capacity_rps for v in variants)
        for _, _, variants, _, rps in drafts
    )
    factor = load * free_accelerators / max(est, 1e-9)
    demands = []
    for i, arch, variants, share, rps in drafts:
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
            )
        )
    return tuple(demands)


# --- measurements --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], Plan], repeats: int) -> tuple[Plan, list[float]]:
    times = []
    plan = None
    for _ in range(repeats):
        began = time.perf_counter()
        plan = fn()
        times.append(time.perf_counter() - began)
    assert plan is not None
    return plan, times


def plan_figures(plan: Plan) -> dict[str, Any]:
    return {
        "cost_per_hour": round(plan.cost_per_hour, 2),
        "shortfall_rps": round(plan.shortfall_rps, 1),
        "pools_short": sum(1 for o in plan.outcomes.values() if o.shortfall_rps > 0),
        "replicas": sum(plan.replicas.values()),
    }


def node_to_lose(instance: Instance, plan: Plan) -> str:
    """A node in the node pool that holds most of the plan's replicas: a loss that matters."""
    busiest = Counter(k[2] for k, n in plan.replicas.items() for _ in range(n)).most_common(1)
    pool = busiest[0][0] if busiest else instance.snapshot.pools[0].name
    nodes = sorted(instance.snapshot.nodes_of(pool), key=lambda n: (-n.free, n.name))
    return nodes[0].name


def measure_instance(instance: Instance, repeats: int) -> dict[str, Any]:
    options = PlacementOptions()
    place(instance.snapshot, instance.demands, options=options)  # warm caches and imports
    plan, times = timed(lambda: place(instance.snapshot, instance.demands, options=options),
                        repeats)
    lost = node_to_lose(instance, plan)
    after = instance.snapshot.without_node(lost)
    replan, replan_times = timed(
        lambda: place(after, instance.demands, current=plan.replicas, options=options), repeats
    )
    tracemalloc.start()
    place(instance.snapshot, instance.demands, options=options)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the same plan with a larger budget: what the default budget costs in quality, if anything
    roomy, roomy_times = timed(lambda: place(instance.snapshot, instance.demands,
                                             options=PlacementOptions(time_budget_s=5.0)), 1)
    return {
        "size": instance.size,
        "solver": plan.solver,
        "plan_seconds": {"p50": round(percentile(times, 0.5), 3),
                         "p99": round(percentile(times, 0.99), 3), "runs": len(times)},
        "replan_after_node_loss_seconds": {"p50": round(percentile(replan_times, 0.5), 3),
                                           "p99": round(percentile(replan_times, 0.99), 3),
                                           "runs": len(replan_times)},
        "replan": {"solver": replan.solver, "moves": len(replan.moves),
                   "lost_node": lost, **plan_figures(replan)},
        "plan": plan_figures(plan),
        "plan_with_5s_budget": {"seconds": round(roomy_times[0], 3), **plan_figures(roomy)},
        "peak_traced_memory_mib": round(peak / 2**20, 1),
    }


def compare(instance: Instance, milp_seconds: float) -> dict[str, Any]:
    """Engine vs exact MILP vs greedy spill-over vs static single family, on one instance."""
    options = PlacementOptions()
    problem = compile_problem(instance.snapshot, instance.demands, None, options)
    engine, engine_times = timed(lambda: place(instance.snapshot, instance.demands,
                                               options=options), 3)
    counts = [0] * problem.n_options
    index = {info.key: info.index for info in problem.pools}
    for key, n in engine.replicas.items():
        o = problem.option_of(key, index)
        assert o is not None
        counts[o] = n
    began = time.perf_counter()
    exact = solve_milp(problem, time.perf_counter() + milp_seconds, start=counts)
    milp_time = time.perf_counter() - began
    greedy, greedy_times = timed(lambda: baselines.greedy_spillover(instance.snapshot,
                                                                   instance.demands), 3)
    static, static_times = timed(lambda: baselines.static_single_family(instance.snapshot,
                                                                        instance.demands), 3)
    engine_score, milp_score = score(problem, counts), score(problem, exact.counts)
    milp_cost = _cost(problem, exact.counts)
    same_levels = engine_score[:-2] == milp_score[:-2]
    return {
        "size": instance.size,
        "engine": {**plan_figures(engine), "seconds": round(statistics.median(engine_times), 3),
                   "solver": engine.solver, "objective_levels": engine_score[:-2]},
        "milp": {"cost_per_hour": round(milp_cost, 2), "seconds": round(milp_time, 2),
                 "proved_optimal": exact.optimal,
                 "cost_lower_bound": (round(exact.cost_bound, 2)
                                      if exact.cost_bound is not None else None),
                 "objective_levels": milp_score[:-2]},
        "engine_vs_milp_cost_percent": round(
            100 * (engine.cost_per_hour - milp_cost) / max(milp_cost, 1e-9), 3
        ),
        "same_coverage_and_resilience": same_levels,
        "greedy_spillover": {**plan_figures(greedy),
                             "seconds": round(statistics.median(greedy_times), 3)},
        "static_single_family": {**plan_figures(static),
                                 "seconds": round(statistics.median(static_times), 3)},
    }


def _cost(problem: Any, counts: list[int]) -> float:
    return float(sum(problem.opt_cost[o] * x for o, x in enumerate(counts)))


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, ~1 minute")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--load", type=float, default=0.35,
                        help="demand as a share of free accelerators (leanest variants)")
    args = parser.parse_args(argv)

    if args.quick:
        sizes = [(500, 40, 100)]
        repeats, milp_seconds, compare_seeds, library_seconds = 3, 15.0, [args.seed], 5.0
    else:
        sizes = [(500, 40, 100), (5000, 200, 1000)]
        repeats, milp_seconds, library_seconds = 11, 60.0, 30.0
        compare_seeds = [args.seed + i for i in range(5)]

    summary: dict[str, Any] = {"quick": args.quick, "seed": args.seed, "load": args.load,
                               "machine_load_average_at_start": os.getloadavg()[0],
                               "instances": [], "comparison": []}
    for nodes, node_pools, pools in sizes:
        log(f"timing {nodes} nodes / {node_pools} node pools / {pools} InferencePools ...")
        instance = generate(nodes, node_pools, pools, args.seed, args.load)
        summary["instances"].append(measure_instance(instance, repeats))
    for seed in compare_seeds:
        log(f"comparing with the MILP, seed {seed} ...")
        instance = generate(500, 40, 100, seed, args.load)
        summary["comparison"].append(compare(instance, milp_seconds))
    proved = [c for c in summary["comparison"]
              if c["milp"]["proved_optimal"] and c["same_coverage_and_resilience"]]
    summary["engine_vs_milp_where_proved_optimal"] = {
        "instances": len(proved),
        "max_cost_gap_percent": max((c["engine_vs_milp_cost_percent"] for c in proved),
                                    default=None),
        "mean_cost_gap_percent": (round(statistics.mean(c["engine_vs_milp_cost_percent"]
                                                        for c in proved), 3) if proved else None),
    }
    log("measuring MILP libraries on one comparison instance ...")
    summary["solvers"] = measure_milp_libraries(generate(500, 40, 100, args.seed, args.load),
                                                library_seconds)
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary["machine_load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(summary, indent=2, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
