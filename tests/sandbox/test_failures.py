"""Every reason a replica cannot exist reaches the InferencePool, within one tick, in the API
server's words: pods that admission refuses (Pod Security, ResourceQuota), a Deployment the API
server refuses, a name another Deployment holds (issue #17's tries, against the real API)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator_process import OperatorProcess, running_operator
from tests.sandbox.test_operator import H100, apply, condition, deployments, ipool
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama-8b.yaml"
TICK = 5.0  # the test operators' --tick-seconds
BACKOFF = 4.0


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[OperatorProcess]:
    yield from running_operator(sandbox, tmp_path_factory.mktemp("operator"), "failures",
                                f"--retry-backoff-seconds={BACKOFF}")


@pytest.fixture
def ns(sandbox: Sandbox, namespace: str, operator: OperatorProcess) -> Iterator[str]:
    yield namespace
    sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)


def events(sandbox: Sandbox, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in sandbox.get_json("events", "-n", ns)["items"]
            if e.get("reportingComponent") == "inferpool-operator" and e["reason"] == reason]


def metric(op: OperatorProcess, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_a_restricted_namespace_is_reported_in_one_tick_and_clears_when_relabelled(
        sandbox: Sandbox, ns: str, operator: OperatorProcess) -> None:
    sandbox.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    sandbox.kubectl("apply", "-n", ns, "-f", str(EXAMPLE))
    started = time.monotonic()
    wait_for(lambda: condition(sandbox, ns, "llama-8b", "Ready").get("reason")
             == "PodSecurityRejected", timeout=TICK + 5, what="Ready=False PodSecurityRejected")
    assert time.monotonic() - started <= TICK + 5  # within one tick (and the API's own delay)
    ready = condition(sandbox, ns, "llama-8b", "Ready")
    assert ready["status"] == "False"
    assert 'violates PodSecurity "restricted:latest"' in ready["message"]
    degraded = condition(sandbox, ns, "llama-8b", "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "PodSecurityRejected"
    assert "allowPrivilegeEscalation != false" in degraded["message"]
    wait_for(lambda: events(sandbox, ns, "PodSecurityRejected"), timeout=5,
             what="a PodSecurityRejected Event")
    event = events(sandbox, ns, "PodSecurityRejected")[0]
    assert event["type"] == "Warning"
    assert "restricted:latest" in event["message"]
    assert metric(operator, "inferpool_degraded", namespace=ns, inferencepool="llama-8b",
                  reason="PodSecurityRejected") >= 1
    # the dry run of the new spec already warned, before any pod was refused
    warned = events(sandbox, ns, "AdmissionWarning")
    assert warned
    assert 'would violate PodSecurity "restricted:latest"' in warned[0]["message"]
    # retried with a backoff, the Events are not: one per cause (variant) while it lasts
    time.sleep(3 * BACKOFF)
    assert len(events(sandbox, ns, "PodSecurityRejected")) <= 2
    assert sum(e.get("count", 1) for e in events(sandbox, ns, "PodSecurityRejected")) <= 2
    # the cause goes: replicas start and the conditions clear
    sandbox.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce-",
                    "--overwrite")
    wait_for(lambda: condition(sandbox, ns, "llama-8b", "Ready").get("status") == "True",
             timeout=60, what="Ready=True once the namespace allows the pods")
    assert condition(sandbox, ns, "llama-8b", "Degraded")["status"] == "False"
    assert metric(operator, "inferpool_degraded", namespace=ns, inferencepool="llama-8b",
                  reason="PodSecurityRejected") == 0


def test_a_quota_on_one_family_moves_the_replicas_to_the_other(
        sandbox: Sandbox, ns: str, operator: OperatorProcess) -> None:
    sandbox.kubectl("create", "quota", "no-gpus", "-n", ns, "--hard=requests.nvidia.com/gpu=0")
    sandbox.kubectl("apply", "-n", ns, "-f", str(EXAMPLE))
    wait_for(lambda: condition(sandbox, ns, "llama-8b", "Degraded").get("reason")
             == "QuotaExceeded", timeout=TICK + 5, what="Degraded QuotaExceeded")
    message = condition(sandbox, ns, "llama-8b", "Degraded")["message"]
    assert "variant l4" in message
    assert "exceeded quota: no-gpus" in message
    assert events(sandbox, ns, "QuotaExceeded")
    # the L4 replicas are planned on Inferentia2, which the quota does not limit
    wait_for(lambda: condition(sandbox, ns, "llama-8b", "Ready").get("status") == "True",
             timeout=60, what="Ready on the other variant")
    assert all(d["metadata"]["labels"]["inferpool.dev/variant"] == "inf2"
               for d in deployments(sandbox, ns).values())
    # the quota raised: L4 is retried after its backoff and used again
    sandbox.kubectl("delete", "quota", "no-gpus", "-n", ns)
    wait_for(lambda: condition(sandbox, ns, "llama-8b", "Degraded").get("status") == "False",
             timeout=60, what="Degraded=False once the quota allows the pods")


def test_a_deployment_the_api_refuses_names_the_field_and_is_not_retried_every_tick(
        sandbox: Sandbox, ns: str, operator: OperatorProcess) -> None:
    # admitted by the InferencePool's schema, refused in the Deployment: a mount of no volume
    pool = ipool("chat", 10, [H100])
    container = pool["spec"]["variants"][0]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "weights", "mountPath": "/models"}]
    before = metric(operator, "inferpool_api_write_errors_total", kind="Deployment",
                    code="422")
    apply(sandbox, ns, pool)
    wait_for(lambda: condition(sandbox, ns, "chat", "Degraded").get("reason")
             == "WriteRejected", timeout=TICK + 5, what="Degraded WriteRejected")
    message = condition(sandbox, ns, "chat", "Degraded")["message"]
    assert "422 Invalid" in message
    assert "spec.template.spec.containers[0].volumeMounts[0].name" in message
    assert 'Not found: "weights"' in message
    assert condition(sandbox, ns, "chat", "Ready")["reason"] == "WriteRejected"
    wait_for(lambda: events(sandbox, ns, "WriteRejected"), timeout=5, what="the Event")
    assert "volumeMounts[0].name" in events(sandbox, ns, "WriteRejected")[0]["message"]
    # a new spec is dry-run first: refused before anything is applied
    assert "a dry run of Deployment" in message
    logged = [line for line in operator.log_lines()
              if line.get("event") in ("dry run refused", "apply failed")
              and line.get("status") == 422]
    assert logged
    assert 'Not found: "weights"' in logged[-1]["message"]
    assert logged[-1]["fields"] == ["spec.template.spec.containers[0].volumeMounts[0].name"]
    # backed off (4 s, 8 s, 16 s...): not once per tick and wake-up
    time.sleep(20)
    tries = metric(operator, "inferpool_api_write_errors_total", kind="Deployment",
                   code="422") - before
    assert 1 <= tries <= 4, tries


def test_colliding_derived_names_get_distinct_deployments_and_a_foreign_one_is_left_alone(
        sandbox: Sandbox, ns: str, operator: OperatorProcess) -> None:
    # a Deployment of somebody else's under the plain name `qa-l4-x-h100`
    sandbox.kubectl("create", "deployment", "qa-l4-x-h100", "-n", ns, "--image=nginx",
                    "--replicas=0")
    foreign = sandbox.get_json("deployment", "qa-l4-x-h100", "-n", ns)
    for name, variant in (("chat-3.1", "h100"), ("chat-3-1", "h100"), ("qa", "l4-x"),
                          ("qa-l4", "x")):
        pool = ipool(name, 10, [{**H100, "name": variant}])
        apply(sandbox, ns, pool)

    def placed() -> dict[str, str]:
        return {f'{d["metadata"]["labels"].get("inferpool.dev/pool")}/'
                f'{d["metadata"]["labels"].get("inferpool.dev/variant")}': name
                for name, d in deployments(sandbox, ns).items()
                if d["metadata"].get("ownerReferences")}

    wait_for(lambda: len(placed()) == 4, timeout=30, what="four Deployments of ours")
    names = placed()
    assert len(set(names.values())) == 4, names
    assert "qa-l4-x-h100" not in names.values()
    after = sandbox.get_json("deployment", "qa-l4-x-h100", "-n", ns)
    assert after["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")
    # the pool whose plain name it holds says so, naming it
    wait_for(lambda: condition(sandbox, ns, "qa", "Degraded").get("reason") == "NameConflict",
             timeout=TICK + 5, what="a NameConflict condition")
    assert f"Deployment {ns}/qa-l4-x-h100 is not this InferencePool's" in condition(
        sandbox, ns, "qa", "Degraded")["message"]
    assert events(sandbox, ns, "NameConflict")
    wait_for(lambda: all(condition(sandbox, ns, p, "Ready").get("status") == "True"
                         for p in ("chat-3.1", "chat-3-1", "qa", "qa-l4")),
             timeout=60, what="all four pools Ready")
