"""Karpenter NodePools' limits for the planner: read only while some elastic AcceleratorPool
selects a NodePool's nodes, at most every REFRESH_SECONDS (limits change rarely), and kept
through a failed read (a cap known a minute ago beats none). A cluster without Karpenter
answers 404: not asked again for ABSENT_RETRY_SECONDS, and nothing is logged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from inferpool.cluster.node_pool_limits import karpenter_node_pool
from inferpool.k8s.karpenter import list_node_pool_limits

log = structlog.get_logger("inferpool.karpenter")

REFRESH_SECONDS = 30.0
ABSENT_RETRY_SECONDS = 300.0
READ_TIMEOUT_SECONDS = 10.0

Limits = dict[str, Mapping[str, Any]]


def selects_node_pool(accelerator_pools: Iterable[Mapping[str, Any]]) -> bool:
    """Whether some elastic AcceleratorPool selects a Karpenter NodePool's nodes."""
    return any((ap.get("spec") or {}).get("elastic") and karpenter_node_pool(
        (ap.get("spec") or {}).get("nodeSelector") or {}) for ap in accelerator_pools)


class NodePoolLimits:
    def __init__(self, custom: client.CustomObjectsApi, clock: Callable[[], float]) -> None:
        self.custom, self.clock = custom, clock
        self.limits: Limits = {}
        self._next_read = 0.0
        self._failing = False

    async def read(self, accelerator_pools: Iterable[Mapping[str, Any]]) -> Limits:
        if not selects_node_pool(accelerator_pools):
            return {}
        now = self.clock()
        if now < self._next_read:
            return self.limits
        self._next_read = now + REFRESH_SECONDS
        try:
            self.limits = await asyncio.wait_for(asyncio.to_thread(
                list_node_pool_limits, self.custom), timeout=READ_TIMEOUT_SECONDS)
        except ApiException as exc:
            if exc.status == 404:  # no Karpenter (or not its v1 API): nothing caps the pools
                self.limits, self._next_read = {}, now + ABSENT_RETRY_SECONDS
                return self.limits
            self._failed(f"HTTP {exc.status} {exc.reason}")
            return self.limits
        except Exception as exc:  # timeouts, connection errors
            self._failed(f"{type(exc).__name__}: {exc}")
            return self.limits
        self._failing = False
        return self.limits

    def _failed(self, error: str) -> None:
        if not self._failing:  # once per failure, not every tick
            log.warning("could not read Karpenter NodePools' limits; elastic pools are planned "
                        "on their maxNodes and the limits they were last read with", error=error)
        self._failing = True
