"""The real core/v1 PodSpec schema for the `template` field, from the API server's own document.

`pod-spec-openapi.json` holds the components of the kube-apiserver's OpenAPI v3 document
(`/openapi/v3/api/v1`) that `io.k8s.api.core.v1.PodSpec` reaches, as served by the Kubernetes
version the sandbox builds (`inferpool crds --refresh-pod-spec` rewrites it from a running
sandbox; a sandbox test fails on drift). Here they become one structural schema: references
inlined, descriptions dropped (the CRD stays under kubectl's 256 KiB client-side apply limit),
quantities and int-or-strings in the forms a CRD allows, defaults left to the Deployment's own
API. The template's own rules (security, limits, CEL) are then laid over it (`overlay`).

So a typo such as `resouces:` is refused at `kubectl apply`, where an open schema would keep it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from inferpool.api.cel import KEY as CEL_KEY

Schema = dict[str, Any]
ROOT = "io.k8s.api.core.v1.PodSpec"
FILE = "pod-spec-openapi.json"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
# Keys of the OpenAPI document that a CRD schema has too; everything else (descriptions, patch
# strategies, unions, defaults) is left out.
_KEPT = ("type", "format", "enum", "required", "x-kubernetes-list-type",
         "x-kubernetes-list-map-keys", "x-kubernetes-map-type")
_FORMATS = frozenset({"int32", "int64", "double", "float", "byte", "date-time"})


def closure(components: Mapping[str, Any], root: str = ROOT) -> dict[str, Any]:
    """The components `root` reaches, by name, without descriptions (what
    pod-spec-openapi.json stores)."""
    out: dict[str, Any] = {}
    stack = [root]
    while stack:
        name = stack.pop()
        if name in out:
            continue
        out[name] = _undescribed(components[name])
        stack.extend(_refs(components[name]))
    return dict(sorted(out.items()))


def document(served: Mapping[str, Any], version: str) -> dict[str, Any]:
    """What pod-spec-openapi.json holds, from the served `/openapi/v3/api/v1` document."""
    return {"source": f"kube-apiserver {version} /openapi/v3/api/v1, the components {ROOT} "
                      "reaches, descriptions removed",
            "components": closure(served["components"]["schemas"])}


def _undescribed(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _undescribed(v)
                for k, v in node.items() if k != "description" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_undescribed(v) for v in node]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        found = [str(node["$ref"]).rsplit("/", 1)[-1]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@cache
def stored_components() -> dict[str, Any]:
    text = resources.files("inferpool.api").joinpath(FILE).read_text()
    components: dict[str, Any] = json.loads(text)["components"]
    return components


def pod_spec_schema(components: Mapping[str, Any] | None = None) -> Schema:
    """The structural schema of a PodSpec (a fresh copy: callers may change it)."""
    return _expand(components or stored_components(), ROOT, ())


def _expand(components: Mapping[str, Any], name: str, seen: tuple[str, ...]) -> Schema:
    if name in seen:
        raise ValueError(f"{' -> '.join((*seen, name))}: recursive types have no structural "
                         "schema")
    if name == _QUANTITY:
        # a number or a string ("4", 4, "500m", 0.5): any scalar, the Deployment validates it
        return {"x-kubernetes-preserve-unknown-fields": True}
    if name == _INT_OR_STRING:
        return {"x-kubernetes-int-or-string": True}
    return _node(components, components[name], (*seen, name))


def _node(components: Mapping[str, Any], node: Mapping[str, Any], seen: tuple[str, ...]
          ) -> Schema:
    if "$ref" in node:
        return _expand(components, str(node["$ref"]).rsplit("/", 1)[-1], seen)
    if "allOf" in node and len(node["allOf"]) == 1:
        return _node(components, node["allOf"][0], seen)
    if "oneOf" in node or "anyOf" in node or "allOf" in node:
        raise ValueError(f"{seen[-1]}: unexpected composition {sorted(node)}")
    out: Schema = {k: copy.deepcopy(node[k]) for k in _KEPT if k in node}
    if out.get("format") not in _FORMATS:
        out.pop("format", None)
    if "properties" in node:
        out["properties"] = {k: _node(components, v, seen) for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = _node(components, node["items"], seen)
    if "additionalProperties" in node:
        extra = node["additionalProperties"]
        if isinstance(extra, Mapping):
            out["additionalProperties"] = _node(components, extra, seen)
    if out.get("x-kubernetes-list-type") == "map":
        # a CRD needs every map key required (or defaulted, and defaults are left out)
        keys = out.get("x-kubernetes-list-map-keys", [])
        if not set(keys) <= set(out.get("items", {}).get("required", ())):
            out.pop("x-kubernetes-list-type")
            out.pop("x-kubernetes-list-map-keys", None)
    if out.get("type") == "object" and not out.get("properties") and \
            "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True  # e.g. RawExtension, FieldsV1
    return out


def overlay(base: Schema, rules: Mapping[str, Any]) -> Schema:
    """`base` (the real schema) with `rules` (the template model's schema) laid over it: the
    model's limits, patterns, CEL rules and descriptions win; its open parts (kept unknown
    fields) give way to the real properties; fields only the model knows are added."""
    out = copy.deepcopy(base)
    for key, value in rules.items():
        if key in ("properties", "items", "additionalProperties", "type",
                   "x-kubernetes-preserve-unknown-fields"):
            continue
        if key == CEL_KEY:
            out[CEL_KEY] = [*out.get(CEL_KEY, ()), *value]
        else:
            out[key] = copy.deepcopy(value)
    if "properties" not in out and rules.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("x-kubernetes-preserve-unknown-fields", True)
    for name, sub in (rules.get("properties") or {}).items():
        known = (out.get("properties") or {}).get(name)
        out.setdefault("properties", {})[name] = (overlay(known, sub) if known is not None
                                                   else copy.deepcopy(sub))
    for key in ("items", "additionalProperties"):
        if isinstance(rules.get(key), Mapping) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], rules[key])
    return out
