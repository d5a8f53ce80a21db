"""The Deployment made for one (InferencePool, variant, node pool), and whether a live one
already matches it."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferpool.k8s import labels as lbl

# How long pods stay bound to a NotReady/unreachable node before Kubernetes evicts them.
# The default (300 s) is what makes a dead pool hold capacity hostage; the planner already
# places replacements at once, this just stops the old pods from lingering.
DEFAULT_TOLERATION_SECONDS = 30


@dataclass(frozen=True)
class Workload:
    """What the operator needs from one variant to build its Deployments."""

    pool: str  # InferencePool name
    namespace: str
    owner_uid: str
    variant: str
    family: str
    accelerators: int
    template: Mapping[str, Any]  # the variant's pod template (metadata, spec)
    max_surge: str | int = "25%"


def build(workload: Workload, node_pool: str, node_selector: Mapping[str, str], replicas: int,
          toleration_seconds: int = DEFAULT_TOLERATION_SECONDS, name: str | None = None
          ) -> dict[str, Any]:
    """`name`: the Deployment's name (controller/naming.py); by default the plain one."""
    selector = {lbl.POOL: workload.pool, lbl.VARIANT: workload.variant, lbl.NODE_POOL: node_pool}
    ours = {**selector, lbl.ACCELERATOR: workload.family, lbl.MANAGED_BY: lbl.MANAGER}
    template = copy.deepcopy(dict(workload.template))
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **ours}
    spec = template.setdefault("spec", {})
    spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **node_selector}
    spec["tolerations"] = _tolerations(spec.get("tolerations") or [], workload.family,
                                       toleration_seconds)
    _set_accelerator_limit(spec, lbl.FAMILY_RESOURCE[workload.family], workload.accelerators)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name or lbl.deployment_name(workload.pool, workload.variant, node_pool),
            "namespace": workload.namespace,
            "labels": ours,
            "ownerReferences": [lbl.owner_reference(workload.pool, workload.owner_uid)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            # Template changes roll make-before-break too: new pods first, old ones after.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": workload.max_surge, "maxUnavailable": 0}},
            "template": template,
        },
    }
    body["metadata"]["annotations"] = {lbl.DESIRED_DIGEST: digest(body)}
    return body


def digest(body: Mapping[str, Any]) -> str:
    """A short fingerprint of a Deployment body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tolerations(user: list[dict[str, Any]], family: str, seconds: int) -> list[dict[str, Any]]:
    short = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    kept = [t for t in user if t.get("key") not in short]
    family_key = lbl.FAMILY_TAINT_KEY[family]
    if not any(t.get("key") == family_key for t in kept):
        kept.append({"key": family_key, "operator": "Exists", "effect": "NoSchedule"})
    kept += [{"key": key, "operator": "Exists", "effect": "NoExecute",
              "tolerationSeconds": seconds} for key in short]
    return kept


def _set_accelerator_limit(spec: dict[str, Any], resource: str, count: int) -> None:
    """The first container asks for the variant's accelerators (requests must equal limits for
    extended resources); any other container asking for them would double-count, so it can't."""
    containers = spec.get("containers") or []
    if not containers:
        return
    resources = containers[0].setdefault("resources", {})
    for kind in ("limits", "requests"):
        resources[kind] = {**(resources.get(kind) or {}), resource: str(count)}


def matches(desired: Any, live: Any) -> bool:
    """True when every field we set has the same value in `live` (server defaults may add more).

    Lists must have the same length and match item by item; this is what makes a manual edit to
    an owned Deployment visible, while defaulting by the API server is not a difference.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and matches(value, live[key]) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(
            matches(d, v) for d, v in zip(desired, live, strict=True))
    if isinstance(desired, str) and isinstance(live, (int, float)) and not isinstance(live, bool):
        return desired == str(live)
    return bool(desired == live)


def replacement(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The whole Deployment to PUT when fields someone else set must go (an apply cannot remove
    another manager's fields): our spec, our labels and owner, the live annotations (the
    Deployment controller keeps its revision there) and resourceVersion (a concurrent change
    makes the write fail instead of being overwritten unseen)."""
    body = copy.deepcopy(dict(desired))
    live_meta = live.get("metadata") or {}
    meta = body["metadata"]
    meta["labels"] = {**(live_meta.get("labels") or {}), **meta["labels"]}
    meta["annotations"] = {**(live_meta.get("annotations") or {}),
                           **(meta.get("annotations") or {})}
    if live_meta.get("resourceVersion"):
        meta["resourceVersion"] = live_meta["resourceVersion"]
    return body


def is_owned(body: Mapping[str, Any]) -> bool:
    """A Deployment is ours when an InferencePool is its controller (owner reference): labels
    can be removed by anyone, and a Deployment without them would be forgotten for good."""
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(r, Mapping) and r.get("controller") is True
               and r.get("kind") == "InferencePool"
               and str(r.get("apiVersion", "")).split("/", 1)[0] == lbl.GROUP for r in refs)


# Set by `kubectl rollout restart`: a deliberate restart, not drift (reverting it would restart
# every replica a second time).
_RESTARTED_AT = ("f:spec", "f:template", "f:metadata", "f:annotations",
                 "f:kubectl.kubernetes.io/restartedAt")


def foreign_fields(managed_fields: Any, manager: str = lbl.FIELD_MANAGER) -> list[str]:
    """Spec fields of a Deployment that another field manager set and we do not: drift outside
    the fields the operator sets (e.g. `hostNetwork: true` or an env var added by hand), which
    `matches` cannot see and a server-side apply does not remove. Read from
    metadata.managedFields; fields the server defaulted belong to no manager."""
    ours: set[tuple[str, ...]] = set()
    theirs: set[tuple[str, ...]] = set()
    for entry in managed_fields or []:
        if not isinstance(entry, Mapping) or entry.get("subresource") == "status":
            continue
        fields = (entry.get("fieldsV1") or {}).get("f:spec")
        if not isinstance(fields, Mapping):
            continue
        into = ours if entry.get("manager") == manager else theirs
        into.update(_leaves(fields, ("f:spec",)))
    return sorted(".".join(p) for p in theirs - ours if p[:len(_RESTARTED_AT)] != _RESTARTED_AT)


def _leaves(fields: Mapping[str, Any], prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for key, value in fields.items():
        path = prefix if key == "." else (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            out |= _leaves(value, path)
        else:
            out.add(path)
    return out
