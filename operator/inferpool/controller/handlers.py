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
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import kopf
import structlog
from kubernetes.client.exceptions import ApiException

from inferpool.controller import views
from inferpool.controller.planner import INDEX_NAMES, Planner
from inferpool.k8s import deployments as dep
from inferpool.k8s import labels as lbl
from inferpool.k8s.listing import object_versions

log = structlog.get_logger("inferpool.handlers")

View = Callable[[Mapping[str, Any]], dict[str, Any]]
# resource name -> "namespace/name" -> resourceVersion of every object that exists now
ListKeys = Callable[[str], Mapping[str, str | None] | set[str]]
GetObject = Callable[[str, str], dict[str, Any] | None]  # (resource, key) -> body, None: gone

RESOURCES: dict[str, tuple[tuple[str, ...], View]] = {
    "nodes": (("v1", "nodes"), views.node_view),
    "pods": (("v1", "pods"), views.pod_view),
    "accelerator_pools": ((lbl.GROUP, lbl.VERSION, "acceleratorpools"), views.custom_resource_view),
    "inference_pools": ((lbl.GROUP, lbl.VERSION, "inferencepools"), views.custom_resource_view),
    "deployments": (("apps", "v1", "deployments"), views.deployment_view),
}
assert tuple(RESOURCES) == INDEX_NAMES


class Attachable(Protocol):
    def attach(self, indexes: Mapping[str, Mapping[str, dict[str, Any]]]) -> None: ...
    def wake(self, reason: str) -> None: ...


@dataclass(frozen=True)
class Seen:
    """The last watch event (or resync) of one object: its resourceVersion, and when."""

    resource_version: str | None
    at: float  # monotonic


class Caches:
    """Per resource, "namespace/name" -> slim view; and every object seen (also those without a
    view, such as pods that take no accelerators), to compare with a listing (`fill`, resync)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.views: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in INDEX_NAMES}
        self.known: dict[str, dict[str, Seen]] = {n: {} for n in INDEX_NAMES}
        self.deleted: dict[str, dict[str, float]] = {n: {} for n in INDEX_NAMES}  # key -> when
        # "namespace/name" of Deployments that are not ours: their names are never written
        self.foreign_deployments: set[str] = set()

    def saw(self, name: str, key: str, resource_version: str | None = None) -> None:
        self.known[name][key] = Seen(resource_version, self.clock())
        self.deleted[name].pop(key, None)

    def put(self, name: str, body: Mapping[str, Any], view: View) -> bool:
        """Take an object's current body (watch event or resync); True when the view changed."""
        key = views.key(body)
        self.saw(name, key, (body.get("metadata") or {}).get("resourceVersion"))
        if name == "pods" and not views.wants_accelerators(body.get("spec") or {}):
            return False  # seen (for `fill`), but other pods take no accelerators
        cache = self.views[name]
        if name == "deployments" and not dep.is_owned(body):
            # not (or no longer) ours: with a label filter a stale copy would stay here, and a
            # Deployment deleted after its label was removed would never be recreated
            self.foreign_deployments.add(key)
            return cache.pop(key, None) is not None
        if name == "deployments":
            self.foreign_deployments.discard(key)
        slim = view(body)
        if cache.get(key) == slim:  # a heartbeat that changes nothing we read
            return False
        cache[key] = slim
        return True

    def forget(self, name: str, key: str) -> bool:
        """The object is gone; True when it had a view."""
        self.known[name].pop(key, None)
        self.deleted[name][key] = self.clock()
        if name == "deployments":
            self.foreign_deployments.discard(key)
        return self.views[name].pop(key, None) is not None

    def event_since(self, name: str, key: str, since: float) -> bool:
        seen = self.known[name].get(key)
        return (seen is not None and seen.at >= since) or self.deleted[name].get(key, -1) >= since

    def missing(self, name: str, existing: set[str]) -> set[str]:
        return existing - self.known[name].keys()


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
                existing = set(await asyncio.to_thread(list_keys, name))
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
    planner.attach(caches.views)
    planner.wake("caches complete")
    log.info("caches complete", seconds=round(time.monotonic() - started, 2),
             **{name: len(view) for name, view in caches.views.items()})


def lister(planner: Planner, namespaces: tuple[str, ...]
           ) -> Callable[[str], dict[str, str | None]]:
    """`list_keys` for `fill` and the resync: every watched object's resourceVersion, by key,
    through the planner's API clients and the watched namespaces (metadata only)."""
    core, apps, custom = planner.core, planner.apps, planner.custom

    def namespaced(name: str, ns: str | None) -> dict[str, str | None]:
        if name == "pods":
            return (object_versions(core.list_namespaced_pod, ns) if ns
                    else object_versions(core.list_pod_for_all_namespaces))
        if name == "deployments":
            # all of them: ours are told by their owner reference, which no label selects
            return (object_versions(apps.list_namespaced_deployment, ns) if ns
                    else object_versions(apps.list_deployment_for_all_namespaces))
        group, version, plural = RESOURCES[name][0]
        if ns:
            return object_versions(custom.list_namespaced_custom_object, group, version, ns,
                                   plural)
        return object_versions(custom.list_cluster_custom_object, group, version, plural)

    def list_keys(name: str) -> dict[str, str | None]:
        if name == "nodes":
            return object_versions(core.list_node)
        if name == "accelerator_pools":  # cluster-scoped, watched whatever the namespaces
            return namespaced(name, None)
        if not namespaces:
            return namespaced(name, None)
        out: dict[str, str | None] = {}
        for ns in namespaces:
            out.update(namespaced(name, ns))
        return out

    return list_keys


def prober(planner: Planner) -> Callable[[str, str], None]:
    """A `namespaces.Probe`: list one object of a namespaced resource, to learn whether the
    operator may read it there (raises ApiException, e.g. 403)."""
    core, apps, custom = planner.core, planner.apps, planner.custom

    def probe(name: str, ns: str) -> None:
        kwargs: dict[str, Any] = {"limit": 1, "_preload_content": False}
        if name == "pods":
            core.list_namespaced_pod(ns, **kwargs)
        elif name == "deployments":
            apps.list_namespaced_deployment(ns, **kwargs)
        else:
            group, version, plural = RESOURCES[name][0]
            custom.list_namespaced_custom_object(group, version, ns, plural, **kwargs)

    return probe


def getter(planner: Planner) -> GetObject:
    """`get_object` for the resync: one object's full body, None when it no longer exists or
    (a Deployment) is no longer ours."""
    core, apps, custom = planner.core, planner.apps, planner.custom

    def raw(call: Callable[..., Any], *args: Any) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(call(*args, _preload_content=False).data)
        return body

    def get_object(name: str, key: str) -> dict[str, Any] | None:
        ns, _, obj = key.partition("/")
        try:
            if name == "nodes":
                return raw(core.read_node, obj)
            if name == "pods":
                return raw(core.read_namespaced_pod, obj, ns)
            if name == "deployments":
                body = raw(apps.read_namespaced_deployment, obj, ns)
                return body if dep.is_owned(body) else None
            group, version, plural = RESOURCES[name][0]
            found: dict[str, Any] = (
                custom.get_namespaced_custom_object(group, version, ns, plural, obj) if ns
                else custom.get_cluster_custom_object(group, version, plural, obj))
            return found
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return get_object


def observe(caches: Caches, planner: Attachable, name: str, event: Mapping[str, Any],
            body: Mapping[str, Any]) -> None:
    """One watch event of resource `name`: keep its view (or drop it), wake the planner if
    something it reads changed."""
    if event.get("type") == "DELETED":
        if caches.forget(name, views.key(body)):
            planner.wake(f"{name} deleted")
    elif caches.put(name, body, RESOURCES[name][1]):
        owned = name != "deployments" or dep.is_owned(body)
        planner.wake(f"{name} changed" if owned else f"{name} disowned")


def register(registry: kopf.OperatorRegistry, planner: Planner, caches: Caches) -> None:
    """One event handler per watched resource: keep the view, wake the planner on a change."""
    for name, (resource, _view) in RESOURCES.items():

        # async: kopf runs plain functions in its thread pool, a hop per watch event (thousands
        # at start-up), and the planner's asyncio events must be set from the loop's thread
        async def on_event(event: Mapping[str, Any], body: Mapping[str, Any], *,
                           _name: str = name, **_: Any) -> None:
            observe(caches, planner, _name, event, body)

        kopf.on.event(*resource, id=f"{name}-event", registry=registry)(on_event)
