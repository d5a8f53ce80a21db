"""`make bench-operator`: the operator at work on a 100+-node sandbox with 20 InferencePools.

Measures (1) time from operator start to every replica Ready, (2) latency from a spec change to
the Deployment updated (p50/p99 over 20 edits; target p99 <= 1 s), (3) API writes during 60 s of
steady state with nothing changing (target 0; counted by the operator and checked from outside by
resourceVersions). Prints one JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from bench.common import operator, poll, sandbox, say

# v6e has room for one surge replica per pool: template rollouts are make-before-break.
POOLS = {"h100": 30, "l4": 30, "v6e": 30, "trn2": 10, "inf2": 10}
MODELS = 20


def pools_file(directory: Path) -> Path:
    from inferpool.sandbox import pools as pool_desc

    desc = yaml.safe_load(pool_desc.default_text())
    for pool in desc["pools"]:
        pool["nodes"] = POOLS[pool["name"]]
    path = directory / "pools.yaml"
    path.write_text(yaml.safe_dump(desc))
    return path


def inference_pool(i: int) -> dict[str, Any]:
    big = i % 2 == 0
    template = {"spec": {"containers": [{"name": "server", "image": "vllm:1",
                                         "env": [{"name": "REVISION", "value": "0"}]}]}}
    variants = ([
        {"name": "h100", "accelerator": {"family": "nvidia",
                                         "product": "NVIDIA-H100-80GB-HBM3", "count": 4},
         "capacity": 12, "template": template},
        {"name": "v6e", "accelerator": {"family": "tpu", "type": "tpu-v6e-slice",
                                        "topology": "2x4", "count": 8},
         "capacity": 14, "template": template},
        {"name": "trn2", "accelerator": {"family": "neuron", "product": "trainium2",
                                         "count": 16}, "capacity": 20, "template": template},
    ] if big else [
        {"name": "l4", "accelerator": {"family": "nvidia", "product": "NVIDIA-L4", "count": 1},
         "capacity": 4, "template": template},
        {"name": "inf2", "accelerator": {"family": "neuron", "product": "inferentia2",
                                         "count": 2}, "capacity": 5, "template": template},
    ])
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": f"model-{i:02d}", "namespace": "bench"},
        "spec": {"model": f"bench/model-{i}", "replicas": {"min": 1, "max": 12},
                 "demand": {"fixed": 30.0 if big else 12.0, "targetUtilization": 0.8},
                 "resilience": {"maxFamilyShare": 0.75}, "variants": variants},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    args = parser.parse_args()
    summary: dict[str, Any] = {"nodes": sum(POOLS.values()), "inference_pools": MODELS}
    with tempfile.TemporaryDirectory() as tmp, sandbox("bench-operator",
                                                       pools_file(Path(tmp))) as cluster:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
        cluster.kubectl("create", "namespace", "bench")
        for i in range(MODELS):
            custom.create_namespaced_custom_object("inferpool.dev", "v1alpha1", "bench",
                                                   "inferencepools", inference_pool(i))

        def all_ready() -> bool:
            items = custom.list_namespaced_custom_object(
                "inferpool.dev", "v1alpha1", "bench", "inferencepools")["items"]
            return len(items) == MODELS and all(
                (st := p.get("status") or {}).get("desiredReplicas")
                and st.get("readyReplicas") == st.get("desiredReplicas")
                and st.get("observedGeneration") == p["metadata"]["generation"] for p in items)

        started = time.monotonic()
        with operator(cluster, Path(tmp), "--tick-seconds=15") as op:
            poll(all_ready, timeout=300, interval=0.2)
            summary["start_to_all_ready_seconds"] = round(time.monotonic() - started, 2)
            deployments = apps.list_namespaced_deployment("bench").items
            summary["deployments"] = len(deployments)
            summary["replicas"] = sum(d.spec.replicas for d in deployments)
            say(f"all Ready after {summary['start_to_all_ready_seconds']} s")

            latencies = []
            for rev in range(1, 21):
                name = f"model-{rev % MODELS:02d}"
                body = custom.get_namespaced_custom_object("inferpool.dev", "v1alpha1", "bench",
                                                           "inferencepools", name)
                for v in body["spec"]["variants"]:
                    v["template"]["spec"]["containers"][0]["env"][0]["value"] = str(rev)
                t0 = time.monotonic()
                custom.replace_namespaced_custom_object("inferpool.dev", "v1alpha1", "bench",
                                                        "inferencepools", name, body)

                def updated(n: str = name, r: int = rev) -> bool:
                    ds = [d for d in apps.list_namespaced_deployment(
                        "bench", label_selector=f"inferpool.dev/pool={n}").items]
                    return bool(ds) and all(
                        d.spec.template.spec.containers[0].env[0].value == str(r) for d in ds)

                poll(updated, timeout=30, interval=0.01)
                latencies.append(time.monotonic() - t0)
            latencies.sort()
            summary["spec_change_to_deployment_seconds"] = {
                "p50": round(statistics.median(latencies), 3),
                "p99": round(latencies[-1], 3), "samples": len(latencies),
                "target_p99": 1.0}
            poll(all_ready, timeout=120, interval=0.5)
            time.sleep(5)  # the last status writes of the edits land

            def versions() -> dict[str, str]:
                out = {f"ipool/{p['metadata']['name']}": p["metadata"]["resourceVersion"]
                       for p in custom.list_namespaced_custom_object(
                           "inferpool.dev", "v1alpha1", "bench", "inferencepools")["items"]}
                out.update({f"deploy/{d.metadata.name}": d.metadata.resource_version
                            for d in apps.list_namespaced_deployment("bench").items})
                return out

            before, start_line = versions(), len(op.log_lines())
            say(f"steady state for {args.steady_seconds:.0f} s")
            time.sleep(args.steady_seconds)
            after = versions()
            reconciles = [line for line in op.log_lines()[start_line:]
                          if line.get("event") == "reconciled"]
            summary["steady_state"] = {
                "seconds": args.steady_seconds,
                "reconciles": len(reconciles),
                "operator_api_writes": sum(int(line.get("writes", 0)) for line in reconciles),
                "objects_changed": sorted(k for k in before if before[k] != after.get(k)),
                "target_writes": 0,
            }
            phases = [line["phases_ms"] for line in reconciles if "phases_ms" in line]
            if phases:
                summary["steady_reconcile_ms_p50"] = {
                    k: round(statistics.median(p[k] for p in phases), 1) for k in phases[0]}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
