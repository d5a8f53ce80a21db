"""kopf wiring only: event handlers keep slim views of what the planner reads and wake it.

The views live in our own `Caches`, not in kopf indexes. kopf holds every object's handlers
until all indexes are filled, and each object's progress wakes every waiting object: quadratic
in the number of objects, 285 s before the first plan at 5,000 nodes (docs/scale.md). kopf tells
plain event handlers nothing about its initial listing, so `fill` checks against the API server
that every object that exists has been seen before the planner may start: an incomplete view
looks like "no nodes" and would scale everything down. Nothing here writes to the API; handlers
never touch the objects they watch (no finalizers, no kopf annotations).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import kopf
import structlog
from kubernetes.client.exceptions import ApiException

from inferpool.controller import views
from inferpool.controller.planner import INDEX_NAMES, Planner
from inferpool.k8s import deployments as dep
from inferpool.k8s import labels as lbl
from inferpool.k8s.listing import object_keys

log = structlog.get_logger("inferpool.handlers")

View = Callable[[Mapping[str, Any]], dict[str, Any]]
ListKeys = Callable[[str], set[str]]  # resource name -> keys of the objects that exist now

RESOURCES: dict[str, tuple[tuple[str, ...], View]] = {
    "nodes": (("v1", "nodes"), views.node_view),
    "pods": (("v1", "pods"), views.pod_view),
    "accelerator_pools": ((lbl.GROUP, lbl.VERSION, "acceleratorpools"), views.identity),
    "inference_pools": ((lbl.GROUP, lbl.VERSION, "inferencepools"), views.identity),
    "deployments": (("apps", "v1", "deployments"), views.deployment_view),
}
assert tuple(RESOURCES) == INDEX_NAMES


class Attachable(Protocol):
    def attach(self, indexes: Mapping[str, Mapping[str, dict[str, Any]]]) -> None: ...
    def wake(self, reason: str) -> None: ...


class Caches:
    """Per resource, "namespace/name" -> slim view; and, until complete, every key seen."""

    def __init__(self) -> None:
        self.views: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in INDEX_NAMES}
        self._seen: dict[str, set[str]] | None = {n: set() for n in INDEX_NAMES}

    def saw(self, name: str, key: str) -> None:
        if self._seen is not None:
            self._seen[name].add(key)

    def missing(self, name: str, existing: set[str]) -> set[str]:
        return existing - self._seen[name] if self._seen is not None else set()

    def complete(self) -> None:
        self._seen = None


async def fill(caches: Caches, planner: Attachable, list_keys: ListKeys,
               interval: float = 0.5) -> None:
    """Attach the caches to the planner once every object the API server lists has been seen.
    An object deleted before kopf listed it drops out of the next listing; one created later
    arrives through the watch."""
    started = time.monotonic()
    pending = list(INDEX_NAMES)
    warned: set[tuple[str, str]] = set()  # each failure once, not every interval
    while pending:
        for name in list(pending):
            try:
                existing = await asyncio.to_thread(list_keys, name)
            except Exception as exc:
                if isinstance(exc, ApiException) and exc.status == 404:
                    existing = set()  # CRD not installed: nothing to wait for (kopf warns)
                else:  # unreachable, forbidden or failing: retry; the planner warns as well
                    error = (f"{exc.status} {exc.reason}" if isinstance(exc, ApiException)
                             else str(exc))
                    if (name, error) not in warned:
                        warned.add((name, error))
                        log.warning("cannot list to check the caches", resource=name,
                                    error=error)
                    continue
            if not caches.missing(name, existing):
                pending.remove(name)
        if pending:
            await asyncio.sleep(interval)
    caches.complete()
    planner.attach(caches.views)
    planner.wake("caches complete")
    log.info("caches complete", seconds=round(time.monotonic() - started, 2),
             **{name: len(view) for name, view in caches.views.items()})


def lister(planner: Planner, namespaces: tuple[str, ...]) -> ListKeys:
    """`list_keys` for `fill`, through the planner's API clients and the watched namespaces."""
    core, apps, custom = planner.core, planner.apps, planner.custom

    def namespaced(name: str, ns: str | None) -> set[str]:
        if name == "pods":
            return (object_keys(core.list_namespaced_pod, ns) if ns
                    else object_keys(core.list_pod_for_all_namespaces))
        if name == "deployments":
            # all of them: ours are told by their owner reference, which no label selects
            return (object_keys(apps.list_namespaced_deployment, ns) if ns
                    else object_keys(apps.list_deployment_for_all_namespaces))
        group, version, plural = RESOURCES[name][0]
        return (object_keys(custom.list_namespaced_custom_object, group, version, ns, plural)
                if ns else object_keys(custom.list_cluster_custom_object, group, version, plural))

    def list_keys(name: str) -> set[str]:
        if name == "nodes":
            return object_keys(core.list_node)
        if name == "accelerator_pools":  # cluster-scoped, watched whatever the namespaces
            return namespaced(name, None)
        if not namespaces:
            return namespaced(name, None)
        return set().union(*(namespaced(name, ns) for ns in namespaces))

    return list_keys


def observe(caches: Caches, planner: Attachable, name: str, event: Mapping[str, Any],
            body: Mapping[str, Any]) -> None:
    """One watch event of resource `name`: keep its view (or drop it), wake the planner if
    something it reads changed."""
    key = views.key(body)
    caches.saw(name, key)
    cache = caches.views[name]
    if event.get("type") == "DELETED":
        if cache.pop(key, None) is not None:
            planner.wake(f"{name} deleted")
        return
    if name == "pods" and not views.wants_accelerators(body.get("spec") or {}):
        return  # seen (for `fill`), but other pods take no accelerators
    if name == "deployments" and not dep.is_owned(body):
        # not (or no longer) ours: with a label filter a stale copy would stay here, and a
        # Deployment deleted after its label was removed would never be recreated
        if cache.pop(key, None) is not None:
            planner.wake("deployments disowned")
        return
    slim = RESOURCES[name][1](body)
    if cache.get(key) != slim:  # a heartbeat that changes nothing we read: no wake-up
        cache[key] = slim
        planner.wake(f"{name} changed")


def register(registry: kopf.OperatorRegistry, planner: Planner, caches: Caches) -> None:
    """One event handler per watched resource: keep the view, wake the planner on a change."""
    for name, (resource, _view) in RESOURCES.items():

        # async: kopf runs plain functions in its thread pool, a hop per watch event (thousands
        # at start-up), and the planner's asyncio events must be set from the loop's thread
        async def on_event(event: Mapping[str, Any], body: Mapping[str, Any], *,
                           _name: str = name, **_: Any) -> None:
            observe(caches, planner, _name, event, body)

        kopf.on.event(*resource, id=f"{name}-event", registry=registry)(on_event)
