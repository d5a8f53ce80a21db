"""`inferpool run`: the operator process (kopf watches, a Lease elects, the planner plans)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from functools import partial
from typing import Any

import kopf
import structlog
from kubernetes import client

from inferpool import logs
from inferpool.controller import handlers
from inferpool.controller.metrics import MetricsServer
from inferpool.controller.planner import Planner
from inferpool.controller.settings import Settings
from inferpool.k8s.client import api_client
from inferpool.k8s.lease import LeaseElector

log = structlog.get_logger("inferpool.run")


def main(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(operate(settings))
    return 0


def _configure_kopf(registry: kopf.OperatorRegistry, ours: Settings) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf watches with the same credentials as our own client (in-cluster config, else the
        # kubeconfig). Built here because the client library reads $KUBECONFIG at import time.
        if ours.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return kopf.login_via_client(**kwargs)
        cfg = api_client(ours.kubeconfig).configuration
        # The client keeps the bearer token under "BearerToken" (36.0.1+) or "authorization".
        header = (cfg.get_api_key_with_prefix("BearerToken")
                  or cfg.get_api_key_with_prefix("authorization") or "")
        scheme, _, value = header.partition(" ") if " " in header else ("Bearer", "", header)
        return kopf.ConnectionInfo(
            server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
            username=cfg.username or None, password=cfg.password or None,
            scheme=scheme or None, token=value or None, certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: object) -> None:
        # Without timeouts a watch stream can stall silently and the caches go stale.
        settings.watching.server_timeout = ours.watch_server_timeout
        settings.watching.client_timeout = ours.watch_server_timeout + 60
        settings.watching.connect_timeout = 30
        settings.posting.enabled = False  # we post our own, deduplicated Events
        settings.peering.standalone = True  # leadership comes from our Lease
        settings.scanning.disabled = True  # the CRDs are installed before the operator runs


async def operate(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    api = api_client(settings.kubeconfig)
    elector = LeaseElector(client.CoordinationV1Api(api), settings.lease_name,
                           settings.lease_namespace, settings.identity, settings.lease_seconds)
    planner = Planner(settings, api, is_leader=lambda: elector.is_leader)
    registry = kopf.OperatorRegistry()
    _configure_kopf(registry, settings)
    caches = handlers.Caches()
    handlers.register(registry, planner, caches)

    log.info("starting", identity=settings.identity, namespaces=list(settings.namespaces) or
             "all", lease=f"{settings.lease_namespace}/{settings.lease_name}")
    metrics_server = MetricsServer(planner.metrics.registry, partial(_readiness, planner, elector),
                                   settings.metrics_port).start() if settings.metrics_port else None
    kopf_task = asyncio.create_task(kopf.operator(
        registry=registry, clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces), stop_flag=stop,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"))
    tasks = [asyncio.create_task(_lease_loop(elector, planner, settings, stop)),
             asyncio.create_task(handlers.fill(
                 caches, planner, handlers.lister(planner, settings.namespaces))),
             asyncio.create_task(planner.run())]
    try:
        await kopf_task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(elector.release)
        await planner.demand.close()
        if metrics_server is not None:
            metrics_server.stop()
        log.info("stopped", identity=settings.identity)


def _readiness(planner: Planner, elector: LeaseElector) -> tuple[bool, str]:
    """Ready once the planner's caches hold every watched object,
    as leader or as a standby that can take over at once."""
    if not planner.ready.is_set():
        return False, "waiting for the first complete listing of the watched resources"
    return True, "leader" if elector.is_leader else "standby, caches ready"


async def _lease_loop(elector: LeaseElector, planner: Planner, settings: Settings,
                      stop: asyncio.Event) -> None:
    while not stop.is_set():
        was_leader = elector.is_leader
        try:
            await asyncio.to_thread(elector.try_acquire_or_renew)
        except Exception as exc:  # API unreachable: stop acting until the lease is ours again
            elector.is_leader = False
            log.warning("lease renewal failed", error=str(exc))
        planner.metrics.set_leader(elector.is_leader)
        if elector.is_leader and not was_leader:
            log.info("became leader", identity=settings.identity)
            planner.wake("became leader")
        elif was_leader and not elector.is_leader:
            log.warning("lost leadership", identity=settings.identity)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(1.0, settings.lease_seconds / 4))
