"""Figures of a simulation: a JSON summary and PNG plots.

Units: demand-minutes are requests/s x minutes (one minute of 1 rps of demand); the served
share counts, per model and step, min(demand, Ready capacity). Cost is USD, accrued per step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from inferpool.cluster import FAMILIES
from inferpool.simulate.engine import OFFLINE, SimulationResult
from inferpool.simulate.scenario import Outage, PriceChange, Stockout

TARGET_SERVED_PCT: Final = 99.9
TARGET_COST_OVER_BOUND_PCT: Final = 5.0
COLORS: Final = {"inferpool": "tab:blue", "static": "tab:green", "spill": "tab:orange",
                 OFFLINE: "tab:gray"}
FAMILY_COLORS: Final = {"nvidia": "#76b900", "tpu": "#4285f4", "neuron": "#ff9900"}


def summarize(result: SimulationResult) -> dict[str, Any]:
    sc = result.scenario
    step_min = sc.step_seconds / 60.0
    step_h = sc.step_seconds / 3600.0
    offline = result.runs.get(OFFLINE)
    offline_cost = sum(offline.cost_per_hour) * step_h if offline else None
    loose_cost = (sum(offline.extra_cost_per_hour["no_resilience"]) * step_h
                  if offline and "no_resilience" in offline.extra_cost_per_hour else None)
    policies: dict[str, Any] = {}
    for name, run in result.runs.items():
        per_model: dict[str, Any] = {}
        demand_total = served_total = 0.0
        short_minutes = 0.0
        worst = 0.0
        for model, demand in result.demand.items():
            served = [min(d, c) for d, c in zip(demand, run.capacity[model], strict=True)]
            missing = [d - s for d, s in zip(demand, served, strict=True)]
            d_sum, s_sum = sum(demand) * step_min, sum(served) * step_min
            minutes = sum(1 for x in missing if x > 1e-9) * step_min
            per_model[model] = {
                "served_pct": _pct(s_sum, d_sum),
                "unserved_demand_minutes": round(d_sum - s_sum, 1),
                "shortfall_minutes": round(minutes, 1),
                "max_shortfall_rps": round(max(missing, default=0.0), 1),
            }
            demand_total += d_sum
            served_total += s_sum
            short_minutes += minutes
            worst = max(worst, max(missing, default=0.0))
        cost = sum(run.cost_per_hour) * step_h
        entry: dict[str, Any] = {
            "served_pct": _pct(served_total, demand_total),
            "demand_minutes": round(demand_total, 1),
            "unserved_demand_minutes": round(demand_total - served_total, 1),
            "shortfall_model_minutes": round(short_minutes, 1),
            "max_shortfall_rps": round(worst, 1),
            "cost_usd": round(cost, 2),
            "cost_vs_offline_pct": _over(cost, offline_cost),
            "cost_vs_offline_without_resilience_pct": _over(cost, loose_cost),
            "per_model": per_model,
            "seconds": round(run.seconds, 2),
        }
        if name == OFFLINE:
            entry["solves"] = run.plans
            for mode, series in sorted(run.extra_cost_per_hour.items()):
                key = {"no_resilience": "cost_without_resilience_usd",
                       "full": "cost_at_full_utilization_usd"}.get(mode, f"cost_{mode}_usd")
                entry[key] = round(sum(series) * step_h, 2)
        else:
            entry.update({"moves": run.moves, "replica_starts": run.pods_started,
                          "plans": run.plans})
            if sc.elastic_pools:
                entry.update({"nodes_launched": run.nodes_launched,
                              "nodes_removed": run.nodes_removed})
            if name == "inferpool":
                entry["stockouts_detected"] = run.stockout_trips
        policies[name] = entry
    summary: dict[str, Any] = {
        "scenario": {
            "name": sc.name, "description": sc.description.strip(),
            "duration_hours": round(sc.duration / 3600.0, 2), "step_seconds": sc.step_seconds,
            "steps": sc.steps, "models": [m.name for m in sc.models],
            "node_pools": [p.name for p in sc.node_pools],
            "events": [_event(e) for e in sc.events],
        },
        "policies": policies,
    }
    ours = policies.get("inferpool")
    if ours is not None:
        targets: dict[str, Any] = {
            "served_pct_min": TARGET_SERVED_PCT,
            "inferpool_served_pct": ours["served_pct"],
            "served_met": ours["served_pct"] >= TARGET_SERVED_PCT,
        }
        if ours["cost_vs_offline_pct"] is not None:
            targets.update({
                "cost_over_offline_max_pct": TARGET_COST_OVER_BOUND_PCT,
                "inferpool_cost_over_offline_pct": ours["cost_vs_offline_pct"],
                "cost_met": ours["cost_vs_offline_pct"] <= TARGET_COST_OVER_BOUND_PCT,
            })
        summary["targets"] = targets
    return summary


def _over(cost: float, bound: float | None) -> float | None:
    return round(100.0 * (cost / bound - 1.0), 2) if bound else None


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 4) if whole > 0 else 100.0


def _event(e: Outage | Stockout | PriceChange) -> dict[str, Any]:
    if isinstance(e, PriceChange):
        return {"type": e.type, "pool": e.pool, "at_hours": round(e.at / 3600, 2),
                "price_per_accelerator_hour": e.price_per_accelerator_hour}
    return {"type": e.type, "pool": e.pool, "from_hours": round(e.from_ / 3600, 2),
            "to_hours": round(e.to / 3600, 2)}


def write_report(result: SimulationResult, out: Path, plots: bool = True) -> dict[str, Any]:
    """summary.json, and the plots unless `plots` is False; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    files = ["summary.json"]
    if plots:
        files += write_plots(result, out)
    summary["files"] = files
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def write_plots(result: SimulationResult, out: Path) -> list[str]:
    import matplotlib  # only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [t / 3600.0 for t in result.times]
    total_demand = _sum_series(result.demand.values(), len(hours))
    names = list(result.runs)
    written: list[str] = []

    # 1. demand vs Ready capacity, one panel per policy
    fig, axes = plt.subplots(len(names), 1, figsize=(13, 2.6 * len(names)), sharex=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        run = result.runs[name]
        capacity = _sum_series(run.capacity.values(), len(hours))
        served = [min(d, c) for d, c in zip(total_demand, capacity, strict=True)]
        _events(ax, result)
        ax.plot(hours, capacity, color=COLORS.get(name, "tab:purple"), lw=0.8,
                drawstyle="steps-post", label="Ready capacity")
        ax.plot(hours, total_demand, color="black", lw=0.6, drawstyle="steps-post",
                label="demand")
        ax.fill_between(hours, served, total_demand, step="post", color="red", alpha=0.6,
                        label="unserved")
        ax.set_ylabel("requests/s")
        ax.set_title(f"{name}: demand vs Ready capacity (all models)", loc="left", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("hours since start")
    fig.tight_layout()
    fig.savefig(out / "demand-vs-capacity.png", dpi=90)
    plt.close(fig)
    written.append("demand-vs-capacity.png")

    # 2. cost per hour over time; the legend carries the total
    fig, ax = plt.subplots(figsize=(13, 4))
    _events(ax, result)
    step_h = result.scenario.step_seconds / 3600.0
    for name in names:
        series = result.runs[name].cost_per_hour
        ax.plot(hours, series, color=COLORS.get(name, "tab:purple"), lw=0.8,
                drawstyle="steps-post", label=f"{name}: ${sum(series) * step_h:,.0f}")
    ax.set_ylabel("USD per hour")
    ax.set_xlabel("hours since start")
    ax.set_title("cost per hour (total in the legend)", loc="left", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=90)
    plt.close(fig)
    written.append("cost.png")

    # 3. inferpool's Ready replicas per family, stacked, one panel per model
    ours = result.runs.get("inferpool")
    if ours is not None:
        models = list(ours.ready)
        fig, axes = plt.subplots(len(models), 1, figsize=(13, 2.4 * len(models)), sharex=True,
                                 squeeze=False)
        for ax, model in zip(axes[:, 0], models, strict=True):
            _events(ax, result)
            ax.stackplot(hours, *[ours.ready[model][f] for f in FAMILIES],
                         labels=list(FAMILIES), colors=[FAMILY_COLORS[f] for f in FAMILIES],
                         step="post", alpha=0.85)
            ax.set_ylabel("Ready replicas")
            ax.set_title(f"inferpool, {model}: Ready replicas per accelerator family",
                         loc="left", fontsize=10)
            ax.legend(loc="upper right", fontsize=8)
        axes[-1, 0].set_xlabel("hours since start")
        fig.tight_layout()
        fig.savefig(out / "inferpool-families.png", dpi=90)
        plt.close(fig)
        written.append("inferpool-families.png")
    return written


def _sum_series(series: Sequence[Sequence[float]] | Any, n: int) -> list[float]:
    total = [0.0] * n
    for s in series:
        for i, v in enumerate(s):
            total[i] += v
    return total


def _events(ax: Any, result: SimulationResult) -> None:
    """Shade outages (grey) and stockouts (orange); mark price changes."""
    end = result.scenario.duration / 3600.0
    for e in result.scenario.events:
        if isinstance(e, PriceChange):
            ax.axvline(e.at / 3600.0, color="purple", lw=0.6, ls=":")
            continue
        color = "grey" if isinstance(e, Outage) else "orange"
        ax.axvspan(e.from_ / 3600.0, min(e.to / 3600.0, end), color=color, alpha=0.15, lw=0)


def table(summary: Mapping[str, Any]) -> str:
    """The summary as a few aligned lines for the terminal."""
    rows = [("policy", "served %", "cost USD", "vs offline", "vs offline w/o resilience",
             "short min", "moves", "starts")]
    for name, p in summary["policies"].items():
        vs = p.get("cost_vs_offline_pct")
        loose = p.get("cost_vs_offline_without_resilience_pct")
        rows.append((name, f"{p['served_pct']:.3f}", f"{p['cost_usd']:,.0f}",
                     "" if vs is None else f"{vs:+.1f}%",
                     "" if loose is None else f"{loose:+.1f}%",
                     f"{p['shortfall_model_minutes']:.0f}",
                     str(p.get("moves", "")), str(p.get("replica_starts", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    t = summary.get("targets")
    if t:
        lines.append(f"targets: served >= {t['served_pct_min']}%: "
                     f"{'met' if t['served_met'] else 'MISSED'}"
                     + (f"; cost <= offline +{t['cost_over_offline_max_pct']}%: "
                        f"{'met' if t['cost_met'] else 'MISSED'}" if "cost_met" in t else ""))
    return "\n".join(lines)
