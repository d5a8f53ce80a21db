"""Per-InferencePool demand: one load source and one DemandTracker each, kept across plans."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferpool.api.inference_pool import InferencePool
from inferpool.scaling.clock import Clock
from inferpool.scaling.recommender import DemandStatus, DemandTracker, ScalingSettings
from inferpool.scaling.sources import (
    FixedSource,
    LoadSource,
    PrometheusConfig,
    PrometheusSource,
    Reading,
)
from inferpool.scaling.urls import url_allowed, without_credentials

# Resolves a Secret reference (namespace, name, key) to its value; None when unreadable.
SecretReader = Callable[[str, str, str], "str | None"]


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


@dataclass
class _Entry:
    fingerprint: Any
    source: LoadSource
    tracker: DemandTracker


class DemandBook:
    def __init__(self, clock: Clock, default_prometheus_url: str | None,
                 read_secret: SecretReader | None = None,
                 allowed_urls: Sequence[str] = ()) -> None:
        self._clock = clock
        self._default_url = default_prometheus_url
        # What spec.demand.prometheus.url may be: the operator's own URL is always allowed.
        self._allowed = tuple(allowed_urls) + ((default_prometheus_url,)
                                               if default_prometheus_url else ())
        self._read_secret = read_secret
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
        token = None
        if prom.auth is not None:
            namespace = key.split("/", 1)[0]
            ref = prom.auth.secret_ref
            token = self._read_secret(namespace, ref.name, ref.key) if self._read_secret else None
            if token is None:
                return Reading.failed("SecretUnreadable", f"cannot read key {ref.key!r} of Secret "
                                      f"{namespace}/{ref.name} (it must carry the label "
                                      "inferpool.dev/usage=prometheus-auth)")
        return PrometheusSource(PrometheusConfig(url=url, query=prom.query,
                                                 timeout_seconds=float(prom.timeout_seconds),
                                                 bearer_token=token))

    async def observe_all(self, pools: Mapping[str, InferencePool],
                          capacity: Mapping[str, float]) -> dict[str, DemandStatus]:
        for gone in set(self._entries) - set(pools):
            await self._close(self._entries.pop(gone))
        readings = await asyncio.gather(*(self._read(k, m) for k, m in pools.items()))
        out: dict[str, DemandStatus] = {}
        for (key, _model), reading in zip(pools.items(), readings, strict=True):
            out[key] = self._entries[key].tracker.observe(reading,
                                                          capacity_rps=capacity.get(key))
        return out

    async def _read(self, key: str, model: InferencePool) -> Reading:
        fingerprint = (model.spec.demand.model_dump_json(), model.spec.replicas.min,
                       tuple(v.capacity for v in model.spec.variants))
        entry = self._entries.get(key)
        if entry is None or entry.fingerprint != fingerprint:
            settings = scaling_settings(model)
            made = self._source(key, model)
            source: LoadSource = made if not isinstance(made, Reading) else _Failed(made)
            if entry is None:
                tracker = DemandTracker(settings, self._clock)
            else:
                await self._close(entry)
                tracker = entry.tracker
                tracker.settings = settings  # keep the history across a spec edit
            entry = self._entries[key] = _Entry(fingerprint, source, tracker)
        try:
            return await entry.source.read()
        except Exception as exc:  # a source must never take the planner down
            return Reading.failed("SourceError", f"{type(exc).__name__}: {exc}")

    async def _close(self, entry: _Entry) -> None:
        if isinstance(entry.source, PrometheusSource):
            await entry.source.aclose()

    async def close(self) -> None:
        for entry in self._entries.values():
            await self._close(entry)
        self._entries.clear()


class _Failed:
    """A source that could not be built: every read reports why."""

    def __init__(self, reading: Reading) -> None:
        self._reading = reading

    async def read(self) -> Reading:
        return self._reading

