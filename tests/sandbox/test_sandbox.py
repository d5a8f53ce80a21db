"""The sandbox is a real control plane: scheduling, taints, node failure and deletion behave as
in a cluster with real accelerator nodes."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from inferpool.sandbox import control, pools
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox

FAMILY_RESOURCE = {"nvidia": "nvidia.com/gpu", "tpu": "google.com/tpu",
                   "neuron": "aws.amazon.com/neuron"}


def deployment(name: str, resource: str, count: int, replicas: int = 1,
               tolerate: str | None = None, node_pool: str | None = None) -> str:
    spec: dict[str, Any] = {
        "containers": [{"name": "server", "image": "registry.local/server:1",
                        "resources": {"limits": {resource: str(count)}}}],
    }
    if tolerate:
        spec["tolerations"] = [{"key": tolerate, "operator": "Exists", "effect": "NoSchedule"}]
    if node_pool:
        spec["nodeSelector"] = {pools.POOL_LABEL: node_pool}
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    })


def pods(sandbox: Sandbox, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = sandbox.get_json("pods", "-n", namespace, "-l",
                                                   f"app={app}")["items"]
    return items


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def node_condition(sandbox: Sandbox, name: str) -> str:
    node = sandbox.get_json("node", name)
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


def test_every_family_is_listed_with_allocatable_accelerators(sandbox: Sandbox) -> None:
    nodes = sandbox.get_json("nodes")["items"]
    desc = pools.load()
    assert len(nodes) == sum(p.nodes for p in desc.pools)
    seen: dict[str, int] = {}
    for node in nodes:
        pool = desc.pool(node["metadata"]["labels"][pools.POOL_LABEL])
        resource = FAMILY_RESOURCE[pool.family]
        assert node["status"]["allocatable"][resource] == str(pool.accelerators)
        seen[pool.family] = seen.get(pool.family, 0) + int(node["status"]["allocatable"][resource])
    assert seen == {"nvidia": 4 * 8 + 4 * 4, "tpu": 4 * 8, "neuron": 2 * 16 + 2 * 12}


def test_eight_gpu_deployment_lands_on_an_h100_node_and_is_ready(
    sandbox: Sandbox, namespace: str
) -> None:
    sandbox.kubectl("apply", "-n", namespace, "-f", "-",
                    input=deployment("big", "nvidia.com/gpu", 8, tolerate="nvidia.com/gpu"))
    pod = wait_for(lambda: next((p for p in pods(sandbox, namespace, "big") if is_ready(p)), None),
                   timeout=60, what="the 8-GPU pod Ready")
    assert pod["spec"]["nodeName"].startswith("h100-")
    assert pod["status"]["phase"] == "Running"


def test_tpu_pod_without_toleration_stays_pending_with_scheduler_reason(
    sandbox: Sandbox, namespace: str
) -> None:
    sandbox.kubectl("apply", "-n", namespace, "-f", "-",
                    input=deployment("no-toleration", "google.com/tpu", 8))

    def unschedulable_message() -> str | None:
        for pod in pods(sandbox, namespace, "no-toleration"):
            for cond in pod.get("status", {}).get("conditions", []):
                if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return str(cond["message"])
        return None

    message = wait_for(unschedulable_message, timeout=60, what="an Unschedulable condition")
    # Every node carries some accelerator taint; none of them is tolerated.
    assert "untolerated taint" in message
    assert all(p["status"]["phase"] == "Pending" for p in pods(sandbox, namespace, "no-toleration"))


def test_failed_node_goes_not_ready_within_grace_period_and_is_tainted(
    sandbox: Sandbox,
) -> None:
    node = "inf2-1"
    inferpool_sandbox(sandbox, "fail", node)
    try:
        wait_for(lambda: node_condition(sandbox, node) != "True",
                 timeout=control.NODE_MONITOR_GRACE_SECONDS + 10, what=f"{node} not Ready")
        taints = wait_for(lambda: sandbox.get_json("node", node)["spec"].get("taints"),
                          timeout=10, what="taints")
        assert any(t["key"] == "node.kubernetes.io/unreachable" for t in taints)
    finally:
        inferpool_sandbox(sandbox, "recover", node)
    wait_for(lambda: node_condition(sandbox, node) == "True", timeout=30,
             what=f"{node} Ready again")


def test_deleting_a_pool_leaves_its_pods_unscheduled(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=deployment(
        "on-trn2", "aws.amazon.com/neuron", 16, replicas=2, tolerate="aws.amazon.com/neuron",
        node_pool="trn2"))
    wait_for(lambda: sum(is_ready(p) for p in pods(sandbox, namespace, "on-trn2")) == 2,
             timeout=60, what="two Trainium2 pods Ready")
    inferpool_sandbox(sandbox, "delete", "--pool", "trn2")
    try:
        def all_pending() -> bool:
            current = pods(sandbox, namespace, "on-trn2")
            return len(current) == 2 and all(
                not p["spec"].get("nodeName") and p["status"]["phase"] == "Pending"
                for p in current)

        wait_for(all_pending, timeout=90, what="replacement pods Pending with no node")
    finally:
        inferpool_sandbox(sandbox, "recover", "--pool", "trn2")
    wait_for(lambda: all(node_condition(sandbox, n) == "True" for n in ("trn2-0", "trn2-1")),
             timeout=30, what="trn2 nodes back")


def test_second_up_with_the_same_name_says_it_already_runs(sandbox: Sandbox) -> None:
    done = inferpool_sandbox(sandbox, "up")
    assert "already runs" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(sandbox.kubeconfig)


def inferpool_sandbox(sandbox: Sandbox, action: str, *args: str
                      ) -> subprocess.CompletedProcess[str]:
    return sandbox.inferpool("sandbox", action, "--name", sandbox.name, *args)
