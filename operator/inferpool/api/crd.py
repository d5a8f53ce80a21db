"""CustomResourceDefinitions, generated from the models (crds/ is their output, drift-checked)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from inferpool.api.accelerator_pool import AcceleratorPoolSpec, AcceleratorPoolStatus
from inferpool.api.cel import KEY as CEL_KEY
from inferpool.api.cel import SECURITY_REASON, rule
from inferpool.api.common import CATEGORY, DNS_LABEL_MAX, GROUP, VERSION
from inferpool.api.inference_pool import InferencePoolSpec, InferencePoolStatus
from inferpool.api.pod_schema import overlay, pod_spec_schema
from inferpool.api.schema import Schema, structural_schema

HEADER = "# Generated from inferpool.api by `inferpool crds`. Do not edit.\n"


@dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    scope: Literal["Namespaced", "Cluster"]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    printer_columns: tuple[dict[str, Any], ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def filename(self) -> str:
        return f"{self.crd_name}.yaml"


def _column(name: str, type_: str, path: str, description: str, priority: int = 0
            ) -> dict[str, Any]:
    column = {"name": name, "type": type_, "jsonPath": path, "description": description}
    return column | ({"priority": priority} if priority else {})


_AGE = _column("Age", "date", ".metadata.creationTimestamp", "Time since creation")

INFERENCE_POOL = Resource(
    kind="InferencePool",
    plural="inferencepools",
    short_names=("ipool",),  # not "infpool": the Gateway API Inference Extension's kind has it
    scope="Namespaced",
    spec=InferencePoolSpec,
    status=InferencePoolStatus,
    description="InferencePool serves one model with replicas spread over accelerator "
                "families (NVIDIA GPU, Google TPU, AWS Neuron); the operator decides how many "
                "replicas of each variant run in each node pool.",
    printer_columns=(
        _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status',
                "Whether the pool serves its required capacity (the Ready condition)"),
        _column("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason',
                "Why, in one word (kubectl describe shows the message)"),
        _column("Replicas", "integer", ".status.readyReplicas", "Ready replicas"),
        _column("Desired", "integer", ".status.desiredReplicas", "Replicas the plan wants"),
        _column("Demand", "number", ".status.demand", "Demand in requests/s"),
        _column("Capacity", "number", ".status.capacity", "Requests/s the Ready replicas serve"),
        _column("Cost/h", "number", ".status.costPerHour", "Cost of the Ready replicas per hour"),
        _column("Families", "string", ".status.families", "Accelerator families in use"),
        _column("Model", "string", ".spec.model", "Model served", priority=1),
        _AGE,
    ),
)

ACCELERATOR_POOL = Resource(
    kind="AcceleratorPool",
    plural="acceleratorpools",
    short_names=("apool",),
    scope="Cluster",
    spec=AcceleratorPoolSpec,
    status=AcceleratorPoolStatus,
    description="AcceleratorPool declares a node pool of one accelerator type: which nodes, "
                "their price, and how they are bought. Its status reports the pool's capacity.",
    printer_columns=(
        _column("Family", "string", ".spec.family", "Accelerator family"),
        _column("Capacity-Type", "string", ".spec.capacityType", "spot, on-demand or reserved"),
        _column("Price", "number", ".spec.pricePerAcceleratorHour", "Price per accelerator-hour"),
        _column("Nodes", "integer", ".status.nodes", "Nodes matching the selector"),
        _column("Ready", "integer", ".status.readyNodes", "Ready, schedulable nodes"),
        _column("Allocatable", "integer", ".status.acceleratorsAllocatable",
                "Accelerators allocatable on Ready nodes"),
        _column("In-Use", "integer", ".status.acceleratorsInUse", "Accelerators requested by pods"),
        _column("Max-Nodes", "integer", ".status.maxNodes",
                "Elastic pools: the most nodes planned on (maxNodes or the autoscaler's limit)",
                priority=1),
        _AGE,
    ),
)

RESOURCES = (INFERENCE_POOL, ACCELERATOR_POOL)

# metadata cannot carry a schema of its own, so the name limit is a root rule. Names become
# label values (inferpool.dev/pool) and prefixes of Deployment names.
_NAME_RULE = rule(f"self.metadata.name.size() <= {DNS_LABEL_MAX}",
                  f"metadata.name must be at most {DNS_LABEL_MAX} characters")


def openapi_schema(resource: Resource, *, allow_privileged_templates: bool = False) -> Schema:
    spec = structural_schema(resource.spec)
    if resource is INFERENCE_POOL:
        spec = _with_real_pod_spec(spec)
    if allow_privileged_templates:
        spec = _without_security_rules(spec)
    return {
        "description": resource.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"description": "Versioned schema of this object.", "type": "string"},
            "kind": {"description": "REST resource this object represents.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": structural_schema(resource.status),
        },
        CEL_KEY: [_NAME_RULE],
    }


def crd(resource: Resource, *, allow_privileged_templates: bool = False) -> dict[str, Any]:
    """The CRD. With `allow_privileged_templates` the template security rules are left to the
    operator (its allowed-namespaces setting); see docs/api.md."""
    annotations = {"inferpool.dev/template-policy":
                   "operator" if allow_privileged_templates else "api-server"}
    schema = openapi_schema(resource, allow_privileged_templates=allow_privileged_templates)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name, "annotations": annotations,
                     "labels": {"app.kubernetes.io/part-of": "inferpool"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": list(resource.short_names),
                "categories": [CATEGORY],
            },
            "scope": resource.scope,
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [dict(c) for c in resource.printer_columns],
            }],
        },
    }


def generate_crds(*, allow_privileged_templates: bool = False) -> list[dict[str, Any]]:
    return [crd(r, allow_privileged_templates=allow_privileged_templates) for r in RESOURCES]


def render(crds: Iterable[dict[str, Any]]) -> str:
    """Multi-document YAML, stable byte for byte (the drift test compares it to crds/)."""
    docs = [yaml.dump(c, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
            for c in crds]
    return HEADER + "---\n".join(docs)


def write(directory: Path, *, allow_privileged_templates: bool = False) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for resource in RESOURCES:
        path = directory / resource.filename
        path.write_text(render([crd(resource,
                                    allow_privileged_templates=allow_privileged_templates)]))
        paths.append(path)
    return paths


def _with_real_pod_spec(spec: Schema) -> Schema:
    """Each variant's `template.spec` checked against the real PodSpec schema, the template
    model's own rules laid over it (api/pod_schema.py)."""
    out = copy.deepcopy(spec)
    template = out["properties"]["variants"]["items"]["properties"]["template"]
    template["properties"]["spec"] = overlay(pod_spec_schema(), template["properties"]["spec"])
    return out


def _without_security_rules(schema: Schema) -> Schema:
    out = copy.deepcopy(schema)
    stack = [out]
    while stack:
        node = stack.pop()
        if CEL_KEY in node:
            kept = [r for r in node[CEL_KEY] if r.get("reason") != SECURITY_REASON]
            if kept:
                node[CEL_KEY] = kept
            else:
                del node[CEL_KEY]
        stack.extend(node.get("properties", {}).values())
        stack.extend(n for n in (node.get("items"), node.get("additionalProperties"))
                     if isinstance(n, dict))
    return out


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings; no anchors (shared sub-schemas are written out)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
