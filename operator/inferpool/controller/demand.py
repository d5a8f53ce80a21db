"""Per-InferencePool demand: one load source and one DemandTracker each, kept across plans.

Two rules keep the operator's own life from costing replicas:

- A tracker that starts (operator restart, a new leader) starts from what serves the pool, not
  from the floor: `initial_required_rps`. Its seed enters the scale-down window, so nothing is
  removed for one window.
- A plan never waits long for a load source: reads run as tasks of their own, at most one in
  flight per pool, and a reconcile waits at most `wait_seconds` for them. A pool whose read is
  still running is planned with the last value its tracker knows; once that read has run for
  `overdue_seconds` the pool reports `ReadingOverdue` (DemandUnknown, with the held value's age).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from inferpool.api.inference_pool import InferencePool
from inferpool.controller.translate import LiveDeployment, ParsedPool
from inferpool.placement import PlacementKey
from inferpool.scaling.clock import Clock
from inferpool.scaling.recommender import DemandStatus, DemandTracker, ScalingSettings
from inferpool.scaling.sources import (
    FixedSource,
    LoadSource,
    PrometheusConfig,
    PrometheusSource,
    Reading,
)
from inferpool.scaling.tenancy import UnscopableQueryError, scope
from inferpool.scaling.urls import url_allowed, without_credentials

# Reads a Secret reference (namespace, name, key): its value, or a failed Reading saying why.
# Called before every query, so a rotated token is used from the next read on.
SecretReader = Callable[[str, str, str], Awaitable["str | Reading"]]

REASON_OVERDUE = "ReadingOverdue"  # a read has run past overdue_seconds: planning on held demand


def scaling_settings(model: InferencePool) -> ScalingSettings:
    spec = model.spec
    capacities = [v.capacity for v in spec.variants]
    return ScalingSettings(
        target_utilization=spec.demand.target_utilization,
        scale_up_stabilization_seconds=float(spec.demand.scale_up.stabilization_seconds),
        scale_down_stabilization_seconds=float(spec.demand.scale_down.stabilization_seconds),
        scale_up_tolerance=spec.demand.scale_up.tolerance,
        scale_down_tolerance=spec.demand.scale_down.tolerance,
        # min replicas of the smallest variant: the floor capacity min replicas surely give
        min_capacity_rps=spec.replicas.min * min(capacities),
        safe_floor_rps=max(min(capacities) * 0.01, 1e-3),
    )


@dataclass(frozen=True, slots=True)
class Running:
    """What serves one InferencePool now: its Deployments and its last status."""

    ready_rps: float  # Ready replicas x their variant's capacity
    desired_rps: float = 0.0  # the Deployments' spec.replicas x capacity
    last_demand_rps: float | None = None  # status.demand
    last_required_rps: float | None = None  # status.requiredCapacity, same generation only


def _number(value: Any) -> float | None:
    # the status is ours, but anyone can edit it: anything but a finite number >= 0 is ignored
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def running(pool: ParsedPool, live: Mapping[PlacementKey, LiveDeployment]) -> Running:
    """`live`: the pool's own Deployments (others are ignored)."""
    capacity = {v.name: v.capacity for v in pool.model.spec.variants}
    mine = [(capacity.get(k[1], 0.0), d) for k, d in live.items() if k[0] == pool.key]
    status = pool.body.get("status")
    status = status if isinstance(status, Mapping) else {}
    same_generation = status.get("observedGeneration") == pool.generation
    return Running(
        ready_rps=sum(c * d.ready for c, d in mine),
        desired_rps=sum(c * d.replicas for c, d in mine),
        last_demand_rps=_number(status.get("demand")),
        last_required_rps=_number(status.get("requiredCapacity")) if same_generation else None)


def initial_required_rps(settings: ScalingSettings, now: Running) -> float:
    """Where a new tracker starts: everything Ready, plus replicas still starting as far as the
    last status needed them. Never above what the Deployments ask for, so a status written long
    ago (a busier hour) does not scale a restarted operator's pools up. Never below the floor."""
    wanted = [r for r in (now.last_required_rps,
                          None if now.last_demand_rps is None
                          else now.last_demand_rps / settings.target_utilization)
              if r is not None]
    floor = max(settings.min_capacity_rps, settings.safe_floor_rps)
    return max(floor, now.ready_rps, min(now.desired_rps, max(wanted, default=0.0)))


@dataclass
class _Entry:
    fingerprint: Any
    source: LoadSource
    tracker: DemandTracker
    read: asyncio.Task[Reading] | None = None  # the read in flight, or done and not yet observed
    started: float = 0.0  # when `read` started (clock seconds)
    seen_reading: bool = False  # the tracker has observed one reading (good or failed)
    armed: bool = False  # the planner is to be woken when the first reading comes


class DemandBook:
    def __init__(self, clock: Clock, default_prometheus_url: str | None,
                 read_secret: SecretReader | None = None,
                 allowed_urls: Sequence[str] = (), *, wait_seconds: float = 0.5,
                 overdue_seconds: float = 30.0,
                 on_late_first_reading: Callable[[str], None] | None = None,
                 tenancy_label: str | None = None) -> None:
        self._clock = clock
        self._default_url = default_prometheus_url
        # What spec.demand.prometheus.url may be: the operator's own URL is always allowed.
        self._allowed = tuple(allowed_urls) + ((default_prometheus_url,)
                                               if default_prometheus_url else ())
        self._read_secret = read_secret
        # Tenancy mode: every query's selectors get <label>="<the pool's namespace>".
        self._tenancy_label = tenancy_label
        self._wait = wait_seconds
        self._overdue = overdue_seconds
        # A new pool's first reading that comes after the plan: the planner re-plans at once
        # rather than a tick later (only the first, so slow sources cannot drive the loop).
        self._on_late_first = on_late_first_reading
        self._entries: dict[str, _Entry] = {}

    def _source(self, key: str, model: InferencePool) -> LoadSource | Reading:
        demand = model.spec.demand
        if demand.fixed is not None:
            return FixedSource(demand.fixed)
        assert demand.prometheus is not None
        prom = demand.prometheus
        url = prom.url or self._default_url
        if not url:
            return Reading.failed("NoPrometheusURL", "spec.demand.prometheus.url is not set and "
                                  "the operator has no --prometheus-url")
        if prom.url and not url_allowed(prom.url, self._allowed):
            # Refused before any Secret is read or request sent (server-side request forgery).
            return Reading.failed("PrometheusURLNotAllowed", f"spec.demand.prometheus.url "
                                  f"{without_credentials(prom.url)} is not allowed: the operator "
                                  "queries only its --prometheus-url and the URL prefixes in its "
                                  "--prometheus-allowed-urls (INFERPOOL_PROMETHEUS_ALLOWED_URLS, "
                                  "chart value prometheus.allowedURLs)")
        namespace = key.split("/", 1)[0]
        query = prom.query
        if self._tenancy_label is not None:
            try:
                query = scope(prom.query, self._tenancy_label, namespace)
            except UnscopableQueryError as err:
                return Reading.failed("QueryNotScoped", f"spec.demand.prometheus.query is "
                                      "refused in tenancy mode, where a query reads only the "
                                      f"series of its own namespace ({self._tenancy_label}="
                                      f'"{namespace}"): {err}')
        source = PrometheusSource(PrometheusConfig(url=url, query=query,
                                                   timeout_seconds=float(prom.timeout_seconds)))
        if prom.auth is None:
            return source
        ref = prom.auth.secret_ref
        if self._read_secret is None:
            return Reading.failed("SecretUnreadable", "this operator reads no Secrets")
        return _WithToken(source, partial(self._read_secret, namespace, ref.name, ref.key))

    async def observe_all(self, pools: Mapping[str, InferencePool],
                          now_running: Mapping[str, Running]) -> dict[str, DemandStatus]:
        """One observation per pool, for one plan. Waits at most `wait_seconds` for reads."""
        for gone in set(self._entries) - set(pools):
            await self._close(self._entries.pop(gone))
        entries = {key: await self._entry(key, model, now_running.get(key))
                   for key, model in pools.items()}
        now = self._clock.now()
        for key, entry in entries.items():
            if entry.read is None:
                entry.read = asyncio.create_task(self._read(entry.source),
                                                 name=f"demand-read {key}")
                entry.started = now
        pending = [e.read for e in entries.values() if e.read is not None and not e.read.done()]
        if pending:
            await asyncio.wait(pending, timeout=self._wait)
        now = self._clock.now()
        out: dict[str, DemandStatus] = {}
        for key, entry in entries.items():
            capacity = now_running[key].ready_rps if key in now_running else None
            task = entry.read
            assert task is not None
            if task.done():
                entry.read = None
                entry.seen_reading = True
                out[key] = entry.tracker.observe(task.result(), capacity_rps=capacity)
                continue
            if not entry.seen_reading and not entry.armed and self._on_late_first is not None:
                entry.armed = True
                task.add_done_callback(partial(self._late_first, key, entry))
            running_for = now - entry.started
            if running_for >= self._overdue:
                out[key] = entry.tracker.observe(Reading.failed(
                    REASON_OVERDUE, f"the load source has given no answer for "
                    f"{running_for:.0f}s (a read is still running; planning goes on without "
                    "it)"), capacity_rps=capacity)
            else:
                out[key] = entry.tracker.recommend()  # the latest known value, as it stands
        return out

    async def forget(self) -> None:
        """Drop every tracker and source (on taking leadership): the next plan builds them
        again, seeded from what runs then, not from a history another leader has overtaken."""
        await self.close()

    def _late_first(self, key: str, entry: _Entry, task: asyncio.Task[Reading]) -> None:
        if (not task.cancelled() and self._entries.get(key) is entry and not entry.seen_reading
                and self._on_late_first is not None):
            self._on_late_first(key)

    async def _entry(self, key: str, model: InferencePool, now: Running | None) -> _Entry:
        fingerprint = (model.spec.demand.model_dump_json(), model.spec.replicas.min,
                       tuple(v.capacity for v in model.spec.variants))
        entry = self._entries.get(key)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry
        settings = scaling_settings(model)
        made = self._source(key, model)
        source: LoadSource = made if not isinstance(made, Reading) else _Failed(made)
        if entry is None:
            seed = initial_required_rps(settings, now or Running(0.0))
            tracker = DemandTracker(settings, self._clock, initial_required_rps=seed)
        else:
            await self._close(entry)
            tracker = entry.tracker
            tracker.settings = settings  # keep the history across a spec edit
        entry = self._entries[key] = _Entry(fingerprint, source, tracker,
                                            seen_reading=entry is not None and entry.seen_reading)
        return entry

    @staticmethod
    async def _read(source: LoadSource) -> Reading:
        try:
            return await source.read()
        except Exception as exc:  # a source must never take the planner down
            return Reading.failed("SourceError", f"{type(exc).__name__}: {exc}")

    async def _close(self, entry: _Entry) -> None:
        if entry.read is not None:
            entry.read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.read
            entry.read = None
        if isinstance(entry.source, PrometheusSource | _WithToken):
            await entry.source.aclose()

    async def close(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await self._close(entry)


class _WithToken:
    """A Prometheus source whose bearer token is read from its Secret before each query: a
    rotated token is sent from the next read on, and no token is kept between reads."""

    def __init__(self, source: PrometheusSource,
                 fetch: Callable[[], Awaitable[str | Reading]]) -> None:
        self._source = source
        self._fetch = fetch

    async def read(self) -> Reading:
        token = await self._fetch()
        if isinstance(token, Reading):
            return token
        return await self._source.read(bearer_token=token)

    async def aclose(self) -> None:
        await self._source.aclose()


class _Failed:
    """A source that could not be built: every read reports why."""

    def __init__(self, reading: Reading) -> None:
        self._reading = reading

    async def read(self) -> Reading:
        return self._reading

