"""`make bench-failover`: how fast serving capacity comes back after failures, side by side.

(a) what users run today: a plain Deployment pinned to the H100 node pool; (b) an InferencePool
with H100, TPU v6e and Trainium2 variants. The whole H100 pool fails; then a single node; then a
stockout. Prints one JSON summary on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

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
from inferpool.controller.settings import Settings

REPLICAS = 3
CAPACITY = 10.0  # req/s per replica, every variant
DEMAND = REPLICAS * CAPACITY


def variant(name: str, accelerator: dict[str, Any], cost: float) -> dict[str, Any]:
    return {"name": name, "accelerator": accelerator, "capacity": CAPACITY, "costPerHour": cost,
            "template": {"spec": {"containers": [{"name": "server", "image": "vllm:1"}]}}}


def inference_pool(name: str) -> dict[str, Any]:
    # H100 is the cheapest here, so before the failure both setups serve from the same pool.
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {
            "model": "bench/model", "replicas": {"min": 1, "max": 12},
            "demand": {"fixed": DEMAND, "targetUtilization": 1.0},
            "variants": [
                variant("h100", {"family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3",
                                 "count": 8}, 10),
                variant("v6e", {"family": "tpu", "type": "tpu-v6e-slice", "topology": "2x4",
                                "count": 8}, 20),
                variant("trn2", {"family": "neuron", "product": "trainium2", "count": 16}, 30),
            ],
        },
    }


def wait_not_ready(cluster: Cluster, nodes: list[str]) -> float:
    """Monotonic time at which all `nodes` stopped being Ready."""
    poll(lambda: not (set(nodes) & healthy_nodes(cluster)), timeout=60)
    return time.monotonic()


def time_to(cluster: Cluster, namespace: str, want: int, since: float, timeout: float
            ) -> float | None:
    def back() -> bool:
        return ready_pods(cluster, namespace, healthy_nodes(cluster)) >= want

    return None if poll(back, timeout) is None else round(time.monotonic() - since, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observe-seconds", type=float, default=60.0,
                        help="how long to wait for the plain Deployment to recover")
    parser.add_argument("--operator-args", default="",
                        help="extra operator flags, e.g. '--stockout-seconds=5 "
                             "--tick-seconds=5' (default: the operator's defaults)")
    args = parser.parse_args()
    flags = args.operator_args.split()
    settings = Settings.model_validate({
        f.removeprefix("--").split("=", 1)[0].replace("-", "_"): f.split("=", 1)[1]
        for f in flags if "=" in f})
    summary: dict[str, Any] = {"replicas": REPLICAS, "demand_rps": DEMAND,
                               "operator_args": flags or "defaults"}
    with tempfile.TemporaryDirectory() as tmp, sandbox("bench-failover") as cluster, \
            operator(cluster, Path(tmp), *flags):
        for ns in ("baseline", "inferpool"):
            cluster.kubectl("create", "namespace", ns)
        cluster.apply(plain_deployment("llm-h100", {"inferpool.dev/node-pool": "h100"}, REPLICAS,
                                       "nvidia.com/gpu", 8, image="vllm:1"), "baseline")
        cluster.apply(inference_pool("llm"), "inferpool")
        for ns in ("baseline", "inferpool"):
            poll(lambda n=ns: ready_pods(cluster, n, healthy_nodes(cluster)) >= REPLICAS, 90)
        say("both serving from H100; failing the whole H100 pool")

        h100 = [f"h100-{i}" for i in range(4)]
        cluster.sandbox("fail", "--pool", "h100")
        lost = wait_not_ready(cluster, h100)
        ours = time_to(cluster, "inferpool", REPLICAS, lost, timeout=60)
        theirs = time_to(cluster, "baseline", REPLICAS, lost, timeout=args.observe_seconds)
        summary["pool_loss"] = {
            "inferpool_seconds_to_capacity": ours, "target_seconds": 10,
            "plain_deployment_seconds_to_capacity": theirs,
            "plain_deployment_note": (
                f"not back within {args.observe_seconds:.0f} s: pinned to the failed pool, its "
                "pods wait for the 300 s eviction and then stay Pending" if theirs is None
                else "recovered"),
        }
        say(f"pool loss: inferpool {ours} s, plain Deployment {theirs}")
        cluster.sandbox("recover", "--pool", "h100")
        cluster.kubectl("delete", "namespace", "baseline", "--wait=false")
        # back on H100, make-before-break
        poll(lambda: ready_pods(cluster, "inferpool", {n for n in healthy_nodes(cluster)
                                                       if n.startswith("h100-")}) >= REPLICAS,
             120)

        say("single-node loss")
        pods = cluster.get("pods", "-n", "inferpool")["items"]
        victim = next(p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName"))
        cluster.sandbox("fail", victim)
        lost = wait_not_ready(cluster, [victim])
        one = time_to(cluster, "inferpool", REPLICAS, lost, timeout=60)
        summary["node_loss"] = {"seconds_to_replacement_ready": one, "target_seconds": 5}
        cluster.sandbox("recover", victim)
        say(f"node loss: {one} s")

        say("stockout of the H100 pool for a new model")
        cluster.sandbox("stockout", "--pool", "h100")
        cluster.kubectl("create", "namespace", "stockout")
        started = time.monotonic()
        cluster.apply(inference_pool("new"), "stockout")
        bound = settings.stockout_seconds + settings.tick_seconds
        spill = time_to(cluster, "stockout", REPLICAS, started, timeout=bound + 60)
        summary["stockout"] = {"seconds_to_spilled_and_ready": spill,
                               "target_seconds": bound, "bound": "stockout-seconds + one tick"}
        say(f"stockout: {spill} s")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
