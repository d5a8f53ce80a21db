"""The generated CRDs on a real API server: examples apply, columns and docs show, bad objects
are refused naming their field, and the server agrees with pydantic on generated objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from inferpool.api import AcceleratorPool, InferencePool
from inferpool.sandbox.operator_process import wait_established
from tests.support import Sandbox, wait_for
from tests.unit.test_api_cases import (
    BAD,
    MODELS,
    Bad,
    base_apool,
    base_pool,
    invalid_pools,
    valid_pools,
)

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
CRD_NAMES = ("inferencepools.inferpool.dev", "acceleratorpools.inferpool.dev")
_HYPOTHESIS = settings(max_examples=20, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.function_scoped_fixture,
                                              HealthCheck.too_slow])


@pytest.fixture(scope="module")
def crds(sandbox: Sandbox) -> Sandbox:
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    wait_established(sandbox.kubectl_path, sandbox.kubeconfig, CRD_NAMES)
    # Discovery lags behind Established; shortNames must resolve before the tests use them.
    wait_for(lambda: sandbox.kubectl("get", "ipool,apool", "-A", check=False).returncode == 0,
             what="ipool and apool in discovery")
    return sandbox


def _dry_run(sandbox: Sandbox, obj: dict[str, Any], namespace: str
             ) -> tuple[int, str, dict[str, Any] | None]:
    done = sandbox.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace,
                           "-f", "-", input=json.dumps(obj), check=False)
    return done.returncode, done.stderr, json.loads(done.stdout) if done.returncode == 0 else None


@pytest.fixture
def examples(crds: Sandbox, namespace: str) -> Iterator[Sandbox]:
    files = sorted((REPO / "examples").glob("*.yaml"))
    try:
        for example in files:
            crds.kubectl("apply", "-n", namespace, "-f", str(example))
        yield crds
    finally:  # AcceleratorPools are cluster-scoped: the namespace's deletion does not take them
        for example in files:
            crds.kubectl("delete", "-n", namespace, "--ignore-not-found", "-f", str(example),
                         check=False)


def test_examples_apply_and_show_columns(examples: Sandbox, namespace: str) -> None:
    crds = examples
    pools = crds.get_json("ipool", "-n", namespace)["items"]
    assert {p["metadata"]["name"] for p in pools} >= {"llama-70b", "llama-8b"}
    for body in pools:
        InferencePool.model_validate(body)
    for body in crds.get_json("apool")["items"]:
        AcceleratorPool.model_validate(body)

    crds.kubectl("patch", "ipool", "llama-70b", "-n", namespace, "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": {
                     "readyReplicas": 5, "desiredReplicas": 6, "demand": 61.5, "capacity": 70,
                     "costPerHour": 295.4, "families": "nvidia,tpu,neuron",
                     "conditions": [{"type": "Ready", "status": "False",
                                     "reason": "PodSecurityRejected", "message": "m",
                                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
    table = crds.kubectl("get", "ipool", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "REPLICAS", "DESIRED", "DEMAND",
                                "CAPACITY", "COST/H", "FAMILIES", "AGE"]
    row = next(line.split() for line in table if line.startswith("llama-70b"))
    assert row[1:9] == ["False", "PodSecurityRejected", "5", "6", "61.5", "70", "295.4",
                        "nvidia,tpu,neuron"]
    header = crds.kubectl("get", "apool").stdout.splitlines()[0].split()
    assert header == ["NAME", "FAMILY", "CAPACITY-TYPE", "PRICE", "NODES", "READY",
                      "ALLOCATABLE", "IN-USE", "AGE"]
    assert "llama-70b" in crds.kubectl("get", "inferpool", "-n", namespace).stdout


def test_explain_documents_variants(crds: Sandbox) -> None:
    text = wait_for(lambda: crds.kubectl("explain", "ipool.spec.variants").stdout,
                    what="explain to see the new schema")
    for field in ("accelerator", "capacity", "costPerHour", "preference", "template"):
        assert field in text
    assert "Requests/s one replica serves" in text
    topology = crds.kubectl("explain", "ipool.spec.variants.accelerator.topology").stdout
    assert "gke-tpu-topology" in topology


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.id)
def test_server_refuses_and_names_the_field(crds: Sandbox, namespace: str, bad: Bad) -> None:
    code, stderr, _ = _dry_run(crds, bad.body(), namespace)
    assert code != 0, f"{bad.id} was accepted"
    assert bad.field in stderr, stderr


def test_defaults_match_pydantic(crds: Sandbox, namespace: str) -> None:
    for kind, body in (("InferencePool", base_pool()), ("AcceleratorPool", base_apool())):
        code, stderr, stored = _dry_run(crds, body, namespace)
        assert code == 0, stderr
        assert stored is not None
        model = MODELS[kind]
        assert model.model_validate(stored).spec == model.model_validate(body).spec  # type: ignore[attr-defined]


@_HYPOTHESIS
@given(pool=valid_pools())
def test_generated_pools_are_accepted(crds: Sandbox, namespace: str, pool: dict[str, Any]
                                      ) -> None:
    InferencePool.model_validate(pool)
    code, stderr, stored = _dry_run(crds, pool, namespace)
    assert code == 0, stderr
    assert stored is not None
    assert InferencePool.model_validate(stored).spec == InferencePool.model_validate(pool).spec


@_HYPOTHESIS
@given(case=invalid_pools())
def test_broken_pools_are_refused_by_both(crds: Sandbox, namespace: str,
                                          case: tuple[str, dict[str, Any]]) -> None:
    what, pool = case
    with pytest.raises(ValueError, match="validation error"):
        InferencePool.model_validate(pool)
    code, stderr, _ = _dry_run(crds, pool, namespace)
    assert code != 0, f"server accepted a pool with {what}"
    assert "invalid" in stderr.lower(), stderr


# -- the template's real PodSpec schema (api/pod_schema.py) --------------------------------


def _with_template_spec(**fields: Any) -> dict[str, Any]:
    pool = base_pool()
    pool["spec"]["variants"][0]["template"]["spec"]["containers"][0].update(fields)
    return pool


def test_a_typo_in_the_template_is_refused_at_apply_naming_the_field(
        crds: Sandbox, namespace: str) -> None:
    typo = _with_template_spec(resouces={"limits": {"cpu": "1"}})
    done = crds.kubectl("apply", "--validate=strict", "--dry-run=server", "-n", namespace,
                        "-f", "-", input=json.dumps(typo), check=False)
    assert done.returncode != 0, "a template typo was accepted"
    assert 'unknown field "spec.variants[0].template.spec.containers[0].resouces"' in \
        done.stderr, done.stderr
    wrong_type = _with_template_spec(ports=[{"containerPort": "http"}])
    code, stderr, _ = _dry_run(crds, wrong_type, namespace)
    assert code != 0
    assert "containerPort" in stderr


def test_real_pod_fields_are_kept_as_written(crds: Sandbox, namespace: str) -> None:
    fields = {"resources": {"limits": {"cpu": 0.5, "memory": "8Gi"}, "requests": {"cpu": "250m"}},
              "env": [{"name": "A", "value": "1"}],
              "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
              "ports": [{"name": "http", "containerPort": 8000}]}
    code, stderr, stored = _dry_run(crds, _with_template_spec(**fields), namespace)
    assert code == 0, stderr
    assert stored is not None
    container = stored["spec"]["variants"][0]["template"]["spec"]["containers"][0]
    assert {k: container[k] for k in fields} == fields


def test_the_stored_pod_spec_schema_is_what_the_api_server_serves(crds: Sandbox) -> None:
    from inferpool.api import pod_schema

    served = json.loads(crds.kubectl("get", "--raw", "/openapi/v3/api/v1").stdout)
    assert pod_schema.closure(served["components"]["schemas"]) == \
        pod_schema.stored_components(), "run `inferpool crds --refresh-pod-spec` and `make crds`"
