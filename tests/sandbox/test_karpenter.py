"""A real Karpenter (its KWOK provider) in the sandbox: elastic pools start at zero nodes, grow
when pods ask for them, and an unavailable offering launches nothing until it is back.

The sandbox here is this module's own (`--autoscaler karpenter`, the built-in elastic pools);
plain Deployments stand in for what the operator will write, so these tests check the
autoscaler the operator is to work with, not the operator."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferpool.sandbox import binaries, control, karpenter
from inferpool.sandbox.state import SandboxState
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def elastic() -> Iterator[tuple[Sandbox, SandboxState]]:
    bins = binaries.ensure(lambda _m: None)
    karpenter.binary(lambda message: print(message, flush=True))  # built once, cached
    reuse = os.environ.get("INFERPOOL_TEST_KARPENTER_SANDBOX")  # one already up, to iterate
    name = reuse or f"karp-{os.getpid()}"
    state = (control.require(reuse) if reuse
             else control.up(name, log=lambda _m: None, autoscaler="karpenter"))
    try:
        yield (Sandbox(name=name, kubeconfig=Path(state.kubeconfig),
                       kubectl_path=bins["kubectl"], helm_path=bins["helm"]), state)
    finally:
        if not reuse:
            control.down(name, log=lambda _m: None)


def gpu_deployment(name: str, pool: str, replicas: int, gpus: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {"inferpool.dev/node-pool": pool},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}],
                    "containers": [{"name": "server", "image": "stand-in",
                                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
                },
            },
        },
    })


def ready_pods(sandbox: Sandbox, app: str) -> list[dict[str, Any]]:
    pods = sandbox.get_json("pods", "-n", "default", "-l", f"app={app}")["items"]
    return [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in p.get("status", {}).get("conditions", []))]


def pool_nodes(sandbox: Sandbox, pool: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = sandbox.get_json(
        "nodes", "-l", f"karpenter.sh/nodepool={pool}")["items"]
    return items


@pytest.mark.timeout(1200)  # the module's fixture may build Karpenter first (about 6 min)
def test_an_elastic_pool_grows_from_zero_nodes_when_pods_ask_for_it(
        elastic: tuple[Sandbox, SandboxState]) -> None:
    sandbox, _ = elastic
    assert pool_nodes(sandbox, "l4") == []  # nothing exists before a pod asks

    sandbox.kubectl("apply", "-f", "-", input=gpu_deployment("on-l4", "l4", 2, 4))

    wait_for(lambda: len(ready_pods(sandbox, "on-l4")) == 2, timeout=240, interval=2,
             what="both replicas Ready on nodes Karpenter launched")
    nodes = pool_nodes(sandbox, "l4")
    assert len(nodes) == 2  # 4 GPUs each: one node per replica
    for node in nodes:
        assert node["metadata"]["labels"]["inferpool.dev/node-pool"] == "l4"
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in \
            node["spec"]["taints"]


@pytest.mark.timeout(600)
def test_an_unavailable_offering_launches_nothing_until_it_is_back(
        elastic: tuple[Sandbox, SandboxState]) -> None:
    sandbox, state = elastic
    karpenter.set_available(state, "h100", False, log=lambda _m: None)

    sandbox.kubectl("apply", "-f", "-", input=gpu_deployment("on-h100", "h100", 1, 8))

    def karpenter_says_it_cannot() -> list[dict[str, Any]]:
        events = sandbox.get_json("events", "-n", "default",
                                  "--field-selector=reason=FailedScheduling")["items"]
        return [e for e in events if e["involvedObject"]["name"].startswith("on-h100")
                and "karpenter" in json.dumps(e.get("source", {}) or e.get(
                    "reportingComponent", "")) + e.get("reportingComponent", "")]
    said = wait_for(karpenter_says_it_cannot, timeout=120, interval=2,
                    what="Karpenter's FailedScheduling Event on the pending pod")
    print("Karpenter:", said[0]["message"])
    assert pool_nodes(sandbox, "h100") == []
    assert ready_pods(sandbox, "on-h100") == []

    karpenter.set_available(state, "h100", True, log=lambda _m: None)
    wait_for(lambda: len(ready_pods(sandbox, "on-h100")) == 1, timeout=240, interval=2,
             what="the replica Ready once the offering is back")
    assert len(pool_nodes(sandbox, "h100")) == 1
