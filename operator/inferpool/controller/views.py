"""Slim copies of watched objects, kept in the operator's caches (controller/handlers.py).

Only the fields the planner reads are kept, so memory stays small at thousands of nodes and pods,
and a heartbeat that changes nothing we read does not wake the planner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferpool.k8s import deployments as dep
from inferpool.k8s import labels as lbl

ACCELERATOR_RESOURCES = tuple(lbl.FAMILY_RESOURCE.values())
# what the scheduler compares besides accelerators (controller/binding.py)
SCHEDULED_RESOURCES = (*ACCELERATOR_RESOURCES, "aws.amazon.com/neuroncore", "cpu", "memory")


def key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name')}"


def custom_resource_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """InferencePools and AcceleratorPools, kept whole (apiVersion, kind, metadata, spec,
    status): they are parsed and validated from all of it, and there are few of them."""
    return {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec", "status") if k in body}


def node_view(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    return {
        "metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {}),
                     "creationTimestamp": meta.get("creationTimestamp"),
                     "deletionTimestamp": meta.get("deletionTimestamp")},
        "spec": {"unschedulable": bool(spec.get("unschedulable")),
                 "taints": [{"key": t.get("key"), "value": t.get("value"),
                             "effect": t.get("effect")}
                            for t in spec.get("taints") or []]},
        "status": {
            "allocatable": {k: v for k, v in (status.get("allocatable") or {}).items()
                            if k in SCHEDULED_RESOURCES},
            "conditions": [{"type": c.get("type"), "status": c.get("status")}
                           for c in status.get("conditions") or [] if c.get("type") == "Ready"],
        },
    }


def wants_accelerators(spec: Mapping[str, Any]) -> bool:
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = container.get("resources") or {}
        for kind in ("limits", "requests"):
            if any(r in (resources.get(kind) or {}) for r in ACCELERATOR_RESOURCES):
                return True
    return False


def pod_view(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})

    def slim_container(c: Mapping[str, Any]) -> dict[str, Any]:
        res = c.get("resources") or {}
        return {"name": c.get("name"), "resources": {
            kind: {k: v for k, v in (res.get(kind) or {}).items() if k in SCHEDULED_RESOURCES}
            for kind in ("limits", "requests")}}

    waiting = sorted({
        str(cs["state"]["waiting"].get("reason"))
        for cs in status.get("containerStatuses") or []
        if (cs.get("state") or {}).get("waiting")
    })
    return {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                     "labels": {k: v for k, v in (meta.get("labels") or {}).items()
                                if k.startswith("inferpool.dev/")},
                     "creationTimestamp": meta.get("creationTimestamp"),
                     "deletionTimestamp": meta.get("deletionTimestamp")},
        "spec": {"nodeName": spec.get("nodeName"),
                 "containers": [slim_container(c) for c in spec.get("containers") or []],
                 "initContainers": [slim_container(c) for c in spec.get("initContainers") or []]},
        "status": {
            "phase": status.get("phase"),
            "conditions": [{"type": c.get("type"), "status": c.get("status"),
                            "reason": c.get("reason")}
                           for c in status.get("conditions") or []
                           if c.get("type") in ("Ready", "PodScheduled")],
            "waiting": waiting,
        },
    }


def deployment_view(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(body.get("metadata", {}))
    # managedFields are large: keep only what they say about drift
    foreign = dep.foreign_fields(meta.pop("managedFields", None))
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": body.get("spec", {}), "status": body.get("status", {}),
            "foreignFields": foreign}
