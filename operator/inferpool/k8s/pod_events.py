"""The Events autoscalers post on pods, read when replicas wait in elastic pools
(controller/autoscaler.py says what they mean).

Listed, not watched: a watch would stream every Event of the cluster to the operator, while a
list filtered on the server by reason is small and only made while some replica of ours waits
for a node. One list per reason (field selectors cannot say "or"), per watched namespace when
the operator watches only some.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kubernetes import client


def list_pod_events(core: client.CoreV1Api, reasons: Iterable[str],
                    namespaces: Sequence[str] = (), *, timeout: float = 5.0
                    ) -> list[dict[str, Any]]:
    """Events on pods with one of `reasons`, as JSON-shaped dicts; `namespaces` empty: all.
    Raises what the client raises (the caller reports it and plans without them)."""
    out: list[dict[str, Any]] = []
    serialize = core.api_client.sanitize_for_serialization
    for reason in reasons:
        selector = f"involvedObject.kind=Pod,reason={reason}"
        if namespaces:
            listed = [core.list_namespaced_event(ns, field_selector=selector,
                                                 _request_timeout=timeout) for ns in namespaces]
        else:
            listed = [core.list_event_for_all_namespaces(field_selector=selector,
                                                         _request_timeout=timeout)]
        out += [serialize(item) for result in listed for item in result.items or ()]
    return out
