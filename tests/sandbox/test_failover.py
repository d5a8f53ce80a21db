"""Rebalancing on failures, against the sandbox's fault injection: node and pool loss,
stockouts and broken variants, and recovery."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.operator_process import OperatorProcess, running_operator
from tests.sandbox.test_operator import (
    H100,
    V6E,
    apply,
    condition,
    ipool,
    ready,
    replicas,
    settle,
    status,
)
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    yield from running_operator(
        sandbox, tmp_path_factory.mktemp("failover"), "failover", "--stockout-seconds=5",
        "--broken-seconds=5", "--retry-backoff-seconds=15")


@pytest.fixture
def ns(sandbox: Sandbox, namespace: str, operator: OperatorProcess) -> Iterator[str]:
    yield namespace
    sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
    wait_for(lambda: not sandbox.get_json("pods", "-n", namespace)["items"], timeout=90,
             what="the test's pods to go")


def fault(sandbox: Sandbox, action: str, *args: str) -> None:
    sandbox.inferpool("sandbox", action, "--name", sandbox.name, *args)


def ready_pods(sandbox: Sandbox, ns: str) -> list[dict[str, Any]]:
    pods = sandbox.get_json("pods", "-n", ns)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def pod_states(sandbox: Sandbox, ns: str) -> list[tuple[str, str, str, list[str], bool]]:
    """Per pod: name, node, phase, its conditions and whether it is being deleted (for failure
    messages)."""
    return [(p["metadata"]["name"], p["spec"].get("nodeName") or "-", p["status"].get("phase"),
             [f"{c['type']}={c['status']}{'/' + c['reason'] if c.get('reason') else ''}"
              for c in p["status"].get("conditions", [])],
             bool(p["metadata"].get("deletionTimestamp")))
            for p in sandbox.get_json("pods", "-n", ns)["items"]]


def node_ready(sandbox: Sandbox, node: str) -> bool:
    conditions = sandbox.get_json("node", node)["status"]["conditions"]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_single_node_loss_is_replaced_before_any_eviction(sandbox: Sandbox, ns: str) -> None:
    apply(sandbox, ns, ipool("one", 20, [V6E]))
    settle(sandbox, ns, {"one-v6e-v6e": 2})
    victim = ready_pods(sandbox, ns)[0]["spec"]["nodeName"]
    fault(sandbox, "fail", victim)
    try:
        wait_for(lambda: not node_ready(sandbox, victim), timeout=20, what=f"{victim} NotReady")
        lost = time.monotonic()

        def replaced() -> bool:
            pods = ready_pods(sandbox, ns)
            return len(pods) == 2 and all(p["spec"]["nodeName"] != victim for p in pods)

        wait_for(replaced, timeout=15, interval=0.1, what="a replacement Ready elsewhere")
        # well before the pods' not-ready toleration (30 s) or the default eviction (300 s)
        assert time.monotonic() - lost < 10
    finally:
        fault(sandbox, "recover", victim)


def test_node_loss_in_a_full_node_pool_spills_without_a_stockout(sandbox: Sandbox, ns: str
                                                                  ) -> None:
    # 4 v6e replicas fill the v6e pool's 4 nodes: the displaced one has nowhere to go there
    apply(sandbox, ns, ipool("full", 40, [H100, V6E]))
    settle(sandbox, ns, {"full-v6e-v6e": 4})
    victim = "v6e-1"
    fault(sandbox, "fail", victim)
    try:
        wait_for(lambda: not node_ready(sandbox, victim), timeout=20, what=f"{victim} NotReady")
        wait_for(lambda: len(ready_pods(sandbox, ns)) == 4 and all(
            p["spec"]["nodeName"] != victim for p in ready_pods(sandbox, ns)),
            timeout=20, interval=0.1, what="4 replicas Ready off the failed node")
        # the engine saw the lost node and moved the replica itself: the pool was never
        # mistaken for stocked out (that would cap it and wait out the stockout bound)
        events = sandbox.get_json("events", "-n", ns)["items"]
        assert not [e["message"] for e in events if e["reason"] == "Stockout"]
        assert replicas(sandbox, ns) == {"full-v6e-v6e": 3, "full-h100-h100": 1}
    finally:
        fault(sandbox, "recover", victim)


def test_whole_pool_loss_moves_replicas_to_another_family_and_back(
    sandbox: Sandbox, ns: str
) -> None:
    apply(sandbox, ns, ipool("fam", 30, [H100, V6E]))
    settle(sandbox, ns, {"fam-v6e-v6e": 3})
    fault(sandbox, "fail", "--pool", "v6e")
    try:
        wait_for(lambda: not node_ready(sandbox, "v6e-0"), timeout=20, what="v6e NotReady")
        lost = time.monotonic()
        wait_for(lambda: len(ready_pods(sandbox, ns)) == 3 and all(
            p["spec"]["nodeName"].startswith("h100-") for p in ready_pods(sandbox, ns)),
            timeout=20, interval=0.1, what="3 replicas Ready on H100")
        assert time.monotonic() - lost < 10
        cond = wait_for(lambda: condition(sandbox, ns, "fam", "Degraded").get("status") == "True"
                        and condition(sandbox, ns, "fam", "Degraded"), timeout=20,
                        what="Degraded=True")
        assert "node pool v6e has no healthy node" in cond["message"]
        events = sandbox.get_json("events", "-n", ns)["items"]
        assert any(e["reason"] == "NodePoolLost" for e in events)
    finally:
        fault(sandbox, "recover", "--pool", "v6e")
    # back to the cheaper TPU pool, make-before-break: never fewer than 3 Ready on the way
    lowest = 3
    deadline = time.monotonic() + 90
    while replicas(sandbox, ns) != {"fam-v6e-v6e": 3} or ready(sandbox, ns) != {
            "fam-v6e-v6e": 3}:
        lowest = min(lowest, len(ready_pods(sandbox, ns)))
        assert time.monotonic() < deadline, (
            f"not back on v6e: {replicas(sandbox, ns)}; pods: {pod_states(sandbox, ns)}; "
            f"nodes: {[(n, node_ready(sandbox, n)) for n in ('v6e-0', 'v6e-1')]}")
        time.sleep(0.3)
    assert lowest >= 3
    wait_for(lambda: condition(sandbox, ns, "fam", "Degraded").get("status") == "False",
             timeout=20, what="Degraded cleared")


def test_stockout_spills_to_another_pool_and_the_pool_is_retried(
    sandbox: Sandbox, ns: str
) -> None:
    fault(sandbox, "stockout", "--pool", "v6e")
    try:
        apply(sandbox, ns, ipool("short", 20, [H100, V6E]))
        # v6e pods stay Pending; after the 5 s bound the replicas spill to H100
        settle(sandbox, ns, {"short-h100-h100": 2}, timeout=40)
        cond = wait_for(lambda: condition(sandbox, ns, "short", "Degraded").get(
            "status") == "True" and condition(sandbox, ns, "short", "Degraded"), timeout=20,
            what="Degraded=True")
        assert "node pool v6e is stocked out" in cond["message"]
    finally:
        fault(sandbox, "recover", "--pool", "v6e")
    # after the retry backoff (15 s) the cheaper pool is tried again, and now it works
    settle(sandbox, ns, {"short-v6e-v6e": 2}, timeout=90)


def test_broken_variant_is_degraded_and_capacity_shifts(sandbox: Sandbox, ns: str) -> None:
    broken_v6e = {**V6E}
    pool = ipool("broken", 20, [H100, broken_v6e])
    template = pool["spec"]["variants"][1]["template"]
    template["metadata"] = {"annotations": {"sandbox.inferpool.dev/simulate": "ImagePullBackOff"}}
    apply(sandbox, ns, pool)
    settle(sandbox, ns, {"broken-h100-h100": 2}, timeout=60)
    cond = wait_for(lambda: condition(sandbox, ns, "broken", "Degraded").get(
        "status") == "True" and condition(sandbox, ns, "broken", "Degraded"), timeout=20,
        what="Degraded=True")
    assert "variant v6e is failing" in cond["message"]
    assert "ImagePullBackOff" in cond["message"]
    events = sandbox.get_json("events", "-n", ns)["items"]
    assert any(e["reason"] == "VariantDegraded" for e in events)


A100 = {"name": "a100", "accelerator": {"family": "nvidia", "product": "NVIDIA-A100-SXM4-80GB",
                                         "count": 8}, "capacity": 10, "costPerHour": 30}


def karpenter_node(name: str, node_pool: str, capacity_type: str) -> dict[str, Any]:
    """A simulated node of a Karpenter NodePool (no inferpool.dev/node-pool label): A100s, which
    no other test's variant asks for."""
    gpus = {"cpu": "96", "memory": "1152Gi", "pods": "110", "nvidia.com/gpu": "8"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "annotations": {"kwok.x-k8s.io/node": "fake",
                                      "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {"karpenter.sh/nodepool": node_pool, "karpenter.sh/capacity-type": capacity_type,
                   "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                   "node.kubernetes.io/instance-type": "p4de.24xlarge",
                   "kubernetes.io/hostname": name, "type": "kwok"}},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present",
                             "effect": "NoSchedule"}]},
        "status": {"capacity": gpus, "allocatable": gpus}}


def test_a_renamed_node_pool_keeps_its_replicas_serving(sandbox: Sandbox, ns: str) -> None:
    pool = f"gpu-{ns[-5:]}"
    names = [f"{pool}-od-{i}" for i in range(3)]
    spot, adopter = f"{pool}-spot-0", f"adopt-{ns[-5:]}"
    try:
        for name in names:
            sandbox.kubectl("create", "-f", "-", input=json.dumps(
                karpenter_node(name, pool, "on-demand")))
        wait_for(lambda: all(node_ready(sandbox, n) for n in names), timeout=30,
                 what="the Karpenter nodes Ready")
        apply(sandbox, ns, ipool("moved", 20, [A100]))
        settle(sandbox, ns, {f"moved-a100-{pool}": 2})
        seen: set[str] = set(replicas(sandbox, ns))
        lowest = 2

        def watch(until: Any, what: str, timeout: float = 60) -> None:
            """Poll until `until()`; meanwhile no Deployment may go and Ready never drop."""
            nonlocal lowest
            deadline = time.monotonic() + timeout
            while not until():
                now = set(replicas(sandbox, ns))
                assert seen <= now, f"deleted: {seen - now}; pods: {pod_states(sandbox, ns)}"
                seen.update(now)
                lowest = min(lowest, len(ready_pods(sandbox, ns)))
                assert lowest >= 2, f"Ready dropped to {lowest}: {pod_states(sandbox, ns)}"
                assert time.monotonic() < deadline, (
                    f"timed out waiting for {what}: {replicas(sandbox, ns)}, selector "
                    f"{selector()}, pods {pod_states(sandbox, ns)}, placement "
                    f"{status(sandbox, ns, 'moved').get('placement')}")
                time.sleep(0.2)

        def selector() -> dict[str, str]:
            dep = sandbox.get_json("deployment", f"moved-a100-{pool}", "-n", ns)
            return dict(dep["spec"]["template"]["spec"]["nodeSelector"])

        def rolled() -> bool:
            return ready(sandbox, ns) == {f"moved-a100-{pool}": 2} and all(
                p["spec"]["nodeName"] in names for p in ready_pods(sandbox, ns)) and len(
                sandbox.get_json("pods", "-n", ns)["items"]) == 2

        # 1. a spot node joins: the pool splits, the part running the replicas keeps its name
        sandbox.kubectl("create", "-f", "-", input=json.dumps(
            karpenter_node(spot, pool, "spot")))
        watch(lambda: selector().get("karpenter.sh/capacity-type") == "on-demand" and rolled(),
              "the Deployment pinned to the on-demand part")
        # 2. an AcceleratorPool adopts the on-demand nodes: same Deployment, its selector
        sandbox.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "inferpool.dev/v1alpha1", "kind": "AcceleratorPool",
            "metadata": {"name": adopter},
            "spec": {"family": "nvidia", "pricePerAcceleratorHour": 3.0, "nodeSelector": {
                "karpenter.sh/nodepool": pool, "karpenter.sh/capacity-type": "on-demand"}}}))
        # (plus the variant's product, which every placement pins: docs/operator.md)
        watch(lambda: selector() == {"karpenter.sh/nodepool": pool,
                                     "karpenter.sh/capacity-type": "on-demand",
                                     "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
              and rolled(), "the Deployment pinned by the AcceleratorPool's selector")
        watch(lambda: sandbox.get_json("apool", adopter).get("status", {}).get("nodes") == 3,
              "the AcceleratorPool's status counting its nodes")
        # and it stays so over a few plans
        settle_until = time.monotonic() + 5
        watch(lambda: time.monotonic() > settle_until, "a few quiet plans")
        assert set(replicas(sandbox, ns)) == {f"moved-a100-{pool}"}
        rows = status(sandbox, ns, "moved")["placement"]
        assert [(r["nodePool"], r["desired"]) for r in rows] == [(pool, 2)]
    finally:
        sandbox.kubectl("delete", "apool", adopter, "--ignore-not-found", check=False)
        sandbox.kubectl("delete", "node", *names, spot, "--ignore-not-found", check=False)


def test_most_nodes_not_ready_at_once_deletes_none_of_our_pods(
    sandbox: Sandbox, ns: str, operator: OperatorProcess
) -> None:
    apply(sandbox, ns, ipool("partition", 20, [V6E]))
    settle(sandbox, ns, {"partition-v6e-v6e": 2})
    before = {p["metadata"]["name"] for p in ready_pods(sandbox, ns)}
    start = len(operator.log_lines())
    # 10 of the sandbox's 16 nodes (62 % >= 55 %), then the 4 running our replicas. (Failing a
    # simulated node deletes and recreates it; a missing node's pods go at once otherwise.)
    failed = ("h100", "l4", "trn2", "v6e")
    try:
        for pool in failed[:3]:
            fault(sandbox, "fail", "--pool", pool)
        wait_for(lambda: any(line.get("event", "").startswith("zone-scale failure")
                             for line in operator.log_lines()[start:]), timeout=30,
                 what="the zone-scale failure seen")
        fault(sandbox, "fail", "--pool", "v6e")
        wait_for(lambda: not any(node_ready(sandbox, f"v6e-{i}") for i in range(4)),
                 timeout=30, what="the v6e nodes NotReady")
        def why() -> str:
            said = [(line.get("event"), line.get("pod") or line.get("zones"))
                    for line in operator.log_lines()[start:]
                    if line.get("event") != "reconciled"]
            return f"pods: {pod_states(sandbox, ns)}; operator: {said}"

        deadline = time.monotonic() + 12  # replacement would be immediate
        while time.monotonic() < deadline:
            pods = sandbox.get_json("pods", "-n", ns)["items"]
            assert {p["metadata"]["name"] for p in pods} == before, why()
            assert not [p for p in pods if p["metadata"].get("deletionTimestamp")], why()
            assert replicas(sandbox, ns) == {"partition-v6e-v6e": 2}
            time.sleep(0.5)
        assert not [line for line in operator.log_lines()[start:]
                    if line.get("event") == "replacing pod on a failed node"]
    finally:
        for pool in failed:
            fault(sandbox, "recover", "--pool", pool)
    settle(sandbox, ns, {"partition-v6e-v6e": 2}, timeout=60)
