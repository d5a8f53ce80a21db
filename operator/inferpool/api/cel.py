"""Helpers to attach CEL validation rules (`x-kubernetes-validations`) to pydantic schemas.

Every rule written here has a pydantic twin next to it, so objects that were stored before a
CRD upgrade (and so never passed the rule) are still refused by the operator.
"""

from __future__ import annotations

from typing import Any, Final

Rule = dict[str, str]

KEY: Final = "x-kubernetes-validations"

# Reason that tags the template security rules, so that the relaxed CRD variant (see
# crd.generate_crds) can drop exactly these and nothing else.
SECURITY_REASON: Final = "FieldValueForbidden"


def rule(expression: str, message: str, *, field_path: str | None = None,
         reason: str | None = None) -> Rule:
    """One x-kubernetes-validations entry. `field_path` makes the API server report the error
    at that sub-field (relative to the schema node the rule is attached to)."""
    out: Rule = {"rule": expression, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def cel(*rules: Rule, **extra: Any) -> dict[str, Any]:
    """A `json_schema_extra` mapping that carries the rules (and any other schema keys)."""
    return {KEY: list(rules), **extra}
