"""The models as the operator uses them: parsing bodies and examples, templates, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from inferpool.api import (
    ALLOW_PRIVILEGED,
    AcceleratorPool,
    CapacityType,
    Condition,
    ConditionStatus,
    Family,
    InferencePool,
    set_condition,
    template_violations,
)
from tests.unit.test_api_cases import base_pool

REPO = Path(__file__).resolve().parents[2]
MODELS = {"InferencePool": InferencePool, "AcceleratorPool": AcceleratorPool}


def _examples() -> list[dict[str, Any]]:
    return [doc for path in sorted((REPO / "examples").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_examples_parse() -> None:
    kinds = [doc["kind"] for doc in _examples()]
    assert kinds.count("InferencePool") == 2
    assert kinds.count("AcceleratorPool") == 5
    for doc in _examples():
        MODELS[doc["kind"]].model_validate(doc)


def test_seventy_b_example_spans_three_families() -> None:
    pool = next(InferencePool.model_validate(d) for d in _examples()
                if d["metadata"]["name"] == "llama-70b")
    assert pool.spec.families() == {Family.NVIDIA, Family.TPU, Family.NEURON}
    v6e = pool.spec.variant("v6e")
    assert (v6e.accelerator.type, v6e.accelerator.topology) == ("tpu-v6e-slice", "2x4")


def test_example_pools_select_sandbox_node_pools() -> None:
    pools = [AcceleratorPool.model_validate(d) for d in _examples()
             if d["kind"] == "AcceleratorPool"]
    assert {p.spec.node_selector["inferpool.dev/node-pool"] for p in pools} == {
        "h100", "l4", "v6e", "trn2", "inf2"}
    assert all(p.spec.price_per_accelerator_hour > 0 for p in pools)


def test_kopf_like_body_parses_with_defaults() -> None:
    body = base_pool() | {"status": {"readyReplicas": 2, "somethingNewer": 1}}
    body["metadata"] |= {"namespace": "serving", "uid": "u1", "generation": 3,
                         "managedFields": [{}], "labels": None}
    pool = InferencePool.model_validate(body)
    assert pool.metadata.namespace == "serving"
    assert pool.metadata.labels == {}
    assert pool.spec.demand.target_utilization == 0.7
    assert pool.spec.demand.scale_down.stabilization_seconds == 300
    assert pool.spec.rollout.max_surge == "25%"
    assert pool.status is not None
    assert pool.status.ready_replicas == 2


def test_dump_is_camel_case_and_round_trips() -> None:
    pool = InferencePool.model_validate(base_pool())
    dumped = pool.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert "targetUtilization" in dumped["spec"]["demand"]
    assert "target_utilization" not in str(dumped)
    assert InferencePool.model_validate(dumped) == pool


def test_models_are_frozen() -> None:
    pool = InferencePool.model_validate(base_pool())
    with pytest.raises(ValidationError):
        pool.spec.replicas.max = 3  # type: ignore[misc]


def test_strict_scalars_refuse_coercion() -> None:
    body = base_pool()
    body["spec"]["replicas"]["max"] = "8"
    with pytest.raises(ValidationError, match=r"spec\.replicas\.max"):
        InferencePool.model_validate(body)


def _privileged_pool() -> dict[str, Any]:
    body = base_pool()
    spec = body["spec"]["variants"][0]["template"]["spec"]
    spec["hostNetwork"] = True
    spec["containers"][0]["securityContext"] = {"privileged": True,
                                                "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}
    spec["volumes"] = [{"name": "dev", "hostPath": {"path": "/dev"}}]
    return body


def test_privileged_template_needs_the_namespace_allowance() -> None:
    with pytest.raises(ValidationError) as caught:
        InferencePool.model_validate(_privileged_pool())
    assert {e["type"] for e in caught.value.errors()} == {"host_access"}
    allowed = InferencePool.model_validate(_privileged_pool(), context={ALLOW_PRIVILEGED: True})
    spec = allowed.spec.variants[0].template.to_dict()["spec"]
    assert spec["containers"][0]["securityContext"]["privileged"] is True


def test_template_violations_lists_every_path() -> None:
    pool = InferencePool.model_validate(_privileged_pool(), context={ALLOW_PRIVILEGED: True})
    problems = template_violations(pool.spec.variants[0].template)
    assert [p.split(":")[0] for p in problems] == [
        "spec.containers[0].securityContext.privileged",
        "spec.containers[0].securityContext.capabilities.add",
        "spec.volumes[0].hostPath",
        "spec.hostNetwork",
    ]
    assert "NET_ADMIN" in problems[1]
    assert "CHOWN" not in problems[1]
    assert template_violations(base_pool()["spec"]["variants"][0]["template"]) == []


def test_template_keeps_unknown_pod_fields() -> None:
    body = base_pool()
    template = body["spec"]["variants"][0]["template"]
    template["spec"]["serviceAccountName"] = "reader"
    template["spec"]["containers"][0]["env"] = [{"name": "HF_HOME", "value": "/cache"}]
    pool = InferencePool.model_validate(body)
    assert pool.spec.variants[0].template.to_dict() == template


def test_accelerator_pool_defaults() -> None:
    body = {"metadata": {"name": "l4"}, "spec": {
        "family": "nvidia", "nodeSelector": {"inferpool.dev/node-pool": "l4"},
        "pricePerAcceleratorHour": 0.71}}
    pool = AcceleratorPool.model_validate(body)
    assert pool.spec.capacity_type is CapacityType.ON_DEMAND
    assert pool.spec.max_accelerators is None


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ready = Condition(type="Ready", status=ConditionStatus.TRUE, reason="Placed",
                      last_transition_time=t0)
    other = Condition(type="Degraded", status=ConditionStatus.FALSE, reason="Healthy",
                      last_transition_time=t0)
    later = t0 + timedelta(minutes=5)
    same = ready.model_copy(update={"message": "6/6", "last_transition_time": later})
    kept = set_condition((ready, other), same)
    assert kept[0].last_transition_time == t0
    assert kept[0].message == "6/6"
    flipped = ready.model_copy(update={"status": ConditionStatus.FALSE,
                                       "last_transition_time": later})
    assert set_condition(kept, flipped)[0].last_transition_time == later
    assert [c.type for c in set_condition((other,), ready)] == ["Degraded", "Ready"]
