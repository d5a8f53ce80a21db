"""Slim views (as the operator keeps them, controller/views.py) of a small fake cluster, for the
metrics and `inferpool plan/status` tests: 2 H100 nodes (8 GPUs) and 2 TPU v6e 2x4 nodes."""

from __future__ import annotations

from typing import Any

H100 = {"name": "h100", "accelerator": {"family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3",
                                         "count": 8}, "capacity": 10, "costPerHour": 40}
V6E = {"name": "v6e", "accelerator": {"family": "tpu", "type": "tpu-v6e-slice",
                                       "topology": "2x4", "count": 8},
       "capacity": 10, "costPerHour": 20}


def node(name: str, pool: str, *, ready: bool = True) -> dict[str, Any]:
    if pool == "h100":
        labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        resource, taint = "nvidia.com/gpu", "nvidia.com/gpu"
    else:
        labels = {"cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
                  "cloud.google.com/gke-tpu-topology": "2x4"}
        resource, taint = "google.com/tpu", "google.com/tpu"
    return {
        "metadata": {"name": name, "labels": {**labels, "inferpool.dev/node-pool": pool},
                     "deletionTimestamp": None},
        "spec": {"unschedulable": False, "taints": [{"key": taint, "effect": "NoSchedule"}]},
        "status": {"allocatable": {resource: "8"},
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


NODES = [node("h100-0", "h100"), node("h100-1", "h100"), node("v6e-0", "v6e"),
         node("v6e-1", "v6e")]


def ipool(name: str, demand: float, variants: list[dict[str, Any]], *, namespace: str = "serving",
          min_: int = 1, max_: int = 10, max_family_share: float = 1.0,
          status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                     "generation": 1},
        "spec": {"model": "test/model", "replicas": {"min": min_, "max": max_},
                 "demand": {"fixed": float(demand), "targetUtilization": 1.0},
                 "resilience": {"maxFamilyShare": max_family_share},
                 "variants": [{**v, "template": {"spec": {"containers": [
                     {"name": "server", "image": "registry.local/vllm:1"}]}}}
                     for v in variants]},
    }
    if status is not None:
        body["status"] = status
    return body


def deployment(pool: str, variant: str, node_pool: str, family: str, replicas: int,
               ready: int | None = None, namespace: str = "serving") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{pool}-{variant}-{node_pool}", "namespace": namespace,
                     "resourceVersion": "1",
                     "labels": {"inferpool.dev/pool": pool, "inferpool.dev/variant": variant,
                                "inferpool.dev/node-pool": node_pool,
                                "inferpool.dev/accelerator": family,
                                "app.kubernetes.io/managed-by": "inferpool"},
                     "ownerReferences": [{"apiVersion": "inferpool.dev/v1alpha1",
                                          "kind": "InferencePool", "name": pool,
                                          "uid": f"uid-{pool}", "controller": True}]},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": replicas if ready is None else ready},
    }


def pod(name: str, pool: str, variant: str, node_pool: str, node_name: str | None,
        resource: str, *, namespace: str = "serving", created: str = "2026-01-01T00:00:00Z",
        unschedulable: bool = False) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [
        {"type": "PodScheduled", "status": "False" if unschedulable else "True",
         "reason": "Unschedulable" if unschedulable else None},
        {"type": "Ready", "status": "False" if unschedulable else "True", "reason": None}]
    return {
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"inferpool.dev/pool": pool, "inferpool.dev/variant": variant,
                                "inferpool.dev/node-pool": node_pool},
                     "creationTimestamp": created, "deletionTimestamp": None},
        "spec": {"nodeName": node_name, "initContainers": [], "containers": [
            {"name": "server", "resources": {"limits": {resource: "8"},
                                             "requests": {resource: "8"}}}]},
        "status": {"phase": "Pending" if unschedulable else "Running",
                   "conditions": conditions, "waiting": []},
    }


def snapshot_doc(inference_pools: list[dict[str, Any]],
                 deployments: list[dict[str, Any]] | None = None,
                 pods: list[dict[str, Any]] | None = None,
                 nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A document shaped like the file `inferpool snapshot` writes."""
    return {"kind": "InferpoolClusterSnapshot", "version": 1,
            "capturedAt": "2026-01-01T00:10:00+00:00",
            "nodes": NODES if nodes is None else nodes, "pods": pods or [],
            "accelerator_pools": [], "inference_pools": inference_pools,
            "deployments": deployments or []}
