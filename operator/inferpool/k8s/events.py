"""Kubernetes Events for decisions, deduplicated so a flapping condition does not flood the API."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

EventType = Literal["Normal", "Warning"]
COMPONENT = "inferpool-operator"


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str | None
    name: str
    uid: str


@dataclass
class EventDeduper:
    """Post an Event only when (object, reason, message) was not posted within `window` seconds,
    and at most `burst` Events per object per window."""

    window: float = 600.0
    burst: int = 10
    clock: Callable[[], float] = time.monotonic
    _last: dict[tuple[str, str, str], float] = field(default_factory=dict)
    _recent: dict[str, list[float]] = field(default_factory=dict)

    def allow(self, ref: ObjectRef, reason: str, message: str) -> bool:
        now = self.clock()
        key = (ref.uid, reason, message)
        if (seen := self._last.get(key)) is not None and now - seen < self.window:
            return False
        recent = [t for t in self._recent.get(ref.uid, []) if now - t < self.window]
        if len(recent) >= self.burst:
            self._recent[ref.uid] = recent
            return False
        self._last[key] = now
        self._recent[ref.uid] = [*recent, now]
        if len(self._last) > 10_000:  # forget old keys so memory stays bounded
            self._last = {k: t for k, t in self._last.items() if now - t < self.window}
        return True


def post(api: client.CoreV1Api, ref: ObjectRef, type_: EventType, reason: str, message: str,
         instance: str = COMPONENT, namespace_fallback: str = "default") -> None:
    """Create a core/v1 Event (blocking I/O). Failures are swallowed: an Event is best effort.
    `instance`: the operator instance (its pod) that writes it, as `reportingInstance` and
    `source.host`, so two replicas' Events can be told apart."""
    now = dt.datetime.now(dt.UTC)
    namespace = ref.namespace or namespace_fallback
    body: dict[str, Any] = {
        "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
        "involvedObject": {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name,
                           "namespace": ref.namespace, "uid": ref.uid},
        "reason": reason, "message": message[:1024], "type": type_,
        "source": {"component": COMPONENT, "host": instance}, "reportingComponent": COMPONENT,
        "reportingInstance": instance[:128], "action": reason,
        "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1,
    }
    with contextlib.suppress(ApiException):
        api.create_namespaced_event(namespace, body)
