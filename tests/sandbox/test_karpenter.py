"""A real Karpenter (its KWOK provider) in the sandbox: elastic pools start at zero nodes, grow
when pods ask for them, and an unavailable offering launches nothing until it is back.

The sandbox here is this module's own (`--autoscaler karpenter`, the built-in elastic pools).
The first tests check the autoscaler itself with plain Deployments; the last ones run the
operator on it with the AcceleratorPools of examples/elastic/: the README's example becomes
Ready on nodes Karpenter launches, and a stockout Karpenter reports spills at once, comes back
after the offering does, and the node it leaves is consolidated away."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferpool.sandbox import binaries, control, karpenter
from inferpool.sandbox.state import SandboxState
from tests.operator_process import OperatorProcess, running_operator
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


# -- the operator on elastic pools ---------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
TICK_SECONDS = 5
RETRY_SECONDS = 30


@pytest.fixture(scope="module")
def operator(elastic: tuple[Sandbox, SandboxState], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    sandbox, _ = elastic
    ops = running_operator(sandbox, tmp_path_factory.mktemp("elastic"), "elastic",
                           f"--tick-seconds={TICK_SECONDS}",
                           f"--retry-backoff-seconds={RETRY_SECONDS}")
    op = next(ops)
    sandbox.kubectl("apply", "-f", str(REPO / "examples" / "elastic" / "accelerator-pools.yaml"))
    yield op
    next(ops, None)  # stops it


@pytest.fixture
def workload_ns(elastic: tuple[Sandbox, SandboxState]) -> Iterator[str]:
    sandbox, _ = elastic
    name = f"elastic-{uuid.uuid4().hex[:5]}"
    sandbox.kubectl("create", "namespace", name)
    yield name
    sandbox.kubectl("delete", "ipool", "--all", "-n", name, "--wait=true", check=False)
    sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


def ready_condition(sandbox: Sandbox, ns: str, name: str) -> dict[str, Any]:
    body = sandbox.get_json("ipool", name, "-n", ns)
    return next((c for c in body.get("status", {}).get("conditions", [])
                 if c["type"] == "Ready"), {})


def our_events(sandbox: Sandbox, ns: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = sandbox.get_json(
        "events", "-n", ns, f"--field-selector=reason={reason}")["items"]
    return items


def stamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.timeout(600)
def test_the_readme_example_becomes_ready_on_nodes_karpenter_launches(
        elastic: tuple[Sandbox, SandboxState], operator: OperatorProcess,
        workload_ns: str) -> None:
    sandbox, _ = elastic
    sandbox.kubectl("apply", "-n", workload_ns, "-f", str(REPO / "examples" / "llama-8b.yaml"))
    reasons: set[str] = set()

    def serving() -> bool:
        cond = ready_condition(sandbox, workload_ns, "llama-8b")
        reasons.add(str(cond.get("reason")))
        return cond.get("status") == "True"
    wait_for(serving, timeout=300, interval=1, what="llama-8b Ready")
    assert "Provisioning" in reasons  # it said what it waited for
    placed = {p["spec"]["nodeName"] for p in sandbox.get_json("pods", "-n", workload_ns)["items"]}
    launched = {n["metadata"]["name"]: n["metadata"]["labels"]["karpenter.sh/nodepool"]
                for n in sandbox.get_json("nodes")["items"]
                if "karpenter.sh/nodepool" in n["metadata"]["labels"]}
    assert placed <= set(launched)  # every replica runs on a node Karpenter launched for it
    assert {launched[n] for n in placed} == {"l4", "inf2"}  # maxFamilyShare 0.75: two families
    # nodes that were still starting were never reported as a lost node pool
    assert our_events(sandbox, workload_ns, "NodePoolLost") == []


SPILL = {
    "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
    "metadata": {"name": "spill"},
    "spec": {
        "model": "m", "replicas": {"min": 1, "max": 4},
        "demand": {"fixed": 30, "targetUtilization": 1.0,
                   "scaleDown": {"stabilizationSeconds": 0}},
        "variants": [  # v6e: 2 x 8 chips x $2.70 = $43.2/h; h100: 8 x $11.03 = $88.2/h
            {"name": "v6e", "capacity": 20, "accelerator": {
                "family": "tpu", "type": "tpu-v6e-slice", "topology": "2x4", "count": 8},
             "template": {"spec": {"containers": [{"name": "s", "image": "stand-in"}]}}},
            {"name": "h100", "capacity": 40, "accelerator": {
                "family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3", "count": 8},
             "template": {"spec": {"containers": [{"name": "s", "image": "stand-in"}]}}},
        ],
    },
}


def deployments_of(sandbox: Sandbox, ns: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d
            for d in sandbox.get_json("deployments", "-n", ns)["items"]}


@pytest.mark.timeout(900)
def test_a_stockout_karpenter_reports_spills_at_once_and_the_pool_comes_back(
        elastic: tuple[Sandbox, SandboxState], operator: OperatorProcess,
        workload_ns: str) -> None:
    sandbox, state = elastic
    karpenter.set_available(state, "v6e", False, log=lambda _m: None)
    try:
        sandbox.kubectl("apply", "-n", workload_ns, "-f", "-", input=json.dumps(SPILL))

        # The cheapest plan is 2 v6e replicas; Karpenter cannot launch a v6e node and says so.
        def refusal() -> dict[str, Any] | None:
            said = [e for e in our_events(sandbox, workload_ns, "FailedScheduling")
                    if e["source"].get("component") == "karpenter"
                    and e["involvedObject"]["name"].startswith("spill-v6e-v6e")]
            return min(said, key=lambda e: e["lastTimestamp"]) if said else None
        said = wait_for(refusal, timeout=120, interval=1, what="Karpenter's FailedScheduling")
        h100 = wait_for(lambda: deployments_of(sandbox, workload_ns).get("spill-h100-h100"),
                        timeout=60, interval=0.5, what="the spill onto h100")
        spill_seconds = (stamp(h100["metadata"]["creationTimestamp"])
                         - stamp(said["lastTimestamp"])).total_seconds()
        print(f"spilled {spill_seconds:.0f} s after Karpenter's report")
        assert spill_seconds <= TICK_SECONDS + 3  # within one tick (timestamps are whole s)
        body = sandbox.get_json("ipool", "spill", "-n", workload_ns)
        degraded = next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")
        assert degraded["reason"] == "Failover", degraded
        assert "node pool v6e is stocked out (the autoscaler cannot launch a node" in \
            degraded["message"], degraded
        assert "Karpenter: Failed to schedule pod" in degraded["message"], degraded
        wait_for(lambda: ready_condition(sandbox, workload_ns, "spill").get("status") == "True",
                 timeout=180, interval=1, what="serving from h100")
    finally:
        karpenter.set_available(state, "v6e", True, log=lambda _m: None)

    # Retried after the backoff, the cheaper family serves again; h100 goes only once it does.
    h100_nodes = {p["spec"]["nodeName"] for p in sandbox.get_json(
        "pods", "-n", workload_ns, "-l", "inferpool.dev/variant=h100")["items"]}
    deadline = time.monotonic() + 300
    while True:
        got = {name: (d["spec"]["replicas"], d.get("status", {}).get("readyReplicas", 0))
               for name, d in deployments_of(sandbox, workload_ns).items()}
        assert sum(ready for _, ready in got.values()) >= 1, got  # never below min
        if got == {"spill-v6e-v6e": (2, 2)}:
            break
        assert time.monotonic() < deadline, f"not back on v6e: {got}"
        time.sleep(1)
    # Karpenter consolidates the node the h100 replica left (consolidateAfter: 30s)
    wait_for(lambda: not h100_nodes & {n["metadata"]["name"]
                                       for n in sandbox.get_json("nodes")["items"]},
             timeout=240, interval=2, what="the empty h100 node consolidated away")
    assert ready_condition(sandbox, workload_ns, "spill").get("status") == "True"


def accelerator_pool_status(sandbox: Sandbox, name: str) -> dict[str, Any]:
    status: dict[str, Any] = sandbox.get_json("apool", name).get("status", {})
    return status


@pytest.mark.timeout(600)
def test_a_node_pools_limit_caps_the_plan_before_karpenter_refuses(
        elastic: tuple[Sandbox, SandboxState], operator: OperatorProcess,
        workload_ns: str) -> None:
    """Karpenter launches no node past a NodePool's spec.limits. The operator reads them: with
    room for one v6e node only, the pool that the cheapest plan would put on two v6e replicas
    (the stockout test above) goes to one H100 replica at once, with no wait for a node that
    Karpenter would refuse."""
    sandbox, _ = elastic
    # Nodes that exist are room whatever the limit: wait until Karpenter has consolidated the
    # v6e nodes an earlier test left empty.
    wait_for(lambda: pool_nodes(sandbox, "v6e") == [], timeout=300, interval=2,
             what="no v6e node left")
    limit = json.dumps({"spec": {"limits": {"google.com/tpu": "8"}}})
    sandbox.kubectl("patch", "nodepools.karpenter.sh", "v6e", "--type=merge", "-p", limit)
    try:
        wait_for(lambda: accelerator_pool_status(sandbox, "v6e").get("maxNodes") == 1,
                 timeout=90, interval=1, what="the v6e AcceleratorPool capped at one node")
        status = accelerator_pool_status(sandbox, "v6e")
        assert status["maxNodesLimitedBy"] == \
            "Karpenter NodePool v6e limits google.com/tpu to 8", status
        sandbox.kubectl("apply", "-n", workload_ns, "-f", "-", input=json.dumps(SPILL))
        wait_for(lambda: ready_condition(sandbox, workload_ns, "spill").get("status") == "True",
                 timeout=180, interval=1, what="serving within the NodePool's limit")
        got = {name: d["spec"]["replicas"]
               for name, d in deployments_of(sandbox, workload_ns).items()}
        assert got == {"spill-h100-h100": 1}, got
        placed = [e["message"] for e in our_events(sandbox, workload_ns, "Placed")]
        assert placed
        assert not any("v6e" in m for m in placed), placed  # never planned there
        body = sandbox.get_json("ipool", "spill", "-n", workload_ns)
        degraded = next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")
        assert degraded["reason"] == "Healthy", degraded  # no stockout to recover from
    finally:
        sandbox.kubectl("patch", "nodepools.karpenter.sh", "v6e", "--type=merge", "-p",
                        json.dumps({"spec": {"limits": {"google.com/tpu": "32"}}}))
    wait_for(lambda: accelerator_pool_status(sandbox, "v6e").get("maxNodes") == 4,
             timeout=90, interval=1, what="the v6e AcceleratorPool back at maxNodes")
    assert accelerator_pool_status(sandbox, "v6e").get("maxNodesLimitedBy") is None
