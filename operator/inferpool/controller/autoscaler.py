"""What an autoscaler says about our Pending pods in elastic pools (pure; k8s/pod_events.py reads
the Events, controller/health.py acts on them).

A replica placed on an elastic pool's planned room is unschedulable until its node registers.
It is *provisioning* while the autoscaler works for it and a *stockout* once the autoscaler says
it cannot launch a node, which both Karpenter and the cluster autoscaler report as Events on the
pod (Karpenter v1: `Nominated` "Pod should schedule on: nodeclaim/...", `FailedScheduling`
"Failed to schedule pod, ..." and `InsufficientCapacityError` when a launch fails; the cluster
autoscaler: `TriggeredScaleUp`, `NotTriggerScaleUp`, `FailedScaleUp`). The scheduler's own
`FailedScheduling` is not a verdict: it only says that no node exists yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PROVISIONING_REASONS = frozenset({"Nominated", "TriggeredScaleUp"})
CANNOT_REASONS = frozenset({"FailedScheduling", "InsufficientCapacityError",
                            "NotTriggerScaleUp", "FailedScaleUp"})
# what Events are listed for (one field-selected list per reason)
REASONS = tuple(sorted(PROVISIONING_REASONS | CANNOT_REASONS))
AUTOSCALERS = frozenset({"karpenter", "cluster-autoscaler"})
_NAMES = {"karpenter": "Karpenter", "cluster-autoscaler": "the cluster autoscaler"}


@dataclass(frozen=True)
class Signal:
    """The autoscaler's latest word on one pod."""

    provisioning: bool  # False: it cannot launch a node for the pod
    reason: str
    message: str
    component: str
    at: dt.datetime

    @property
    def says(self) -> str:
        """For status and Events: who said what, e.g. `Karpenter: Failed to schedule pod, ...`."""
        return f"{_NAMES.get(self.component, self.component)}: {self.message}"


def signals(events: Iterable[Mapping[str, Any]]) -> dict[str, Signal]:
    """"namespace/name" of each pod an autoscaler spoke of -> its latest Signal. Events of other
    components (the scheduler's FailedScheduling), of other kinds and with unknown reasons are
    left out."""
    out: dict[str, Signal] = {}
    for event in events:
        signal, pod = _signal(event)
        if signal is not None and (pod not in out or signal.at >= out[pod].at):
            out[pod] = signal
    return out


def _signal(event: Mapping[str, Any]) -> tuple[Signal | None, str]:
    involved = _map(event.get("involvedObject") or event.get("regarding"))
    reason = str(event.get("reason") or "")
    component = str(_map(event.get("source")).get("component") or event.get(
        "reportingComponent") or event.get("reportingController") or "")
    pod = f"{involved.get('namespace') or ''}/{involved.get('name') or ''}"
    if (involved.get("kind") != "Pod" or component not in AUTOSCALERS
            or reason not in PROVISIONING_REASONS | CANNOT_REASONS):
        return None, pod
    at = _latest(event)
    if at is None:
        return None, pod
    message = " ".join(str(event.get("message") or event.get("note") or "").split())
    return Signal(reason in PROVISIONING_REASONS, reason, message[:512], component, at), pod


def _latest(event: Mapping[str, Any]) -> dt.datetime | None:
    """When the event last happened: the latest of its timestamps (old-style recorders set
    lastTimestamp, events.k8s.io ones eventTime and series.lastObservedTime)."""
    stamps = [event.get("lastTimestamp"), event.get("eventTime"),
              _map(event.get("series")).get("lastObservedTime"),
              _map(event.get("metadata")).get("creationTimestamp")]
    parsed = [t for t in map(_parse, stamps) if t is not None]
    return max(parsed) if parsed else None


def _parse(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
