"""`inferpool run`: the operator process (kopf watches, a Lease elects, the planner plans)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

import kopf
import structlog
from kubernetes import client

from inferpool import logs
from inferpool.controller import handlers, namespaces
from inferpool.controller.metrics import MetricsServer, tls_context
from inferpool.controller.planner import Planner
from inferpool.controller.resync import Resyncer
from inferpool.controller.settings import Settings
from inferpool.k8s.client import api_client
from inferpool.k8s.lease import LeaseElector
from inferpool.k8s.metrics_auth import MetricsAuthorizer

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
        # kopf's own short requests (listings, API discovery) must not wait for ever either
        settings.networking.request_timeout = ours.api_request_timeout_seconds
        settings.networking.connect_timeout = min(30.0, ours.api_request_timeout_seconds)
        settings.posting.enabled = False  # we post our own, deduplicated Events
        settings.peering.standalone = True  # leadership comes from our Lease
        settings.scanning.disabled = True  # the CRDs are installed before the operator runs


async def operate(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    api = api_client(settings.kubeconfig, request_timeout=settings.api_request_timeout_seconds)
    elector = LeaseElector(
        client.CoordinationV1Api(api), settings.lease_name, settings.lease_namespace,
        settings.identity, settings.lease_seconds,
        renew_deadline_seconds=settings.lease_renew_deadline_seconds,
        wall=_wall_clock(settings.test_wall_clock_offset_seconds),
        request_timeout=max(1.0, settings.lease_renew_deadline_seconds / 3))
    planner = Planner(settings, api, is_leader=elector.is_leader)
    registry = kopf.OperatorRegistry()
    _configure_kopf(registry, settings)
    caches = handlers.Caches()
    planner.foreign_deployments = caches.foreign_deployments
    handlers.register(registry, planner, caches)

    log.info("starting", identity=settings.identity, namespaces=list(settings.namespaces) or
             "all", lease=f"{settings.lease_namespace}/{settings.lease_name}")
    metrics_server = MetricsServer(
        planner.metrics.registry, partial(_readiness, planner, elector), settings.metrics_port,
        settings.metrics_bind_address,
        authorize=MetricsAuthorizer(api) if settings.metrics_auth else None,
        tls=_metrics_tls(settings),
    ).start() if settings.metrics_port else None
    watched = settings.namespaces
    if watched:  # only those RBAC lets us read: a forbidden one would stop kopf and the caches
        watched = await namespaces.wait_readable(watched, handlers.prober(planner), stop,
                                                 settings.resync_seconds)
        if not watched:  # stopped while none was readable
            if metrics_server is not None:
                metrics_server.stop()
            return
    kopf_task = asyncio.create_task(kopf.operator(
        registry=registry, clusterwide=not watched,
        namespaces=list(watched), stop_flag=stop,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"))
    list_versions = handlers.lister(planner, watched)
    resyncer = Resyncer(caches, planner, list_versions, handlers.getter(planner),
                        settings.resync_seconds, on_done=planner.metrics.observe_resync)
    planner.synced = resyncer.synced
    tasks = [asyncio.create_task(_lease_loop(elector, settings, stop, resyncer.request)),
             asyncio.create_task(_watch_leadership(elector, planner, settings, stop)),
             asyncio.create_task(handlers.fill(caches, planner, list_versions)),
             asyncio.create_task(resyncer.run(planner.ready)),
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


def _metrics_tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.metrics_tls_cert_file is None or settings.metrics_tls_key_file is None:
        return None
    try:
        return tls_context(settings.metrics_tls_cert_file, settings.metrics_tls_key_file)
    except (OSError, ssl.SSLError) as err:  # a configuration error: stop with one clear line
        raise SystemExit(f"--metrics-tls-cert-file/--metrics-tls-key-file: {err}") from None


def _readiness(planner: Planner, elector: LeaseElector) -> tuple[bool, str]:
    """Ready once the planner's caches hold every watched object,
    as leader or as a standby that can take over at once."""
    if not planner.ready.is_set():
        return False, "waiting for the first complete listing of the watched resources"
    return True, "leader" if elector.is_leader() else "standby, caches ready"


async def _lease_loop(elector: LeaseElector, settings: Settings, stop: asyncio.Event,
                      api_back: Callable[[str], None]) -> None:
    """A round every retry period, leader or not. A failed round changes nothing by itself:
    leadership runs out `lease_renew_deadline_seconds` after the last successful renewal.
    When the API answers again after failing, the watches may have missed deletions: the
    caches are resynced at once (`api_back`)."""
    failing = False
    while not stop.is_set():
        try:
            await asyncio.to_thread(elector.try_acquire_or_renew)
        except Exception as exc:  # API unreachable, slow or refusing: retry next period
            if not failing:
                log.warning("lease renewal failed", error=str(exc),
                            leading_for_seconds=round(elector.seconds_left(), 1))
            failing = True
        else:
            if failing:
                log.info("API server reachable again")
                api_back("API server reachable again")
            failing = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.lease_retry_period_seconds)


async def _watch_leadership(elector: LeaseElector, planner: Planner, settings: Settings,
                            stop: asyncio.Event, interval: float = 0.2) -> None:
    """Report changes of leadership as the clock makes them, not only when a (perhaps hung)
    renewal returns."""
    was_leader = False
    while not stop.is_set():
        leader = elector.is_leader()
        if leader != was_leader:
            planner.metrics.set_leader(leader)
            if leader:
                log.info("became leader", identity=settings.identity)
                planner.wake("became leader")
            else:
                log.warning("lost leadership", identity=settings.identity)
        was_leader = leader
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def _wall_clock(offset_seconds: float) -> Callable[[], dt.datetime]:
    """The wall clock written into the Lease. Tests offset it (the hidden setting
    test_wall_clock_offset_seconds) to show that clock skew between instances decides nothing."""
    offset = dt.timedelta(seconds=offset_seconds)
    return lambda: dt.datetime.now(dt.UTC) + offset
