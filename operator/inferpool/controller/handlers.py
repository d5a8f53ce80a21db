"""kopf wiring only: indexes keep slim views of what the planner reads; event handlers wake it.

kopf calls event handlers only after every index has been filled by its initial listing, so the
planner, which starts on the first event, never plans from a half-listed cluster (which could
look like "no nodes" and scale everything down). Nothing here writes to the API: handlers never
touch the objects they watch (no finalizers, no kopf annotations).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from inferpool.controller import views
from inferpool.controller.planner import INDEX_NAMES, Planner
from inferpool.k8s import labels as lbl

View = Callable[[Mapping[str, Any]], dict[str, Any]]

RESOURCES: dict[str, tuple[tuple[str, ...], View]] = {
    "nodes": (("v1", "nodes"), views.node_view),
    "pods": (("v1", "pods"), views.pod_view),
    "accelerator_pools": ((lbl.GROUP, lbl.VERSION, "acceleratorpools"), views.identity),
    "inference_pools": ((lbl.GROUP, lbl.VERSION, "inferencepools"), views.identity),
    "deployments": (("apps", "v1", "deployments"), views.deployment_view),
}
assert tuple(RESOURCES) == INDEX_NAMES


def _accelerator_pods(spec: Mapping[str, Any], **_: Any) -> bool:
    return views.wants_accelerators(spec)


def register(registry: kopf.OperatorRegistry, planner: Planner) -> None:
    """One index and one waking event handler per watched resource."""
    digests: dict[tuple[str, str], str] = {}
    for name, (resource, view) in RESOURCES.items():
        filters: dict[str, Any] = {}
        if name == "deployments":
            filters["labels"] = {lbl.MANAGED_BY: lbl.MANAGER}
        if name == "pods":
            filters["when"] = _accelerator_pods

        # async: kopf runs plain functions in its thread pool, a hop per watch event (thousands
        # at start-up), and the planner's asyncio events must be set from the loop's thread
        async def index(body: Mapping[str, Any], *, _view: View = view, **_: Any
                        ) -> dict[str, dict[str, Any]]:
            return {views.key(body): _view(body)}

        async def on_event(event: Mapping[str, Any], body: Mapping[str, Any], *,
                           _name: str = name, _view: View = view, **kwargs: Any) -> None:
            if not planner.ready.is_set():
                planner.attach({n: kwargs[f"ip_{n}"] for n in INDEX_NAMES})
            key = views.key(body)
            if event.get("type") == "DELETED":
                digests.pop((_name, key), None)
                planner.wake(f"{_name} deleted")
                return
            digest = hashlib.blake2b(json.dumps(_view(body), sort_keys=True, default=str)
                                     .encode(), digest_size=16).hexdigest()
            if digests.get((_name, key)) != digest:
                digests[(_name, key)] = digest
                planner.wake(f"{_name} changed")

        kopf.index(*resource, id=f"ip_{name}", registry=registry, **filters)(index)
        kopf.on.event(*resource, id=f"{name}-event", registry=registry, **filters)(on_event)
