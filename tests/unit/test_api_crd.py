"""CRD generation: structural output, the rules it must carry, the CLI, and drift from crds/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferpool.api import crd
from inferpool.api.cel import SECURITY_REASON
from inferpool.api.schema import SchemaError, structural_schema
from inferpool.cli import main

REPO = Path(__file__).resolve().parents[2]


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")


def _schema(resource: crd.Resource, **kwargs: bool) -> dict[str, Any]:
    generated = crd.crd(resource, **kwargs)
    schema: dict[str, Any] = generated["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _own_paths(resource: crd.Resource) -> set[str]:
    """Paths our models declare (the rest of a template's PodSpec is the real core/v1 schema,
    api/pod_schema.py: bounded and documented by Kubernetes itself)."""
    return {f".spec{p}" for p, _ in _nodes(structural_schema(resource.spec))}


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_schema_is_structural(resource: crd.Resource) -> None:
    own = _own_paths(resource)
    for path, node in _nodes(_schema(resource)):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "nullable", "title",
                    "propertyNames", "uniqueItems"} & node.keys(), path
        assert node.get("type") != "null", path
        assert ("type" in node or node.get("x-kubernetes-int-or-string")
                or node.get("x-kubernetes-preserve-unknown-fields")), path
        assert node.get("additionalProperties") is not False, path
        if path.startswith(".spec") and path not in own:
            continue
        if node.get("type") == "array":  # CEL cost estimation needs bounds
            assert "maxItems" in node, path
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_every_spec_field_is_documented(resource: crd.Resource) -> None:
    spec = _schema(resource)["properties"]["spec"]
    own = _own_paths(resource)
    undocumented = [path for path, node in _nodes(spec) if path and "description" not in node
                    and not path.endswith(("[]", ".*")) and f".spec{path}" in own]
    assert undocumented == []


def test_the_template_spec_is_the_real_pod_spec_with_our_rules_over_it() -> None:
    template = _schema(crd.INFERENCE_POOL)["properties"]["spec"]["properties"]["variants"][
        "items"]["properties"]["template"]["properties"]["spec"]
    container = template["properties"]["containers"]["items"]
    assert {"resources", "env", "readinessProbe", "volumeMounts"} <= container["properties"].keys()
    assert "x-kubernetes-preserve-unknown-fields" not in container  # typos are not kept
    assert container["properties"]["name"]["maxLength"] == 63  # our bounds win
    assert template["properties"]["containers"]["x-kubernetes-list-type"] == "map"  # unique names
    assert any(r.get("reason") == SECURITY_REASON for r in
               container["properties"]["securityContext"]["properties"]["privileged"][
                   "x-kubernetes-validations"])
    limits = container["properties"]["resources"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"x-kubernetes-preserve-unknown-fields": True}


def test_inference_pool_crd_names_and_columns() -> None:
    generated = crd.crd(crd.INFERENCE_POOL)
    names = generated["spec"]["names"]
    assert generated["metadata"]["name"] == "inferencepools.inferpool.dev"
    assert names["shortNames"] == ["ipool"]
    assert names["categories"] == ["inferpool"]
    assert generated["spec"]["scope"] == "Namespaced"
    version = generated["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Replicas": ".status.readyReplicas", "Desired": ".status.desiredReplicas",
        "Demand": ".status.demand", "Capacity": ".status.capacity",
        "Cost/h": ".status.costPerHour", "Families": ".status.families",
        "Model": ".spec.model", "Age": ".metadata.creationTimestamp",
    }


def test_accelerator_pool_crd_is_cluster_scoped() -> None:
    generated = crd.crd(crd.ACCELERATOR_POOL)
    assert generated["spec"]["scope"] == "Cluster"
    assert generated["spec"]["names"]["shortNames"] == ["apool"]


def test_cross_field_rules_are_in_the_schema() -> None:
    spec = _schema(crd.INFERENCE_POOL)["properties"]["spec"]
    rules = {r["rule"] for _, node in _nodes(spec)
             for r in node.get("x-kubernetes-validations", ())}
    assert "self.min <= self.max" in rules
    assert "!has(self.topology) || self.family == 'tpu'" in rules
    assert "has(self.fixed) != has(self.prometheus)" in rules
    variants = spec["properties"]["variants"]
    assert variants["minItems"] == 1
    assert variants["x-kubernetes-list-type"] == "map"
    assert variants["x-kubernetes-list-map-keys"] == ["name"]


def test_optional_fields_are_not_required_and_defaults_are_by_alias() -> None:
    spec = _schema(crd.INFERENCE_POOL)["properties"]["spec"]
    demand = spec["properties"]["demand"]
    assert "required" not in demand
    assert demand["properties"]["scaleDown"]["default"] == {"stabilizationSeconds": 300,
                                                           "tolerance": 0.05}
    surge = spec["properties"]["rollout"]["properties"]["maxSurge"]
    assert surge["x-kubernetes-int-or-string"] is True
    assert surge["default"] == "25%"
    assert "type" not in surge
    assert surge["x-kubernetes-validations"]


def test_relaxed_variant_drops_only_the_security_rules() -> None:
    def rules(schema: dict[str, Any]) -> list[dict[str, str]]:
        return [r for _, node in _nodes(schema) for r in node.get("x-kubernetes-validations", ())]

    strict = rules(_schema(crd.INFERENCE_POOL))
    relaxed = rules(_schema(crd.INFERENCE_POOL, allow_privileged_templates=True))
    security = [r for r in strict if r.get("reason") == SECURITY_REASON]
    assert len(security) >= 7  # privileged, capabilities, hostPort, hostPath, 3 namespaces
    assert relaxed == [r for r in strict if r.get("reason") != SECURITY_REASON]
    assert crd.crd(crd.INFERENCE_POOL, allow_privileged_templates=True)["metadata"][
        "annotations"]["inferpool.dev/template-policy"] == "operator"


def test_unsupported_unions_are_refused() -> None:
    from pydantic import BaseModel

    class Odd(BaseModel):
        value: int | list[int]

    with pytest.raises(SchemaError, match="unions"):
        structural_schema(Odd)


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_crds_directory_matches_the_models(resource: crd.Resource) -> None:
    committed = (REPO / "crds" / resource.filename).read_text()
    assert committed == crd.render([crd.crd(resource)]), (
        "crds/ drifted from inferpool.api: run `inferpool crds --output-dir crds`")


def test_cli_prints_all_crds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs] == [r.crd_name for r in crd.RESOURCES]


def test_cli_writes_files(tmp_path: Path) -> None:
    assert main(["crds", "--output-dir", str(tmp_path)]) == 0
    for resource in crd.RESOURCES:
        assert (tmp_path / resource.filename).read_text() == (
            REPO / "crds" / resource.filename).read_text()
