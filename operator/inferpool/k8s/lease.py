"""Leader election with a coordination.k8s.io Lease: only the holder plans and writes.

client-go's semantics (k8s.io/client-go/tools/leaderelection), without its goroutines:

- A candidate never compares the Lease's `renewTime` with its own wall clock (clock skew
  between instances would decide who leads). It notes, on its own monotonic clock, when it last
  saw the record *change*; the holder counts as gone once the record has stayed unchanged for
  `leaseDurationSeconds` from then.
- The holder leads only until `renew_deadline` after the start of its last successful renewal,
  also on the monotonic clock: a renewal that hangs or keeps failing ends leadership by itself,
  before any standby can take over (renew_deadline < lease duration: the standby saw that renewal
  no earlier than it started, and waits a full lease duration from then).
- Every write of the Lease carries its resourceVersion: of two racing candidates one gets 409.

The kubernetes client's own `kubernetes.leaderelection` was not used: its LeaseLock talks through
the global default client (not ours, no request timeouts), `run()` blocks a thread for ever with
no way to cancel it or release the Lease, leadership is only reported through callbacks, and its
deadlines are measured on the wall clock (a clock step moves them).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

Monotonic = Callable[[], float]
WallClock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Observed:
    """What a candidate compares between two reads to tell that the record changed."""

    holder: str | None
    renew_time: Any
    transitions: int | None
    resource_version: str | None


def holder_gone(holder: str | None, me: str, observed_at: float, duration: float,
                now: float) -> bool:
    """May `me` take the Lease? Yes when it is free or ours, or when the record has not changed
    for `duration` seconds since `observed_at` (all on the candidate's monotonic clock)."""
    return not holder or holder == me or now >= observed_at + duration


@dataclass
class LeaseElector:
    api: client.CoordinationV1Api
    name: str
    namespace: str
    identity: str
    duration_seconds: int = 10
    renew_deadline_seconds: float = 6.0
    monotonic: Monotonic = time.monotonic
    wall: WallClock = utc_now  # only written into the Lease for people to read
    request_timeout: float = 3.0  # per API call; a round makes at most two

    def __post_init__(self) -> None:
        # A deadline at or beyond the lease duration would let two instances lead at once.
        self.renew_deadline_seconds = min(self.renew_deadline_seconds,
                                          0.8 * self.duration_seconds)
        self._valid_until = -math.inf  # monotonic; leading while now < this
        self._observed: Observed | None = None
        self._observed_at = 0.0

    def is_leader(self) -> bool:
        """True only while the last successful renewal is recent enough (no I/O: cheap enough
        to ask before every write)."""
        return self.monotonic() < self._valid_until

    def seconds_left(self) -> float:
        return max(0.0, self._valid_until - self.monotonic())

    def try_acquire_or_renew(self) -> bool:
        """One round of the election (blocking I/O: call it from a thread). True when this
        instance holds the Lease now. API failures raise; leadership then runs out by itself."""
        started = self.monotonic()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace,
                                                   _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(started)
        spec = lease.spec
        self._observe(lease)
        duration = float(spec.lease_duration_seconds or self.duration_seconds)
        if not holder_gone(spec.holder_identity, self.identity, self._observed_at, duration,
                           self.monotonic()):
            self._valid_until = -math.inf  # somebody else holds it (perhaps since a moment ago)
            return False
        now = self.wall()
        if spec.holder_identity != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = self.duration_seconds
        try:
            # replace() carries metadata.resourceVersion: a concurrent writer makes it fail (409).
            written = self.api.replace_namespaced_lease(self.name, self.namespace, lease,
                                                        _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return self.is_leader()  # lost the race this round; a held lease still runs out
        self._observe(written)
        self._valid_until = started + self.renew_deadline_seconds
        return True

    def release(self) -> None:
        """Hand the Lease over at once (clean shutdown): holder cleared, so a standby need not
        wait for it to expire."""
        if not self.is_leader():
            return
        self._valid_until = -math.inf
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace,
                                                   _request_timeout=self.request_timeout)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = self.wall()
                lease.spec.lease_duration_seconds = 1
                self.api.replace_namespaced_lease(self.name, self.namespace, lease,
                                                  _request_timeout=self.request_timeout)
        except Exception:
            pass

    def _observe(self, lease: Any) -> None:
        spec, meta = lease.spec, lease.metadata
        seen = Observed(spec.holder_identity, spec.renew_time, spec.lease_transitions,
                        meta.resource_version if meta is not None else None)
        if seen != self._observed:
            self._observed = seen
            self._observed_at = self.monotonic()

    def _create(self, started: float) -> bool:
        now = self.wall().isoformat()
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds":
                     self.duration_seconds, "acquireTime": now, "renewTime": now,
                     "leaseTransitions": 0},
        }
        try:
            self.api.create_namespaced_lease(self.namespace, body,
                                             _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._valid_until = started + self.renew_deadline_seconds
        return True
