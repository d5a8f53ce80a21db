"""The operator, running as its own process against the sandbox, turns InferencePools into
placed, Ready replicas and keeps them there."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator_process import OperatorProcess, running_operator
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox

H100 = {"name": "h100", "accelerator": {"family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3",
                                         "count": 8}, "capacity": 10, "costPerHour": 40}
V6E = {"name": "v6e", "accelerator": {"family": "tpu", "type": "tpu-v6e-slice",
                                       "topology": "2x4", "count": 8},
       "capacity": 10, "costPerHour": 20}
TRN2 = {"name": "trn2", "accelerator": {"family": "neuron", "product": "trainium2", "count": 16},
        "capacity": 20, "costPerHour": 45}


def variant(base: dict[str, Any], image: str = "registry.local/vllm:1") -> dict[str, Any]:
    return {**base, "template": {"spec": {"containers": [{"name": "server", "image": image}]}}}


def ipool(name: str, demand: float, variants: list[dict[str, Any]], *, min_: int = 1,
          max_: int = 20, priority: int = 0, max_family_share: float = 1.0) -> dict[str, Any]:
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {"model": "test/model", "replicas": {"min": min_, "max": max_},
                 "demand": {"fixed": demand, "targetUtilization": 1.0,
                            "scaleDown": {"stabilizationSeconds": 0}},
                 "resilience": {"maxFamilyShare": max_family_share},
                 "priority": priority, "variants": [variant(v) for v in variants]},
    }


def apply(sandbox: Sandbox, namespace: str, obj: dict[str, Any]) -> None:
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))


def deployments(sandbox: Sandbox, namespace: str) -> dict[str, dict[str, Any]]:
    items = sandbox.get_json("deployments", "-n", namespace)["items"]
    return {d["metadata"]["name"]: d for d in items}


def replicas(sandbox: Sandbox, namespace: str) -> dict[str, int]:
    return {name: d["spec"]["replicas"] for name, d in deployments(sandbox, namespace).items()}


def ready(sandbox: Sandbox, namespace: str) -> dict[str, int]:
    return {name: d.get("status", {}).get("readyReplicas", 0)
            for name, d in deployments(sandbox, namespace).items()}


def status(sandbox: Sandbox, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = sandbox.get_json("ipool", name, "-n", namespace).get("status", {})
    return got


def condition(sandbox: Sandbox, namespace: str, name: str, type_: str) -> dict[str, Any]:
    for cond in status(sandbox, namespace, name).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}


def settle(sandbox: Sandbox, namespace: str, expected: dict[str, int], timeout: float = 60
           ) -> None:
    """Wait until the Deployments are exactly `expected` and all their replicas Ready; on a
    timeout the error shows the last replicas and ready counts seen."""
    def observed() -> dict[str, dict[str, int]] | None:
        seen = {"replicas": replicas(sandbox, namespace), "ready": ready(sandbox, namespace)}
        if seen["replicas"] == expected and seen["ready"] == expected:
            return None
        raise AssertionError(seen)  # wait_for keeps it as the last thing seen

    wait_for(lambda: observed() is None, timeout=timeout, what=f"deployments {expected}")


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    yield from running_operator(sandbox, tmp_path_factory.mktemp("operator"), "main")


@pytest.fixture
def ns(sandbox: Sandbox, namespace: str, operator: OperatorProcess) -> Iterator[str]:
    """A namespace whose InferencePools are deleted (and their replicas gone) after the test,
    so tests do not compete for the sandbox's accelerators."""
    yield namespace
    sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
    wait_for(lambda: not sandbox.get_json("pods", "-n", namespace)["items"], timeout=90,
             what="the test's pods to go")


def test_replicas_are_placed_in_the_expected_pools_within_resilience(
    sandbox: Sandbox, ns: str
) -> None:
    # 30 req/s at 10 req/s per replica: 3 replicas. TPU is cheapest, but no family may carry
    # more than 70% of the capacity, so one replica goes to H100.
    apply(sandbox, ns, ipool("chat", 30, [H100, V6E], max_family_share=0.7))
    settle(sandbox, ns, {"chat-v6e-v6e": 2, "chat-h100-h100": 1})
    pods = sandbox.get_json("pods", "-n", ns, "-l", "inferpool.dev/pool=chat")["items"]
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert pod["spec"]["nodeName"].startswith(labels["inferpool.dev/node-pool"] + "-")
        assert labels["inferpool.dev/accelerator"] in ("nvidia", "tpu")
    wait_for(lambda: status(sandbox, ns, "chat").get("readyReplicas") == 3, timeout=30,
             what="status.readyReplicas == 3")
    st = status(sandbox, ns, "chat")
    assert st["capacity"] == pytest.approx(30)
    assert st["costPerHour"] == pytest.approx(2 * 20 + 40)
    assert st["families"] == "nvidia,tpu"
    assert {(r["variant"], r["nodePool"], r["desired"]) for r in st["placement"]} == {
        ("v6e", "v6e", 2), ("h100", "h100", 1)}
    assert condition(sandbox, ns, "chat", "Ready")["status"] == "True"
    assert condition(sandbox, ns, "chat", "CapacityShortfall")["status"] == "False"
    dep = deployments(sandbox, ns)["chat-h100-h100"]
    spec = dep["spec"]["template"]["spec"]
    assert spec["nodeSelector"]["inferpool.dev/node-pool"] == "h100"
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    tolerations = {t["key"]: t for t in spec["tolerations"]}
    assert tolerations["node.kubernetes.io/unreachable"]["tolerationSeconds"] == 30
    assert "nvidia.com/gpu" in tolerations
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "InferencePool"


def test_spec_edits_change_the_placement(sandbox: Sandbox, ns: str) -> None:
    apply(sandbox, ns, ipool("edit", 20, [H100, V6E]))
    settle(sandbox, ns, {"edit-v6e-v6e": 2})
    # min above demand: more replicas
    apply(sandbox, ns, ipool("edit", 20, [H100, V6E], min_=3))
    settle(sandbox, ns, {"edit-v6e-v6e": 3})
    # the TPU variant removed: replicas move to H100, the TPU Deployment goes away
    apply(sandbox, ns, ipool("edit", 20, [H100], min_=3))
    settle(sandbox, ns, {"edit-h100-h100": 3}, timeout=90)
    # a template change rolls that variant
    changed = ipool("edit", 20, [H100], min_=3)
    container = changed["spec"]["variants"][0]["template"]["spec"]["containers"][0]
    container["image"] = "registry.local/vllm:2"
    apply(sandbox, ns, changed)
    wait_for(lambda: deployments(sandbox, ns)["edit-h100-h100"]["spec"]["template"]["spec"]
             ["containers"][0]["image"] == "registry.local/vllm:2", timeout=30,
             what="the new image in the Deployment")


def test_deleting_an_inference_pool_removes_everything_it_made(sandbox: Sandbox, ns: str
                                                               ) -> None:
    apply(sandbox, ns, ipool("gone", 20, [V6E]))
    settle(sandbox, ns, {"gone-v6e-v6e": 2})
    sandbox.kubectl("delete", "ipool", "gone", "-n", ns)
    wait_for(lambda: not deployments(sandbox, ns) and not sandbox.get_json(
        "pods", "-n", ns)["items"], timeout=60, what="Deployments and pods deleted")


def test_capacity_shortfall_is_reported_with_its_cause(sandbox: Sandbox, ns: str) -> None:
    # The sandbox has 4 TPU v6e nodes: at most 4 replicas, 40 req/s.
    apply(sandbox, ns, ipool("big", 100, [V6E]))
    settle(sandbox, ns, {"big-v6e-v6e": 4})
    cond = wait_for(lambda: condition(sandbox, ns, "big", "CapacityShortfall").get(
        "status") == "True" and condition(sandbox, ns, "big", "CapacityShortfall"),
        timeout=30, what="CapacityShortfall=True")
    assert cond["reason"] == "InsufficientAccelerators"
    assert "60.0 req/s short" in cond["message"]
    events = sandbox.get_json("events", "-n", ns)["items"]
    assert any(e["reason"] == "InsufficientAccelerators" for e in events)


def test_scarce_h100s_go_to_the_higher_priority_pool(sandbox: Sandbox, ns: str) -> None:
    # 4 H100 nodes = 4 replicas of 8 GPUs; both pools want 3.
    apply(sandbox, ns, ipool("low", 30, [H100], priority=0))
    settle(sandbox, ns, {"low-h100-h100": 3})
    apply(sandbox, ns, ipool("high", 30, [H100], priority=100))
    settle(sandbox, ns, {"high-h100-h100": 3, "low-h100-h100": 1}, timeout=90)
    cond = wait_for(lambda: condition(sandbox, ns, "low", "CapacityShortfall").get(
        "status") == "True" and condition(sandbox, ns, "low", "CapacityShortfall"),
        timeout=30, what="shortfall on the low-priority pool")
    assert "20.0 req/s short" in cond["message"]
    assert condition(sandbox, ns, "high", "CapacityShortfall")["status"] == "False"


def test_a_manually_edited_deployment_is_put_back(sandbox: Sandbox, ns: str) -> None:
    apply(sandbox, ns, ipool("manual", 20, [V6E]))
    settle(sandbox, ns, {"manual-v6e-v6e": 2})
    sandbox.kubectl("scale", "deployment/manual-v6e-v6e", "--replicas=4", "-n", ns)
    sandbox.kubectl("set", "image", "deployment/manual-v6e-v6e", "server=evil:1", "-n", ns)
    wait_for(lambda: (d := deployments(sandbox, ns)["manual-v6e-v6e"])["spec"]["replicas"] == 2
             and d["spec"]["template"]["spec"]["containers"][0]["image"]
             == "registry.local/vllm:1", timeout=30, what="the Deployment reverted")


def test_steady_state_makes_no_writes(sandbox: Sandbox, ns: str, operator: OperatorProcess
                                      ) -> None:
    apply(sandbox, ns, ipool("quiet", 20, [V6E]))
    settle(sandbox, ns, {"quiet-v6e-v6e": 2})
    wait_for(lambda: status(sandbox, ns, "quiet").get("readyReplicas") == 2, timeout=30,
             what="status settled")
    time.sleep(2)  # let the last status write land before counting
    start = len(operator.log_lines())
    time.sleep(12)  # two ticks
    reconciles = [line for line in operator.log_lines()[start:]
                  if line.get("event") == "reconciled"]
    assert len(reconciles) >= 2
    assert all(line["writes"] == 0 for line in reconciles), reconciles


def write_lax_crd(sandbox: Sandbox, tmp_path: Path) -> Path:
    """The InferencePool CRD with its schema opened up, as an older, laxer CRD would be."""
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" /
                          "inferencepools.inferpool.dev.yaml").read_text())
    for version in crd["spec"]["versions"]:
        version["schema"]["openAPIV3Schema"] = {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"status": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True}}}
    path = tmp_path / "lax.yaml"
    path.write_text(json.dumps(crd))
    return path


def test_an_invalid_pool_gets_spec_invalid_and_the_others_keep_being_served(
    sandbox: Sandbox, ns: str, tmp_path: Path
) -> None:
    apply(sandbox, ns, ipool("good", 20, [V6E]))
    settle(sandbox, ns, {"good-v6e-v6e": 2})
    strict = Path(__file__).parents[2] / "crds" / "inferencepools.inferpool.dev.yaml"
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                    str(write_lax_crd(sandbox, tmp_path)))
    try:
        bad = ipool("bad", 20, [V6E])
        bad["spec"]["replicas"] = {"min": 5, "max": 2}
        wait_for(lambda: sandbox.kubectl("apply", "-n", ns, "-f", "-",
                                         input=yaml.safe_dump(bad), check=False).returncode == 0,
                 timeout=20, what="the lax CRD to accept a bad object")
    finally:
        sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(strict))
    cond = wait_for(lambda: condition(sandbox, ns, "bad", "SpecInvalid").get("status") == "True"
                    and condition(sandbox, ns, "bad", "SpecInvalid"), timeout=30,
                    what="SpecInvalid on the bad pool")
    assert "replicas" in cond["message"]
    # the good one is still served, and still re-planned
    apply(sandbox, ns, ipool("good", 30, [V6E]))
    settle(sandbox, ns, {"good-v6e-v6e": 3})
    assert not any(d.startswith("bad-") for d in deployments(sandbox, ns))


def test_fields_added_by_hand_are_put_back(sandbox: Sandbox, ns: str) -> None:
    apply(sandbox, ns, ipool("drift", 20, [V6E]))
    settle(sandbox, ns, {"drift-v6e-v6e": 2})
    # fields the operator never sets: a merge patch and `kubectl set env`
    patched = json.loads(sandbox.kubectl(
        "patch", "deployment/drift-v6e-v6e", "-n", ns, "--type=merge", "-o", "json", "-p",
        json.dumps({"spec": {"template": {"spec": {"hostNetwork": True}}}})).stdout)
    assert patched["spec"]["template"]["spec"]["hostNetwork"] is True
    env = json.loads(sandbox.kubectl("set", "env", "deployment/drift-v6e-v6e", "DEBUG=1",
                                     "-n", ns, "-o", "json").stdout)
    assert env["spec"]["template"]["spec"]["containers"][0]["env"]

    def reverted() -> bool:
        spec = deployments(sandbox, ns)["drift-v6e-v6e"]["spec"]["template"]["spec"]
        return not spec.get("hostNetwork") and not spec["containers"][0].get("env")

    wait_for(reverted, timeout=30, what="hostNetwork and the env var removed")
    settle(sandbox, ns, {"drift-v6e-v6e": 2})
    pods = sandbox.get_json("pods", "-n", ns, "-l", "inferpool.dev/pool=drift")["items"]
    assert not any(p["spec"].get("hostNetwork") for p in pods
                   if not p["metadata"].get("deletionTimestamp"))


def test_a_deployment_without_its_label_is_still_ours_and_recreated(
    sandbox: Sandbox, ns: str
) -> None:
    apply(sandbox, ns, ipool("unlabelled", 20, [V6E]))
    settle(sandbox, ns, {"unlabelled-v6e-v6e": 2})
    sandbox.kubectl("label", "deployment/unlabelled-v6e-v6e", "-n", ns,
                    "app.kubernetes.io/managed-by-")
    wait_for(lambda: deployments(sandbox, ns)["unlabelled-v6e-v6e"]["metadata"]["labels"].get(
        "app.kubernetes.io/managed-by") == "inferpool", timeout=30, what="the label put back")
    sandbox.kubectl("label", "deployment/unlabelled-v6e-v6e", "-n", ns,
                    "app.kubernetes.io/managed-by-")
    first = deployments(sandbox, ns)["unlabelled-v6e-v6e"]["metadata"]["uid"]
    sandbox.kubectl("delete", "deployment/unlabelled-v6e-v6e", "-n", ns)
    wait_for(lambda: (d := deployments(sandbox, ns).get("unlabelled-v6e-v6e")) is not None
             and d["metadata"]["uid"] != first, timeout=30, what="the Deployment recreated")
    settle(sandbox, ns, {"unlabelled-v6e-v6e": 2})


def with_port(base: dict[str, Any]) -> dict[str, Any]:
    container = {"name": "server", "image": "registry.local/vllm:1",
                 "ports": [{"name": "http", "containerPort": 8000}]}
    return {**base, "template": {"spec": {"containers": [container]}}}


def test_the_model_has_one_service_that_routes_to_the_ready_pods_of_every_variant(
    sandbox: Sandbox, ns: str
) -> None:
    pool = ipool("chat", 30, [H100, V6E], max_family_share=0.7)
    pool["spec"]["variants"] = [with_port(H100), with_port(V6E)]
    apply(sandbox, ns, pool)
    settle(sandbox, ns, {"chat-v6e-v6e": 2, "chat-h100-h100": 1})

    service = wait_for(lambda: sandbox.get_json("services", "-n", ns)["items"], timeout=30,
                       what="the InferencePool's Service")[0]
    assert service["metadata"]["name"] == "chat"
    assert service["metadata"]["ownerReferences"][0]["kind"] == "InferencePool"
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]

    def ready_endpoints() -> set[str]:
        slices = sandbox.get_json("endpointslices", "-n", ns,
                                  "-l", "kubernetes.io/service-name=chat")["items"]
        return {e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready")}
    pods = {p["metadata"]["name"]: p["metadata"]["labels"]["inferpool.dev/accelerator"]
            for p in sandbox.get_json("pods", "-n", ns, "-l", "inferpool.dev/pool=chat")["items"]}
    wait_for(lambda: ready_endpoints() == set(pods), timeout=30,
             what="an endpoint for every Ready replica, whichever family serves it")
    assert set(pods.values()) == {"nvidia", "tpu"}


def test_the_models_disruption_budget_counts_the_pods_of_every_variant(
        sandbox: Sandbox, ns: str) -> None:
    """The InferencePool's PodDisruptionBudget: the disruption controller counts the pods of
    both variants as one model and allows one eviction at a time; an eviction (a drain, an
    autoscaler's consolidation) goes through and the replica is replaced. (That a second one
    waits is the API server's rule; here a simulated replacement is Ready within a second, so
    the sandbox cannot show the refusal.)"""
    apply(sandbox, ns, ipool("chat", 30, [H100, V6E], max_family_share=0.7))
    settle(sandbox, ns, {"chat-v6e-v6e": 2, "chat-h100-h100": 1})
    budget = wait_for(lambda: sandbox.get_json("pdb", "-n", ns)["items"], timeout=30,
                      what="the InferencePool's PodDisruptionBudget")[0]
    assert budget["metadata"]["name"] == "chat"
    assert budget["metadata"]["ownerReferences"][0]["kind"] == "InferencePool"
    assert budget["spec"]["maxUnavailable"] == 1
    counted = wait_for(lambda: (st := sandbox.get_json("pdb", "chat", "-n", ns).get(
        "status", {})).get("expectedPods") == 3 and st, timeout=30,
        what="the budget counting the 3 pods of both variants")
    assert (counted["currentHealthy"], counted["desiredHealthy"],
            counted["disruptionsAllowed"]) == (3, 2, 1)
    pod = sandbox.get_json("pods", "-n", ns, "-l", "inferpool.dev/variant=h100")["items"][0]
    name = pod["metadata"]["name"]
    sandbox.kubectl("create", "--raw", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", "-f",
                    "-", input=json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                                           "metadata": {"name": name, "namespace": ns}}))
    wait_for(lambda: name not in {p["metadata"]["name"] for p in sandbox.get_json(
        "pods", "-n", ns)["items"]}, timeout=30, what="the evicted pod gone")
    settle(sandbox, ns, {"chat-v6e-v6e": 2, "chat-h100-h100": 1})


def test_a_service_of_that_name_that_is_not_ours_is_left_alone_and_reported(
    sandbox: Sandbox, ns: str
) -> None:
    foreign = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken"},
               "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 9999}]}}
    sandbox.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(foreign))
    pool = ipool("taken", 10, [H100])
    pool["spec"]["variants"] = [with_port(H100)]
    apply(sandbox, ns, pool)
    settle(sandbox, ns, {"taken-h100-h100": 1})

    degraded = wait_for(lambda: (c := condition(sandbox, ns, "taken", "Degraded"))
                        .get("reason") == "NameConflict" and c, timeout=30,
                        what="a NameConflict condition naming the Service")
    assert "Service taken is not this InferencePool's" in degraded["message"]
    live = sandbox.get_json("service", "taken", "-n", ns)
    assert live["spec"]["selector"] == {"app": "theirs"}
    assert "ownerReferences" not in live["metadata"]
