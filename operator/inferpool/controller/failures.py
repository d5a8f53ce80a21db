"""Why a replica cannot exist, in the API server's words (pure; the planner acts on it).

Health (controller/health.py) judges pods that exist. A pod that admission refuses never
exists: the ReplicaSet controller says why in its `ReplicaFailure` condition, which the
Deployment controller copies onto the Deployment (`ReplicaFailure` / `FailedCreate`); a rollout
that stalls ends as `Progressing=False ProgressDeadlineExceeded`. A Deployment the API server
refuses to store is our own write's failure, told by the Status body of the response. Each
becomes a `Refusal` of the variant: its capacity is planned elsewhere and the variant retried
after a backoff, like a broken one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferpool.controller.health import Backoff

PlacementKey = tuple[str, str, str]  # (pool key, variant, node pool), as placement names it
VariantKey = tuple[str, str]  # (pool key, variant)

POD_SECURITY = "PodSecurityRejected"
QUOTA = "QuotaExceeded"
LIMIT_RANGE = "LimitRangeRejected"
ADMISSION = "AdmissionDenied"
CREATE_FAILED = "PodCreateFailed"
DEADLINE = "ProgressDeadlineExceeded"
WRITE = "WriteRejected"
NAME_CONFLICT = "NameConflict"
REASONS = (POD_SECURITY, QUOTA, LIMIT_RANGE, ADMISSION, CREATE_FAILED, DEADLINE, WRITE)

# Client errors that the same body gets again: retried after a backoff, not on every tick.
PERMANENT_CODES = frozenset({400, 403, 422})
# `pods "chat-l4-l4-6d9f-x7k2q" is forbidden: ` names a pod that never existed, a new one on
# every try: without it one cause keeps one message (one Event, not one per attempt).
_POD_PREFIX = re.compile(r'^pods? "[^"]*" is forbidden: ')


@dataclass(frozen=True)
class Refusal:
    reason: str  # one of REASONS
    message: str  # the API's own words


def pod_create_reason(message: str) -> str:
    """Which admission refused a pod, from the message the API server gave the ReplicaSet."""
    text = message.lower()
    if "violates podsecurity" in text:
        return POD_SECURITY
    if "exceeded quota" in text or "failed quota" in text:
        return QUOTA
    if " usage per " in text or "limit to request ratio" in text:  # LimitRanger's words
        return LIMIT_RANGE
    if "admission webhook" in text or "denied the request" in text or "forbidden" in text:
        return ADMISSION
    return CREATE_FAILED


def deployment_refusal(body: Mapping[str, Any]) -> Refusal | None:
    """The reason a Deployment's pods cannot exist, from its status conditions; None when
    nothing refuses them."""
    conditions = [c for c in ((body.get("status") or {}).get("conditions") or [])
                  if isinstance(c, Mapping)]
    for cond in conditions:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            message = _POD_PREFIX.sub("", str(cond.get("message") or cond.get("reason") or ""))
            return Refusal(pod_create_reason(str(cond.get("message") or "")),
                           f"pods of Deployment {_name(body)} are refused: {message}")
    for cond in conditions:
        if (cond.get("type") == "Progressing" and cond.get("status") == "False"
                and cond.get("reason") == DEADLINE):
            return Refusal(DEADLINE, f"Deployment {_name(body)}: {cond.get('message') or ''}")
    return None


def _name(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclass(frozen=True)
class WriteError:
    """What the API server answered to a refused write (its Status body)."""

    code: int | None  # HTTP status; None: no answer
    reason: str  # Status.reason (Invalid, Forbidden, ...) or the HTTP reason phrase
    message: str
    fields: tuple[str, ...] = ()  # Status.details.causes[].field

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT_CODES

    def describe(self) -> str:
        fields = f" (field {', '.join(self.fields)})" if self.fields else ""
        return f"{self.code or 'no answer'} {self.reason}: {self.message}{fields}"


def write_error(code: int | None, reason: str | None, body: Any) -> WriteError:
    """Read a refused write's response: the Status object's reason, message and the fields it
    names; a body that is not a Status (a proxy's page, nothing) is quoted as it is."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        status = json.loads(text) if text else {}
    except ValueError:
        status = {}
    if not isinstance(status, Mapping):
        status = {}
    details = status.get("details") if isinstance(status.get("details"), Mapping) else {}
    causes = details.get("causes") if isinstance(details, Mapping) else None
    fields = tuple(dict.fromkeys(str(c["field"]) for c in causes or []
                                 if isinstance(c, Mapping) and c.get("field")))
    message = str(status.get("message") or text[:500] or reason or "")
    return WriteError(code=code or None, reason=str(status.get("reason") or reason or ""),
                      message=message, fields=fields)


def write_refusal(deployment: str, error: WriteError, dry_run: bool = False) -> Refusal:
    how = "a dry run of " if dry_run else ""
    return Refusal(WRITE, f"the API server refused {how}Deployment {deployment}: "
                          f"{error.describe()}")


_WARNING = re.compile(r'\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')


def warnings(header: str | None) -> list[str]:
    """The texts of an HTTP `Warning` header (RFC 7234: `299 - "text"`, comma-separated, as
    the API server sends admission warnings such as `would violate PodSecurity ...`)."""
    return [m.group(1).replace('\\"', '"') for m in _WARNING.finditer(header or "")]


@dataclass
class RefusalTracker:
    """Variants whose replicas cannot exist, each held for a backoff (doubling while the cause
    stays), then retried. A variant is cleared early, and its backoff reset, once each of its
    Deployments runs every replica with no refusal: the cause went (a namespace relabelled, a
    quota raised)."""

    backoff: Backoff = field(default_factory=Backoff)
    why: dict[VariantKey, Refusal] = field(default_factory=dict)

    def observe(self, deployments: Iterable[tuple[PlacementKey, Mapping[str, Any]]],
                now: float) -> list[VariantKey]:
        """Judge the live Deployments; returns the variants newly refused."""
        found: dict[VariantKey, Refusal] = {}
        fine: set[VariantKey] = set()
        failing: set[VariantKey] = set()
        for key, body in sorted(deployments, key=lambda kb: kb[0]):
            variant = (key[0], key[1])
            refusal = deployment_refusal(body)
            if refusal is not None:
                found.setdefault(variant, refusal)
                failing.add(variant)
                continue
            replicas = int((body.get("spec") or {}).get("replicas") or 0)
            ready = int((body.get("status") or {}).get("readyReplicas") or 0)
            if replicas and ready >= replicas:
                fine.add(variant)
            else:
                failing.add(variant)
        new = [v for v, r in found.items() if self.refuse(v, r, now)]
        for variant in fine - failing:
            if variant in self.why:
                self.backoff.clear(variant)
                del self.why[variant]
        return new

    def refuse(self, variant: VariantKey, refusal: Refusal, now: float) -> bool:
        """Hold the variant back; True when it was not held already."""
        fresh = not self.backoff.active(variant, now)
        if fresh:
            self.why[variant] = refusal
        self.backoff.trip(variant, now)
        return fresh

    def refused(self, now: float) -> frozenset[VariantKey]:
        held = frozenset(k for k in self.backoff.until if self.backoff.active(k, now))
        for key in set(self.why) - held:
            del self.why[key]  # retried: what it says now is seen afresh
        return held
