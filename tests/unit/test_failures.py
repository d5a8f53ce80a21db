"""Why a replica cannot exist: the API server's words on Deployments and refused writes,
classified, held with a backoff and cleared when the cause goes (controller/failures.py); the
gate keeps a refused variant's Ready replicas until the plan has replacements."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inferpool.controller import failures as fl
from inferpool.controller.health import Backoff
from inferpool.controller.translate import LiveDeployment, make_before_break, parse_pools
from tests.unit.test_controller_rules import pool_body

PSA = ('pods "chat-l4-l4-556d445868-zmwbw" is forbidden: violates PodSecurity '
       '"restricted:latest": allowPrivilegeEscalation != false (container "server" must set '
       'securityContext.allowPrivilegeEscalation=false)')
QUOTA = ('pods "x-7c76cd6fff-b2jwz" is forbidden: exceeded quota: gpu, requested: '
         'requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=0, limited: '
         'requests.nvidia.com/gpu=0')
LIMITS = ('pods "x-1" is forbidden: maximum cpu usage per Container is 2, but limit is 8')
WEBHOOK = ('admission webhook "deny.example.com" denied the request: images must come from '
           'registry.corp')


def deployment(*conditions: dict[str, Any], replicas: int = 2, ready: int = 0,
               name: str = "chat-l4-l4") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"replicas": replicas},
            "status": {"readyReplicas": ready, "conditions": list(conditions)}}


def failure(message: str) -> dict[str, Any]:
    return {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": message}


@pytest.mark.parametrize(("message", "reason"), [
    (PSA, fl.POD_SECURITY), (QUOTA, fl.QUOTA), (LIMITS, fl.LIMIT_RANGE),
    (WEBHOOK, fl.ADMISSION), ("something else went wrong", fl.CREATE_FAILED)])
def test_a_replica_failure_names_the_admission_that_refused_the_pods(message: str,
                                                                      reason: str) -> None:
    refusal = fl.deployment_refusal(deployment(failure(message)))
    assert refusal is not None
    assert refusal.reason == reason
    assert "Deployment ns/chat-l4-l4" in refusal.message


def test_the_message_is_the_apis_own_without_the_pod_that_never_existed() -> None:
    one = fl.deployment_refusal(deployment(failure(PSA)))
    other = fl.deployment_refusal(deployment(failure(PSA.replace("zmwbw", "q2x8k"))))
    assert one is not None
    assert one == other
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation' in one.message
    assert "zmwbw" not in one.message


def test_a_stalled_rollout_is_a_refusal_and_a_healthy_deployment_is_none() -> None:
    stalled = deployment({"type": "Progressing", "status": "False",
                          "reason": "ProgressDeadlineExceeded",
                          "message": 'ReplicaSet "chat-l4-l4-1" has timed out progressing.'})
    refusal = fl.deployment_refusal(stalled)
    assert refusal is not None
    assert refusal.reason == fl.DEADLINE
    assert "timed out progressing" in refusal.message
    assert fl.deployment_refusal(deployment(
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        {"type": "ReplicaFailure", "status": "False", "reason": "FailedCreate"})) is None
    assert fl.deployment_refusal({"metadata": {}, "status": {"conditions": ["junk"]}}) is None


def test_a_refused_write_reports_code_reason_message_and_field() -> None:
    body = json.dumps({
        "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": 'Deployment.apps "chat-l4-l4" is invalid: spec.template.spec.containers[0]'
                   '.volumeMounts[0].name: Not found: "missing"',
        "details": {"causes": [{"reason": "FieldValueNotFound", "message": 'Not found: '
                                '"missing"', "field": "spec.template.spec.containers[0]"
                                ".volumeMounts[0].name"}]}})
    error = fl.write_error(422, "Unprocessable Entity", body.encode())
    assert error.permanent
    assert error.fields == ("spec.template.spec.containers[0].volumeMounts[0].name",)
    text = fl.write_refusal("ns/chat-l4-l4", error).message
    assert "422 Invalid" in text
    assert 'Not found: "missing"' in text
    assert "field spec.template.spec.containers[0].volumeMounts[0].name" in text
    # a body that is no Status is quoted; no answer at all is said so
    assert fl.write_error(500, "Internal Server Error", "upstream broke").message == \
        "upstream broke"
    assert not fl.write_error(500, "Internal Server Error", "").permanent
    assert fl.write_error(None, None, None).describe().startswith("no answer")


def test_a_refused_variant_is_held_with_a_backoff_and_cleared_when_the_cause_goes() -> None:
    tracker = fl.RefusalTracker(Backoff(initial=60))
    key = ("ns/chat", "l4", "l4")
    refused = [(key, deployment(failure(PSA)))]
    assert tracker.observe(refused, now=0.0) == [("ns/chat", "l4")]
    assert tracker.observe(refused, now=1.0) == []  # once per cause, not per tick
    assert tracker.refused(30.0) == {("ns/chat", "l4")}
    assert tracker.why[("ns/chat", "l4")].reason == fl.POD_SECURITY
    assert tracker.refused(61.0) == frozenset()  # retried after the backoff
    assert tracker.observe(refused, now=62.0) == [("ns/chat", "l4")]
    assert tracker.refused(62.0 + 119)
    assert not tracker.refused(62.0 + 121)
    # a Deployment still starting proves nothing; one running every replica clears at once
    tracker.observe(refused, now=200.0)
    tracker.observe([(key, deployment(replicas=2, ready=1))], now=201.0)
    assert tracker.refused(202.0)
    tracker.observe([(key, deployment(replicas=2, ready=2))], now=203.0)
    assert tracker.refused(204.0) == frozenset()
    assert not tracker.why
    assert tracker.observe(refused, now=205.0) == [("ns/chat", "l4")]
    assert not tracker.refused(205.0 + 61)  # the backoff started over


def live(key: tuple[str, str, str], replicas: int, ready: int) -> LiveDeployment:
    return LiveDeployment(key=key, name="-".join(key[1:]), namespace="ns", replicas=replicas,
                          ready=ready, body={})


def test_a_refused_variant_keeps_its_ready_replicas_until_replacements_are_ready() -> None:
    (pool,), _ = parse_pools([pool_body(replicas={"min": 2, "max": 10})])
    old, new = ("ns/chat", "v6e", "a"), ("ns/chat", "other", "b")
    refused = frozenset({("ns/chat", "v6e")})
    current = {old: live(old, 4, 2), new: live(new, 2, 0)}
    gate = make_before_break({new: 2}, current, {pool.key: pool}, {}, now=10.0,
                             refused=refused)
    assert gate.targets[old] == 2  # the two that serve; the refused ones are not asked for
    current[new] = live(new, 2, 2)
    gate = make_before_break({new: 2}, current, {pool.key: pool}, {}, now=11.0,
                             refused=refused)
    assert gate.targets[old] == 0
    # nothing planned elsewhere (every variant refused): never below what serves
    gate = make_before_break({}, {old: live(old, 4, 2)}, {pool.key: pool}, {}, now=12.0,
                             refused=refused)
    assert gate.targets[old] == 2
    assert "refused" in gate.holding[pool.key]
    # and none Ready: nothing to keep
    gate = make_before_break({}, {old: live(old, 4, 0)}, {pool.key: pool}, {}, now=12.0,
                             refused=refused)
    assert gate.targets[old] == 0


def test_admission_warnings_are_read_from_the_warning_header() -> None:
    header = ('299 - "would violate PodSecurity \\"restricted:latest\\": runAsNonRoot != true", '
              '299 - "spec.template.spec.containers[0].ports[0]: duplicate port"')
    assert fl.warnings(header) == ['would violate PodSecurity "restricted:latest": '
                                   'runAsNonRoot != true',
                                   "spec.template.spec.containers[0].ports[0]: duplicate port"]
    assert fl.warnings(None) == []
    assert fl.warnings("garbage") == []
