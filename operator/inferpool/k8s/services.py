"""The Service made for one InferencePool: the model's one endpoint across its variants.

It selects the operator's pods of that InferencePool (`inferpool.dev/pool`, managed by us), so a
client reaches whichever accelerator serves, and only Ready pods get traffic (the endpoint
controllers' rule). Routing follows placement without the operator doing anything per move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferpool.k8s import labels as lbl


def target_port(service: Mapping[str, Any], template: Mapping[str, Any]) -> int | str | None:
    """The spec's `targetPort`, else the first port of the template's first container (its
    name if it has one: the same name may map to different numbers in different variants)."""
    if service.get("targetPort") is not None:
        chosen: int | str = service["targetPort"]
        return chosen
    containers = (template.get("spec") or {}).get("containers") or []
    ports = (containers[0].get("ports") or []) if containers else []
    if not ports:
        return None
    first = ports[0]
    named: int | str = first.get("name") or first["containerPort"]
    return named


def build(pool: str, namespace: str, owner_uid: str, service: Mapping[str, Any],
          first_template: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Service body, or None when it is disabled or no target port is known."""
    if not service.get("enabled", True):
        return None
    target = target_port(service, first_template)
    if target is None:
        return None
    port = service.get("port") or (target if isinstance(target, int) else 80)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": pool,
            "namespace": namespace,
            "labels": lbl.model_pods(pool),
            "ownerReferences": [lbl.owner_reference(pool, owner_uid)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": lbl.model_pods(pool),
            "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": target}],
        },
    }
