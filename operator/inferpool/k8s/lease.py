"""Leader election with a coordination.k8s.io Lease: only the holder plans and writes.

The standby keeps its caches warm (kopf keeps watching) and takes over when the holder stops
renewing; a holder that shuts down cleanly releases the lease so the standby takes over at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LeaseElector:
    api: client.CoordinationV1Api
    name: str
    namespace: str
    identity: str
    duration_seconds: int = 10
    is_leader: bool = False

    def try_acquire_or_renew(self) -> bool:
        """One round of the election (blocking I/O: call it from a thread)."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.is_leader = self._create()
            return self.is_leader
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        duration = spec.lease_duration_seconds or self.duration_seconds
        expired = renewed is None or (_now() - renewed).total_seconds() > duration
        if holder not in (None, "", self.identity) and not expired:
            self.is_leader = False
            return False
        now = _now()
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = self.duration_seconds
        try:
            # replace() carries metadata.resourceVersion: a concurrent writer makes it fail (409).
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.is_leader = False
            return False
        self.is_leader = True
        return True

    def release(self) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException:
            pass  # the lease expires by itself

    def _create(self) -> bool:
        now = _now()
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds":
                     self.duration_seconds, "acquireTime": now.isoformat(),
                     "renewTime": now.isoformat(), "leaseTransitions": 0},
        }
        try:
            self.api.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True
