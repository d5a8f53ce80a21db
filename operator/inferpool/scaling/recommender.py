"""Demand -> required capacity, per InferencePool. Pure and synchronous; time comes from a Clock.

One `DemandTracker` per pool lives in the operator's memory. Each planner tick the operator reads
the pool's load source and calls `observe(reading)`; `recommend()` is a side-effect-free look at
the result. The pipeline for one observation:

1. candidate = demand / targetUtilization (stale: the last good demand; unknown: freeze).
2. panic: candidate >= panicThreshold x current capacity -> jump to it, no step cap, and no
   scale-down until panicWindow has passed since the last trigger (Knative KPA's idea).
3. otherwise HPA-style stabilization: scale up to the *minimum* candidate of the scale-up window,
   but at most max(x maxScaleUpFactor, + maxScaleUpRps) per observation; scale down to the
   *maximum* candidate of the scale-down window; either only when it moves more than that
   direction's tolerance (up 10 % as the HPA, down 5 %).
4. never below minCapacity; while failing (stale or unknown), never below the safe floor; with
   demand unknown, never down.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from inferpool.scaling.clock import Clock
from inferpool.scaling.sources import Reading

REASON_OK = "DemandObserved"
REASON_AWAITING = "AwaitingFirstReading"
REASON_NO_RECENT = "NoRecentReading"


@dataclass(frozen=True, slots=True)
class ScalingSettings:
    """Plain-value settings; the controller maps `spec.demand` and `spec.replicas` onto these."""

    target_utilization: float = 0.7  # required capacity = demand / target_utilization
    scale_up_stabilization_seconds: float = 0.0  # HPA default: react at once
    scale_down_stabilization_seconds: float = 300.0  # HPA default
    panic_threshold: float = 2.0  # x current capacity; math.inf disables panic mode
    panic_window_seconds: float = 60.0  # no scale-down this long after the last panic trigger
    max_scale_up_factor: float = 2.0  # per observation; math.inf disables the cap
    max_scale_up_rps: float = 0.0  # additive allowance, so small pools are not stuck at x2
    # Ignore moves within this fraction of the current value. Up: the HPA's 10 %, the band that
    # stops noise from flapping. Down: the scale-down window already does that, so a narrower
    # band, which costs less on every way down (docs/scaling.md has the measurement).
    scale_up_tolerance: float = 0.1
    scale_down_tolerance: float = 0.05
    hold_seconds: float = 300.0  # keep the last good demand this long when the source fails
    min_capacity_rps: float = 0.0  # what spec.replicas.min provides
    safe_floor_rps: float = 1.0  # kept whenever demand is unknown; > 0 so never zero replicas

    def __post_init__(self) -> None:
        if not 0 < self.target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        if self.panic_threshold <= 1:
            raise ValueError("panic_threshold must be > 1")
        if self.max_scale_up_factor < 1:
            raise ValueError("max_scale_up_factor must be >= 1")
        for name in ("scale_up_tolerance", "scale_down_tolerance"):
            if not getattr(self, name) < 1:
                raise ValueError(f"{name} must be < 1")
        if self.safe_floor_rps <= 0:
            raise ValueError("safe_floor_rps must be > 0: missing metrics never mean zero")
        for name in (
            "scale_up_stabilization_seconds",
            "scale_down_stabilization_seconds",
            "panic_window_seconds",
            "max_scale_up_rps",
            "hold_seconds",
            "min_capacity_rps",
            "scale_up_tolerance",
            "scale_down_tolerance",
        ):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")


class SourceState(StrEnum):
    OK = "ok"  # the last reading was good
    STALE = "stale"  # failing; holding the last good demand (within hold_seconds)
    UNKNOWN = "unknown"  # no good reading, or too old: capacity frozen, never below the floor


@dataclass(frozen=True, slots=True)
class DemandStatus:
    """What the controller writes into status: the numbers and the `DemandUnknown` condition."""

    required_rps: float  # capacity to provision, in requests/s
    demand_rps: float | None  # the demand behind it (last good when stale); None if never known
    state: SourceState
    reason: str  # condition reason: a `sources.Reason` value while failing
    message: str
    panic: bool

    @property
    def demand_unknown(self) -> bool:
        """Status of the `DemandUnknown` condition: True in both STALE and UNKNOWN."""
        return self.state is not SourceState.OK


class DemandTracker:
    """Per-pool scaling state. `initial_required_rps` (e.g. the capacity running when the operator
    restarts) seeds the scale-down window, so a restart does not skip stabilization."""

    def __init__(
        self,
        settings: ScalingSettings,
        clock: Clock,
        *,
        initial_required_rps: float | None = None,
    ) -> None:
        self.settings = settings  # may be replaced when the spec changes; history is kept
        self._clock = clock
        now = clock.now()
        floor = max(settings.min_capacity_rps, settings.safe_floor_rps)
        self._required = max(floor, initial_required_rps or 0.0)
        self._history: deque[tuple[float, float]] = deque([(now, self._required)])
        self._last_good: tuple[float, float] | None = None  # (time, demand rps)
        self._failure: Reading | None = None  # most recent failed reading, until a good one
        self._panic_until = -math.inf

    @property
    def required_rps(self) -> float:
        return self._required

    def observe(self, reading: Reading, *, capacity_rps: float | None = None) -> DemandStatus:
        """Take one reading (one per tick). `capacity_rps` is what is serving now (ready replicas
        x capacity); without it the tracker compares against its own last recommendation."""
        s = self.settings
        now = self._clock.now()
        prev = self._required
        if reading.value is not None:
            self._last_good = (now, reading.value)
            self._failure = None
            candidate = reading.value / s.target_utilization
            current = prev if capacity_rps is None else capacity_rps
            if candidate >= s.panic_threshold * current and candidate > 0:
                self._panic_until = now + s.panic_window_seconds
        else:
            self._failure = reading
            if self._last_good is None or now - self._last_good[0] > s.hold_seconds:
                # Blind: freeze. Scaling down could cut a service whose load we cannot see;
                # the frozen value also enters the history, so recovery cannot drop it at once.
                self._required = max(prev, s.min_capacity_rps, s.safe_floor_rps)
                self._remember(now, self._required)
                return self.recommend()
            candidate = self._last_good[1] / s.target_utilization
        self._remember(now, candidate)

        if now < self._panic_until:
            new = max(prev, candidate)
        else:
            up = min(v for t, v in self._history if t >= now - s.scale_up_stabilization_seconds)
            down = max(v for t, v in self._history if t >= now - s.scale_down_stabilization_seconds)
            # The scale-up band is what stops noise from flapping replicas: without it every
            # reading above a just-lowered value would scale straight back up.
            new = prev
            if up > prev * (1 + s.scale_up_tolerance):
                new = min(up, self._step_limit(prev))
            elif down < prev * (1 - s.scale_down_tolerance):
                new = down
        # Holding a stale reading is still not knowing: never plan to zero on it.
        floor = s.min_capacity_rps if reading.ok else max(s.min_capacity_rps, s.safe_floor_rps)
        self._required = max(new, floor)
        return self.recommend()

    def recommend(self) -> DemandStatus:
        """The current recommendation and condition; reads the clock, changes nothing."""
        s = self.settings
        now = self._clock.now()
        panic = now < self._panic_until
        good = self._last_good
        if good is None:
            floor = max(self._required, s.min_capacity_rps, s.safe_floor_rps)
            why = self._failure.message + "; " if self._failure else "no reading yet; "
            return DemandStatus(
                required_rps=floor,
                demand_rps=None,
                state=SourceState.UNKNOWN,
                reason=self._failure.reason if self._failure else REASON_AWAITING,
                message=f"{why}holding the safe floor of {floor:.1f} rps",
                panic=False,
            )
        at, demand = good
        age = now - at
        if self._failure is None and age <= s.hold_seconds:
            note = f" (panic: no scale-down for {self._panic_until - now:.0f}s)" if panic else ""
            required = max(self._required, s.min_capacity_rps)  # settings may have changed
            return DemandStatus(
                required_rps=required,
                demand_rps=demand,
                state=SourceState.OK,
                reason=REASON_OK,
                message=(
                    f"demand {demand:.1f} rps at target utilization "
                    f"{s.target_utilization:.0%} needs {required:.1f} rps{note}"
                ),
                panic=panic,
            )
        failure = self._failure
        reason = failure.reason if failure else REASON_NO_RECENT
        why = failure.message if failure else "no reading observed"
        if failure is not None and age <= s.hold_seconds:
            return DemandStatus(
                required_rps=max(self._required, s.min_capacity_rps, s.safe_floor_rps),
                demand_rps=demand,
                state=SourceState.STALE,
                reason=reason,
                message=(
                    f"{why}; holding the last good demand {demand:.1f} rps from {age:.0f}s ago "
                    f"for {s.hold_seconds - age:.0f}s more"
                ),
                panic=panic,
            )
        held = max(self._required, s.min_capacity_rps, s.safe_floor_rps)
        return DemandStatus(
            required_rps=held,
            demand_rps=demand,
            state=SourceState.UNKNOWN,
            reason=reason,
            message=(
                f"{why}; no good reading for {age:.0f}s (hold {s.hold_seconds:.0f}s): "
                f"holding {held:.1f} rps, no scale-down until demand is known"
            ),
            panic=False,
        )

    def _remember(self, now: float, candidate: float) -> None:
        self._history.append((now, candidate))
        s = self.settings
        keep = max(s.scale_up_stabilization_seconds, s.scale_down_stabilization_seconds)
        while self._history and self._history[0][0] < now - keep:
            self._history.popleft()

    def _step_limit(self, prev: float) -> float:
        if prev <= 0:
            return math.inf  # nothing to protect: growth from zero is not a step
        s = self.settings
        return max(prev * s.max_scale_up_factor, prev + s.max_scale_up_rps)
