"""The plan the planner applies must be one the scheduler can bind: per-node room as the
scheduler sees it (our running pods where they run, other pods' accelerators, CPU and memory,
taints), not the engine's per-pool re-packing."""

from __future__ import annotations

from typing import Any

from inferpool.controller import binding, planning
from inferpool.controller.settings import Settings
from inferpool.k8s import deployments as dep
from tests.unit.test_snapshot import node

SETTINGS = Settings()


def trn2(name: str, **extra: Any) -> dict[str, Any]:
    body = node(name, {"eks.amazonaws.com/nodegroup": "trn2",
                       "node.kubernetes.io/instance-type": "trn2.48xlarge"},
                {"aws.amazon.com/neuron": "16", "cpu": "192", "memory": "2048Gi"})
    body["spec"].update(extra)
    return body


def h100(name: str) -> dict[str, Any]:
    return node(name, {"cloud.google.com/gke-nodepool": "h100",
                       "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                {"nvidia.com/gpu": "8", "cpu": "208", "memory": "1872Gi"})


def variant(name: str, family: str, count: int, cost: float,
            **template_spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "s", "image": "i"}
    if "cpu" in template_spec:
        container["resources"] = {"requests": {"cpu": template_spec.pop("cpu")}}
    return {"name": name, "accelerator": {"family": family, "count": count}, "capacity": 10.0,
            "costPerHour": cost,
            "template": {"spec": {"containers": [container], **template_spec}}}


def ipool(name: str, replicas: int, *variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": "1"},
        "spec": {"model": "m", "replicas": {"min": replicas, "max": replicas},
                 "demand": {"fixed": 1}, "variants": list(variants)},
    }


def our_pod(pool: str, variant_: str, node_pool: str, node_name: str | None,
            resources: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {
            "inferpool.dev/pool": pool, "inferpool.dev/variant": variant_,
            "inferpool.dev/node-pool": node_pool}},
        "spec": {"nodeName": node_name, "containers": [
            {"name": "s", "resources": {"limits": resources, "requests": resources}}]},
        "status": {"phase": "Running" if node_name else "Pending"},
    }


def deployment(pool: str, variant_: str, node_pool: str, replicas: int) -> dict[str, Any]:
    workload = dep.Workload(pool=pool, namespace="ns", owner_uid=pool, variant=variant_,
                            family="neuron", accelerators=8, template={"spec": {}})
    body = dep.build(workload, node_pool, {}, replicas)
    return {**body, "status": {"readyReplicas": replicas}}


def plan_for(views: dict[str, Any]) -> tuple[dict[tuple[str, str, str], int], binding.Binding]:
    inputs = planning.read_cluster(views)
    call = planning.engine_call(inputs, {p.key: 1.0 for p in inputs.pools}, SETTINGS)
    plan, checked = planning.bindable_plan(inputs, call, SETTINGS)
    return dict(plan.replicas), checked


def test_our_running_pods_fragment_the_nodes_the_engine_would_repack() -> None:
    # "spread" has one 8-device replica on each trn2 node: 16 devices free in the pool, but
    # no node has 16 free, so the 16-device replica of "big" cannot bind on trn2
    spread = ipool("spread", 2, variant("trn2", "neuron", 8, 1.0))
    big = ipool("big", 1, variant("trn2", "neuron", 16, 1.0), variant("h100", "nvidia", 8, 5.0))
    views = {
        "nodes": [trn2("trn2-0"), trn2("trn2-1"), h100("h100-0")],
        "pods": [our_pod("spread", "trn2", "trn2", f"trn2-{i}",
                         {"aws.amazon.com/neuron": "8"}, f"s{i}") for i in range(2)],
        "inference_pools": [spread, big],
        "deployments": [deployment("spread", "trn2", "trn2", 2)],
    }
    replicas, checked = plan_for(views)
    assert checked.binds, checked.unbound
    assert replicas == {("ns/spread", "trn2", "trn2"): 2, ("ns/big", "h100", "h100"): 1}


def test_cpu_the_pods_request_limits_a_node_with_free_accelerators() -> None:
    # another pod holds 1 device and 190 of the 192 CPUs of trn2-0: 15 devices look free,
    # but a replica asking 16 CPUs does not fit there
    other = {"metadata": {"name": "o", "namespace": "x", "labels": {}},
             "spec": {"nodeName": "trn2-0", "containers": [{"name": "c", "resources": {
                 "requests": {"aws.amazon.com/neuron": "1", "cpu": "190"}}}]},
             "status": {"phase": "Running"}}
    pool = ipool("cpu", 1, variant("trn2", "neuron", 8, 1.0, cpu="16"),
                 variant("h100", "nvidia", 8, 5.0, cpu="16"))
    views = {"nodes": [trn2("trn2-0"), h100("h100-0")], "pods": [other],
             "inference_pools": [pool]}
    replicas, checked = plan_for(views)
    assert checked.binds
    assert replicas == {("ns/cpu", "h100", "h100"): 1}


def test_a_taint_the_pods_do_not_tolerate_keeps_them_off_the_node() -> None:
    tainted = trn2("trn2-0", taints=[{"key": "dedicated", "value": "batch",
                                      "effect": "NoSchedule"}])
    plain = ipool("plain", 1, variant("trn2", "neuron", 8, 1.0),
                  variant("h100", "nvidia", 8, 5.0))
    views = {"nodes": [tainted, h100("h100-0")], "inference_pools": [plain]}
    assert plan_for(views)[0] == {("ns/plain", "h100", "h100"): 1}
    tolerant = ipool("plain", 1, variant("trn2", "neuron", 8, 1.0, tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]),
        variant("h100", "nvidia", 8, 5.0))
    views["inference_pools"] = [tolerant]
    assert plan_for(views)[0] == {("ns/plain", "trn2", "trn2"): 1}


def test_pending_pods_of_a_placement_are_new_pods_to_bind() -> None:
    # 2 planned, 1 bound and 1 Pending on a full node pool: the Pending one needs room too
    views = {
        "nodes": [trn2("trn2-0"), h100("h100-0")],
        "pods": [our_pod("p", "trn2", "trn2", "trn2-0", {"aws.amazon.com/neuron": "8"}, "a"),
                 {"metadata": {"name": "o", "namespace": "x", "labels": {}},
                  "spec": {"nodeName": "trn2-0", "containers": [{"name": "c", "resources": {
                      "requests": {"aws.amazon.com/neuron": "8"}}}]},
                  "status": {"phase": "Running"}},
                 our_pod("p", "trn2", "trn2", None, {"aws.amazon.com/neuron": "8"}, "b")],
        "inference_pools": [ipool("p", 2, variant("trn2", "neuron", 8, 1.0),
                                  variant("h100", "nvidia", 8, 5.0))],
        "deployments": [deployment("p", "trn2", "trn2", 2)],
    }
    replicas, checked = plan_for(views)
    assert checked.binds
    assert replicas == {("ns/p", "trn2", "trn2"): 1, ("ns/p", "h100", "h100"): 1}


def test_tolerations_follow_kubernetes_rules() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert binding.tolerates([{"operator": "Exists"}], taint)
    assert binding.tolerates([{"key": "k", "operator": "Exists"}], taint)
    assert binding.tolerates([{"key": "k", "value": "v"}], taint)
    assert not binding.tolerates([{"key": "k", "value": "w"}], taint)
    assert not binding.tolerates([{"key": "k", "operator": "Exists", "effect": "NoExecute"}],
                                 taint)
    assert not binding.tolerates([], taint)
