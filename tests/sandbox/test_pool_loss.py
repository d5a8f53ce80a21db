"""A whole H100 pool fails under five InferencePools in three families: every replacement must
bind where the plan puts it, so no InferencePool sits below replicas.min for more than a few
seconds; typed Neuron variants stay on their instance type.

Its own operator with the default --stockout-seconds (30 s): a plan the scheduler cannot bind
would show as an InferencePool short for that long."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.operator_process import OperatorProcess, running_operator
from tests.sandbox.test_failover import fault, node_ready, pod_states, ready_pods
from tests.sandbox.test_operator import apply, deployments, ipool, settle
from tests.support import Sandbox, wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

INSTANCE = "node.kubernetes.io/instance-type"


def acc(name: str, accelerator: dict[str, Any], cost: float) -> dict[str, Any]:
    return {"name": name, "accelerator": accelerator, "capacity": 10, "costPerHour": cost}


H100 = acc("h100", {"family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3", "count": 8}, 10)
TRN2_8 = acc("trn2", {"family": "neuron", "type": "trn2.48xlarge", "count": 8}, 20)
TRN2_16 = acc("trn2", {"family": "neuron", "type": "trn2.48xlarge", "count": 16}, 20)
INF2 = acc("inf2", {"family": "neuron", "type": "inf2.48xlarge", "count": 8}, 20)
V6E = acc("v6e", {"family": "tpu", "type": "tpu-v6e-slice", "topology": "2x4", "count": 8}, 25)
L4 = acc("l4", {"family": "nvidia", "product": "NVIDIA-L4", "count": 4}, 30)

# name -> (min replicas, variants)
POOLS: dict[str, tuple[int, list[dict[str, Any]]]] = {
    "frag": (2, [TRN2_8]),  # one 8-device replica on each trn2 node (the scheduler spreads)
    "big": (2, [H100, TRN2_16, L4]),  # trn2 has 16 devices free, but 8 on each node
    "tpu": (1, [H100, V6E]),
    "inf": (1, [H100, INF2]),  # typed for inf2: never on trn2
    "small": (1, [L4]),
}


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    yield from running_operator(sandbox, tmp_path_factory.mktemp("pool-loss"), "pool-loss")


def ready_off(sandbox: Sandbox, ns: str, pool: str, dead: str) -> int:
    return sum(1 for p in ready_pods(sandbox, ns)
               if p["metadata"]["labels"].get("inferpool.dev/pool") == pool
               and not p["spec"]["nodeName"].startswith(dead + "-"))


def test_whole_pool_loss_keeps_every_pool_at_min(sandbox: Sandbox, namespace: str,
                                                 operator: OperatorProcess) -> None:
    ns = namespace
    for name, (min_, variants) in POOLS.items():
        apply(sandbox, ns, ipool(name, 10.0 * min_, variants, min_=min_, max_=min_))
    settle(sandbox, ns, {"frag-trn2-trn2": 2, "big-h100-h100": 2, "tpu-h100-h100": 1,
                         "inf-h100-h100": 1, "small-l4-l4": 1}, timeout=120)
    frag_nodes = {p["spec"]["nodeName"] for p in ready_pods(sandbox, ns)
                  if p["metadata"]["labels"]["inferpool.dev/pool"] == "frag"}
    assert frag_nodes == {"trn2-0", "trn2-1"}  # the fragmentation this test is about

    fault(sandbox, "fail", "--pool", "h100")
    try:
        wait_for(lambda: not any(node_ready(sandbox, f"h100-{i}") for i in range(4)),
                 timeout=30, what="h100 NotReady")
        lost = time.monotonic()
        back: dict[str, float] = {}
        while len(back) < len(POOLS) and time.monotonic() - lost < 45:
            for name, (min_, _) in POOLS.items():
                if name not in back and ready_off(sandbox, ns, name, "h100") >= min_:
                    back[name] = round(time.monotonic() - lost, 2)
            time.sleep(0.2)
        print(f"seconds from NotReady to replicas.min Ready, per pool: {back}")
        assert set(back) == set(POOLS), (back, pod_states(sandbox, ns))
        assert max(back.values()) < 10, (back, pod_states(sandbox, ns))

        events = sandbox.get_json("events", "-n", ns)["items"]
        assert not [e["message"] for e in events if e["reason"] == "Stockout"]
        # typed variants ran only where their type says, and are pinned there
        nodes = {n["metadata"]["name"]: n["metadata"]["labels"]
                 for n in sandbox.get_json("nodes")["items"]}
        for pod in sandbox.get_json("pods", "-n", ns)["items"]:
            variant = pod["metadata"]["labels"]["inferpool.dev/variant"]
            if variant in ("trn2", "inf2") and pod["spec"].get("nodeName"):
                assert nodes[pod["spec"]["nodeName"]][INSTANCE] == f"{variant}.48xlarge"
        for d in deployments(sandbox, ns).values():
            variant = d["metadata"]["labels"]["inferpool.dev/variant"]
            if variant in ("trn2", "inf2"):
                selector = d["spec"]["template"]["spec"]["nodeSelector"]
                assert selector[INSTANCE] == f"{variant}.48xlarge"
    finally:
        fault(sandbox, "recover", "--pool", "h100")
        sandbox.kubectl("delete", "ipool", "--all", "-n", ns, "--wait=true", check=False)
