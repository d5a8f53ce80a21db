"""pydantic JSON Schema -> Kubernetes structural OpenAPI v3 schema.

The API server accepts only structural schemas: every node has a type, no $ref, no nullable
unions, no `additionalProperties: false`. pydantic emits JSON Schema 2020-12, so this module
rewrites it; anything it does not know how to translate is an error rather than a silent loss
of validation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from inferpool.api.cel import KEY as CEL_KEY

Schema = dict[str, Any]

# Keys printed first, so that the generated YAML reads top-down like hand-written CRDs.
_ORDER = ("description", "type", "format", "enum", "default", "minimum", "exclusiveMinimum",
          "maximum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems",
          "maxItems", "minProperties", "maxProperties", "required")
_DROPPED = frozenset({"title"})
_UNSUPPORTED = frozenset({"propertyNames", "oneOf", "not", "prefixItems", "uniqueItems",
                          "patternProperties", "$defs", "if", "then", "else"})


class SchemaError(ValueError):
    """The model uses a JSON Schema feature that has no structural OpenAPI equivalent."""


def structural_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, path=model.__name__)


def _merge(target: Mapping[str, Any], site: Mapping[str, Any]) -> Schema:
    """Keys written where a type is used win over the type's own, except CEL rules, which add."""
    merged = {**target, **site}
    rules = [*target.get(CEL_KEY, ()), *site.get(CEL_KEY, ())]
    if rules:
        merged[CEL_KEY] = rules
    return merged


def _convert(node: Mapping[str, Any], defs: Mapping[str, Any], path: str) -> Schema:
    site = dict(node)
    if "$ref" in site:
        target = defs[site.pop("$ref").rsplit("/", 1)[-1]]
        return _convert(_merge(target, site), defs, path)
    if "allOf" in site and len(site["allOf"]) == 1:
        return _convert(_merge(site.pop("allOf")[0], site), defs, path)
    if "anyOf" in site:
        return _convert_union(site, defs, path)
    bad = _UNSUPPORTED & site.keys()
    if bad:
        raise SchemaError(f"{path}: unsupported JSON Schema keywords {sorted(bad)}")

    out: Schema = {}
    for key, value in site.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020 numeric form -> OpenAPI 3.0 boolean form.
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, Mapping):
                out[key] = _convert(value, defs, f"{path}.*")
            # `false` (extra="forbid") is what pruning already does: nothing to emit.
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, f"{path}[]")
        elif key == "description":
            out[key] = _prose(value)
        elif key == CEL_KEY:
            out[key] = [_rule_ordered(r) for r in value]
        else:
            out[key] = value
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path}: no type")
    return _ordered(out)


def _convert_union(site: Schema, defs: Mapping[str, Any], path: str) -> Schema:
    options = [o for o in site.pop("anyOf") if o != {"type": "null"}]
    if site.get("default", ...) is None:
        del site["default"]
    if len(options) == 1:
        # `X | None`: optional means "not required", never `type: null`.
        return _convert(_merge(options[0], site), defs, path)
    if sorted(str(o.get("type")) for o in options) == ["integer", "string"]:
        # Bounds of each branch are not expressible here; they are CEL rules on the field.
        site["x-kubernetes-int-or-string"] = True
        return _convert(site, defs, path)
    raise SchemaError(f"{path}: unions other than `X | None` and `int | str` are not structural")


def _prose(text: str) -> str:
    """Docstrings are wrapped at 100 columns; kubectl explain wraps by itself."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _rule_ordered(cel_rule: Mapping[str, str]) -> dict[str, str]:
    rank = {key: i for i, key in enumerate(("rule", "message", "fieldPath", "reason"))}
    return dict(sorted(cel_rule.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def _ordered(schema: Schema) -> Schema:
    rank = {key: i for i, key in enumerate(_ORDER)}
    return dict(sorted(schema.items(), key=lambda kv: rank.get(kv[0], len(rank))))
