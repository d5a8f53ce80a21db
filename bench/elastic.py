"""`make bench-elastic`: elastic pools with a real Karpenter (its KWOK provider), side by side
with what users run today, plain Deployments on Karpenter NodePools. One JSON summary on
stdout (progress on stderr).

(a) Scale from zero: no accelerator node exists; the README's example InferencePool and plain
    Deployments of the same replicas are applied at once; seconds until all are Ready.
(b) Stockout while demand rises: both serve from H100; the H100 offering becomes unavailable
    (an insufficient-capacity stockout) and demand doubles. The baseline scales its H100
    Deployment (one Deployment per family, as an HPA would); the InferencePool's demand rises.
    Seconds until the new demand is served; the cluster autoscaler's 15 min
    `max-node-provision-time` is the published reference for how long a pod waits there before
    its node group counts as failed.
(c) A day on elastic pools (the simulator, examples/scenarios/day-elastic.yaml): cost, demand
    served and nodes launched / consolidated, inferpool beside one autoscaled Deployment per
    model (`static`) on the same Karpenter-like autoscaler.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    Cluster,
    healthy_nodes,
    operator,
    plain_deployment,
    poll,
    ready_pods,
    sandbox,
    say,
)
from inferpool.controller import autoscaler
from inferpool.simulate import load_scenario, simulate, summarize

REPO = Path(__file__).resolve().parents[1]
TICK_SECONDS = 5
CLUSTER_AUTOSCALER_PROVISION_SECONDS = 900  # its --max-node-provision-time default


def plain(name: str, node_pool: str, replicas: int, resource: str, count: int
          ) -> dict[str, Any]:
    return plain_deployment(name, {"karpenter.sh/nodepool": node_pool}, replicas, resource,
                            count)


def serving(cluster: Cluster, namespace: str, want: int) -> bool:
    return ready_pods(cluster, namespace, healthy_nodes(cluster)) >= want


def scale_from_zero(cluster: Cluster) -> dict[str, Any]:
    for ns in ("zero-baseline", "zero-inferpool"):
        cluster.kubectl("create", "namespace", ns)
    example = yaml.safe_load((REPO / "examples" / "llama-8b.yaml").read_text())
    started = time.monotonic()
    cluster.apply(example, "zero-inferpool")
    # the replicas the operator places for it (status checked below): 4 on L4, 2 on Inferentia2
    cluster.apply(plain("llm-l4", "l4", 4, "nvidia.com/gpu", 1),
                  "zero-baseline")
    cluster.apply(plain("llm-inf2", "inf2", 2, "aws.amazon.com/neuron", 2), "zero-baseline")
    times: dict[str, float | None] = {"zero-baseline": None, "zero-inferpool": None}
    deadline = started + 300
    while time.monotonic() < deadline and None in times.values():
        for ns, at in times.items():
            if at is None and serving(cluster, ns, 6):
                times[ns] = round(time.monotonic() - started, 1)
        time.sleep(0.5)
    status = cluster.get("ipool", "llama-8b", "-n", "zero-inferpool")["status"]
    placed = {f"{r['variant']}@{r['nodePool']}": r["desired"] for r in status["placement"]}
    ours, theirs = times["zero-inferpool"], times["zero-baseline"]
    say(f"scale from zero: inferpool {ours} s, plain Deployments {theirs} s ({placed})")
    return {"inferpool_seconds_to_ready": ours, "plain_deployments_seconds_to_ready": theirs,
            "ratio": round(ours / theirs, 2) if ours and theirs else None,
            "inferpool_placement": placed, "replicas": 6}


def spill_pool(demand: float) -> dict[str, Any]:
    def variant(name: str, accelerator: dict[str, Any], capacity: float) -> dict[str, Any]:
        return {"name": name, "accelerator": accelerator, "capacity": capacity,
                "template": {"spec": {"containers": [{"name": "s", "image": "stand-in"}]}}}
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": "llm"},
        "spec": {
            "model": "m", "replicas": {"min": 1, "max": 8},
            "demand": {"fixed": demand, "targetUtilization": 1.0},
            # per req/s: H100 8 x $11.03 / 100 = $0.88; v6e 8 x $2.70 / 20 = $1.08
            "variants": [
                variant("h100", {"family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3",
                                 "count": 8}, 100.0),
                variant("v6e", {"family": "tpu", "type": "tpu-v6e-slice", "topology": "2x4",
                                "count": 8}, 20.0),
            ],
        },
    }


def stockout_while_demand_rises(cluster: Cluster, observe: float) -> dict[str, Any]:
    for ns in ("rise-baseline", "rise-inferpool"):
        cluster.kubectl("create", "namespace", ns)
    cluster.apply(spill_pool(100.0), "rise-inferpool")
    cluster.apply(plain("llm-h100", "h100", 1, "nvidia.com/gpu", 8),
                  "rise-baseline")
    for ns in ("rise-baseline", "rise-inferpool"):
        poll(lambda n=ns: serving(cluster, n, 1), 300, interval=1)
    say("both serve from H100; its offering becomes unavailable and demand doubles")
    cluster.sandbox("offering", "unavailable", "h100")
    started = time.monotonic()
    cluster.kubectl("patch", "ipool", "llm", "-n", "rise-inferpool", "--type=merge", "-p",
                    json.dumps({"spec": {"demand": {"fixed": 160.0}}}))  # 1 H100 + 3 v6e
    cluster.kubectl("scale", "deployment", "llm-h100", "-n", "rise-baseline", "--replicas=2")

    def capacity() -> float:
        status = cluster.get("ipool", "llm", "-n", "rise-inferpool").get("status", {})
        return float(status.get("capacity") or 0.0)
    ours = poll(lambda: capacity() >= 160.0, 300, interval=0.5)
    ours_s = round(time.monotonic() - started, 1) if ours else None
    theirs = poll(lambda: serving(cluster, "rise-baseline", 2), observe, interval=1)
    theirs_s = round(time.monotonic() - started, 1) if theirs else None
    events = cluster.get("events", "-n", "rise-inferpool")["items"]
    said = sorted(e.get("firstTimestamp") or e["lastTimestamp"] for e in events
                  if e.get("reason") in autoscaler.CANNOT_REASONS and (
                      (e.get("source") or {}).get("component") in autoscaler.AUTOSCALERS
                      or e.get("reportingComponent") in autoscaler.AUTOSCALERS))
    spilled = sorted(d["metadata"]["creationTimestamp"] for d in cluster.get(
        "deployments", "-n", "rise-inferpool")["items"] if "v6e" in d["metadata"]["name"])
    after_report = None
    if said and spilled:
        after_report = (_stamp(spilled[0]) - _stamp(said[0])).total_seconds()
    cluster.sandbox("offering", "available", "h100")
    say(f"stockout: inferpool {ours_s} s, plain Deployment {theirs_s} s")
    return {
        "inferpool_seconds_to_serve_new_demand": ours_s,
        "inferpool_seconds_from_karpenter_report_to_spill": after_report,
        "tick_seconds": TICK_SECONDS,
        "plain_deployment_seconds_to_serve_new_demand": theirs_s,
        "plain_deployment_note": (
            f"not served within {observe:.0f} s: its new pod waits for an H100 node Karpenter "
            "cannot launch, and nothing moves it to another family" if theirs_s is None
            else "served"),
        "cluster_autoscaler_reference_seconds": CLUSTER_AUTOSCALER_PROVISION_SECONDS,
    }


def _stamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observe-seconds", type=float, default=120.0,
                        help="how long to wait for the plain Deployment to serve the new demand")
    args = parser.parse_args()
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            sandbox("bench-elastic", autoscaler="karpenter") as cluster, \
            operator(cluster, Path(tmp), f"--tick-seconds={TICK_SECONDS}"):
        cluster.kubectl("apply", "-f", str(REPO / "examples" / "elastic" /
                                           "accelerator-pools.yaml"))
        summary["scale_from_zero"] = scale_from_zero(cluster)
        summary["stockout_while_demand_rises"] = stockout_while_demand_rises(
            cluster, args.observe_seconds)
    summary["day_on_elastic_pools"] = day_on_elastic_pools()
    print(json.dumps(summary, indent=2))


def day_on_elastic_pools() -> dict[str, Any]:
    scenario = load_scenario(REPO / "examples" / "scenarios" / "day-elastic.yaml")
    policies = summarize(simulate(scenario, ("inferpool", "static", "offline")))["policies"]
    keys = ("served_pct", "cost_usd", "cost_vs_offline_pct", "nodes_launched", "nodes_removed",
            "moves")
    out: dict[str, Any] = {name: {k: policies[name].get(k) for k in keys}
                           for name in ("inferpool", "static")}
    out["cost_ratio_inferpool_to_static"] = round(
        policies["inferpool"]["cost_usd"] / policies["static"]["cost_usd"], 3)
    say(f"day on elastic pools: {out}")
    return out


if __name__ == "__main__":
    main()
