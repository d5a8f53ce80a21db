"""Load -> demand: load sources and the per-pool demand tracker. No Kubernetes I/O here."""

from inferpool.scaling.clock import Clock, ManualClock, SystemClock
from inferpool.scaling.recommender import (
    DemandStatus,
    DemandTracker,
    ScalingSettings,
    SourceState,
)
from inferpool.scaling.sources import (
    BasicAuth,
    FixedSource,
    LoadSource,
    PrometheusConfig,
    PrometheusSource,
    Reading,
    Reason,
)

__all__ = [
    "BasicAuth",
    "Clock",
    "DemandStatus",
    "DemandTracker",
    "FixedSource",
    "LoadSource",
    "ManualClock",
    "PrometheusConfig",
    "PrometheusSource",
    "Reading",
    "Reason",
    "ScalingSettings",
    "SourceState",
    "SystemClock",
]
