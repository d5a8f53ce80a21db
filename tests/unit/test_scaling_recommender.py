"""DemandTracker: windows, panic mode, step cap and failure handling, all on a ManualClock."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inferpool.scaling import (
    DemandTracker,
    ManualClock,
    Reading,
    Reason,
    ScalingSettings,
    SourceState,
)

TICK = 15.0
U = 0.5  # target utilization; required = 2 x demand keeps the arithmetic readable


def good(rps: float) -> Reading:
    return Reading.good(rps)


def down() -> Reading:
    return Reading.failed(Reason.UNREACHABLE, "GET http://prom/api/v1/query: connection refused")


def make(**overrides: float) -> tuple[DemandTracker, ManualClock]:
    """A tracker at U; tolerance 0 unless given, so each test sees one mechanism at a time."""
    clock = ManualClock(1000.0)
    values = {"target_utilization": U, "scale_up_tolerance": 0.0, "scale_down_tolerance": 0.0,
              **overrides}
    return DemandTracker(ScalingSettings(**values), clock), clock


def settle(tracker: DemandTracker, clock: ManualClock, rps: float, seconds: float) -> None:
    """Feed a constant demand for `seconds`, one reading per tick."""
    for _ in range(int(seconds / TICK)):
        clock.advance(TICK)
        tracker.observe(good(rps))


# --- start-up -------------------------------------------------------------------------------


def test_before_any_reading_holds_safe_floor_and_reports_unknown() -> None:
    tracker, _ = make(min_capacity_rps=0.0, safe_floor_rps=5.0)
    status = tracker.recommend()
    assert status.state is SourceState.UNKNOWN
    assert status.demand_unknown
    assert status.reason == "AwaitingFirstReading"
    assert status.required_rps == 5.0
    assert status.demand_rps is None


def test_first_reading_jumps_straight_to_demand() -> None:
    tracker, _ = make()
    status = tracker.observe(good(100.0))
    assert status.required_rps == pytest.approx(200.0)
    assert status.state is SourceState.OK
    assert not status.demand_unknown
    assert status.reason == "DemandObserved"


def test_recommend_is_a_pure_read() -> None:
    tracker, clock = make()
    tracker.observe(good(100.0))
    clock.advance(TICK)
    tracker.observe(good(40.0))
    first = tracker.recommend()
    assert [tracker.recommend() for _ in range(5)] == [first] * 5


# --- scale up -------------------------------------------------------------------------------


def test_scale_up_is_immediate_within_the_step_cap() -> None:
    tracker, clock = make()
    settle(tracker, clock, 100.0, 600)
    clock.advance(TICK)
    assert tracker.observe(good(150.0)).required_rps == pytest.approx(300.0)


def test_growth_is_capped_at_twice_per_tick_without_panic() -> None:
    tracker, clock = make(panic_threshold=math.inf)
    settle(tracker, clock, 100.0, 600)
    steps = []
    for _ in range(4):
        clock.advance(TICK)
        steps.append(tracker.observe(good(1000.0)).required_rps)
    assert steps == pytest.approx([400.0, 800.0, 1600.0, 2000.0])


def test_additive_allowance_lets_small_pools_grow_faster_than_x2() -> None:
    tracker, clock = make(panic_threshold=math.inf, max_scale_up_rps=50.0)
    settle(tracker, clock, 10.0, 600)  # required 20
    clock.advance(TICK)
    assert tracker.observe(good(100.0)).required_rps == pytest.approx(70.0)  # 20 + 50 > 20 x 2


def test_scale_up_window_ignores_a_short_blip() -> None:
    tracker, clock = make(scale_up_stabilization_seconds=60.0)
    settle(tracker, clock, 100.0, 600)
    clock.advance(TICK)
    assert tracker.observe(good(180.0)).required_rps == pytest.approx(200.0)  # min of window
    settle(tracker, clock, 100.0, 120)
    assert tracker.required_rps == pytest.approx(200.0)
    # A sustained rise is followed once it fills the window [now - 60 s, now], both ends in.
    for expected in (200.0, 200.0, 200.0, 200.0, 360.0):
        clock.advance(TICK)
        assert tracker.observe(good(180.0)).required_rps == pytest.approx(expected)


# --- scale down -----------------------------------------------------------------------------


def test_scale_down_waits_for_the_stabilization_window() -> None:
    tracker, clock = make()
    settle(tracker, clock, 100.0, 600)
    last_high = clock.now()
    while clock.now() < last_high + 300:
        clock.advance(TICK)
        assert tracker.observe(good(30.0)).required_rps == pytest.approx(200.0)
    # The high reading has now left the 300 s window.
    clock.advance(TICK)
    assert tracker.observe(good(30.0)).required_rps == pytest.approx(60.0)


def test_scale_down_follows_the_maximum_of_the_window() -> None:
    tracker, clock = make(scale_down_stabilization_seconds=60.0)
    settle(tracker, clock, 100.0, 300)
    for rps in (90.0, 80.0, 70.0, 60.0):  # each 15 s apart
        clock.advance(TICK)
        tracker.observe(good(rps))
    assert tracker.required_rps == pytest.approx(200.0)  # 100 at t-60 is still in the window
    clock.advance(TICK)
    assert tracker.observe(good(50.0)).required_rps == pytest.approx(180.0)  # max is now 90


def test_zero_down_window_scales_down_at_once() -> None:
    tracker, clock = make(scale_down_stabilization_seconds=0.0)
    settle(tracker, clock, 100.0, 300)
    clock.advance(TICK)
    assert tracker.observe(good(10.0)).required_rps == pytest.approx(20.0)


def test_never_below_min_capacity() -> None:
    tracker, clock = make(min_capacity_rps=80.0, scale_down_stabilization_seconds=0.0)
    settle(tracker, clock, 100.0, 300)
    clock.advance(TICK)
    assert tracker.observe(good(0.0)).required_rps == pytest.approx(80.0)


def test_true_zero_demand_may_scale_to_min_zero() -> None:
    tracker, clock = make(min_capacity_rps=0.0, scale_down_stabilization_seconds=0.0)
    settle(tracker, clock, 100.0, 300)
    clock.advance(TICK)
    status = tracker.observe(good(0.0))
    assert status.required_rps == 0.0  # metrics say zero, min replicas allow zero
    assert status.state is SourceState.OK


def test_restart_seeded_with_running_capacity_keeps_the_window() -> None:
    clock = ManualClock()
    tracker = DemandTracker(
        ScalingSettings(target_utilization=U), clock, initial_required_rps=500.0
    )  # default tolerance: the drop is far beyond it
    settle(tracker, clock, 50.0, 300)
    assert tracker.required_rps == pytest.approx(500.0)
    clock.advance(TICK)
    assert tracker.observe(good(50.0)).required_rps == pytest.approx(100.0)


def test_tolerance_ignores_small_moves_both_ways() -> None:
    tracker, clock = make(scale_up_tolerance=0.1, scale_down_tolerance=0.1,
                          scale_down_stabilization_seconds=0.0)
    settle(tracker, clock, 100.0, 300)  # required 200
    for rps, expected in ((109.0, 200.0), (91.0, 200.0), (111.0, 222.0), (99.0, 200.0 * 0.99)):
        clock.advance(TICK)
        assert tracker.observe(good(rps)).required_rps == pytest.approx(expected)


def test_tolerance_is_per_direction() -> None:
    tracker, clock = make(scale_up_tolerance=0.1, scale_down_tolerance=0.05,
                          scale_down_stabilization_seconds=0.0)
    settle(tracker, clock, 100.0, 300)  # required 200
    # 6 % down is past the down band; 8 % back up is inside the up band: no flapping back
    for rps, expected in ((96.0, 200.0), (94.0, 188.0), (101.0, 188.0), (104.0, 208.0)):
        clock.advance(TICK)
        assert tracker.observe(good(rps)).required_rps == pytest.approx(expected)


def test_default_tolerances() -> None:
    settings = ScalingSettings()
    assert (settings.scale_up_tolerance, settings.scale_down_tolerance) == (0.1, 0.05)


# --- panic mode -----------------------------------------------------------------------------


def test_panic_reaches_a_big_spike_in_one_tick_despite_the_step_cap() -> None:
    tracker, clock = make()
    settle(tracker, clock, 100.0, 600)  # required 200
    clock.advance(TICK)
    status = tracker.observe(good(1000.0))  # 2000 >= 2 x 200
    assert status.required_rps == pytest.approx(2000.0)
    assert status.panic
    assert "panic" in status.message


def test_panic_suppresses_scale_down_for_its_window_then_releases() -> None:
    tracker, clock = make(scale_down_stabilization_seconds=0.0, panic_window_seconds=60.0)
    settle(tracker, clock, 100.0, 300)
    clock.advance(TICK)
    tracker.observe(good(1000.0))
    trigger = clock.now()
    while clock.now() + TICK < trigger + 60:
        clock.advance(TICK)
        assert tracker.observe(good(100.0)).required_rps == pytest.approx(2000.0)
    clock.advance(TICK)
    status = tracker.observe(good(100.0))
    assert not status.panic
    assert status.required_rps == pytest.approx(200.0)


def test_panic_retrigger_extends_the_window() -> None:
    tracker, clock = make(scale_down_stabilization_seconds=0.0, panic_window_seconds=60.0)
    settle(tracker, clock, 100.0, 300)
    clock.advance(TICK)
    tracker.observe(good(1000.0))
    clock.advance(45.0)
    # Measured capacity (replicas still starting) is low: this re-triggers panic.
    tracker.observe(good(500.0), capacity_rps=300.0)
    clock.advance(45.0)
    status = tracker.observe(good(100.0))
    assert status.panic
    assert status.required_rps == pytest.approx(2000.0)


def test_panic_threshold_is_relative_to_measured_capacity_when_given() -> None:
    tracker, clock = make(panic_threshold=2.0, panic_window_seconds=60.0)
    settle(tracker, clock, 100.0, 600)  # recommendation 200
    clock.advance(TICK)
    # Recommendation says 200, but only 100 rps of replicas are ready: 300 >= 2 x 100.
    assert tracker.observe(good(150.0), capacity_rps=100.0).panic
    tracker2, clock2 = make(panic_threshold=2.0)
    settle(tracker2, clock2, 100.0, 600)
    clock2.advance(TICK)
    assert not tracker2.observe(good(150.0)).panic


# --- load source failures -------------------------------------------------------------------


def test_failure_holds_last_good_demand_and_reports_why() -> None:
    tracker, clock = make(hold_seconds=300.0)
    settle(tracker, clock, 100.0, 600)
    clock.advance(TICK)
    status = tracker.observe(down())
    assert status.state is SourceState.STALE
    assert status.demand_unknown
    assert status.reason == "SourceUnreachable"
    assert "connection refused" in status.message
    assert "holding the last good demand 100.0 rps" in status.message
    assert status.demand_rps == 100.0
    assert status.required_rps == pytest.approx(200.0)


def test_after_hold_the_capacity_freezes_and_never_drops() -> None:
    tracker, clock = make(hold_seconds=120.0, scale_down_stabilization_seconds=0.0)
    settle(tracker, clock, 100.0, 300)
    states = []
    for _ in range(int(3600 / TICK)):
        clock.advance(TICK)
        status = tracker.observe(down())
        states.append(status.state)
        assert status.required_rps == pytest.approx(200.0)
    assert states[0] is SourceState.STALE
    assert states[-1] is SourceState.UNKNOWN
    assert states.count(SourceState.STALE) == int(120 / TICK)
    assert tracker.recommend().reason == "SourceUnreachable"


def test_missing_metrics_never_mean_zero() -> None:
    tracker, clock = make(min_capacity_rps=0.0, safe_floor_rps=3.0)
    for _ in range(100):
        clock.advance(TICK)
        status = tracker.observe(Reading.failed(Reason.EMPTY_RESULT, "query matched no series"))
        assert status.required_rps == 3.0
        assert status.state is SourceState.UNKNOWN
        assert status.reason == "EmptyResult"


def test_recovery_clears_the_condition_and_keeps_the_down_window() -> None:
    tracker, clock = make(hold_seconds=60.0)
    settle(tracker, clock, 100.0, 600)
    for _ in range(20):  # 5 minutes down: past the hold
        clock.advance(TICK)
        tracker.observe(down())
    assert tracker.recommend().state is SourceState.UNKNOWN
    clock.advance(TICK)
    status = tracker.observe(good(20.0))
    assert status.state is SourceState.OK
    assert not status.demand_unknown
    assert status.reason == "DemandObserved"
    # The held value sits in the window: no blind drop right after recovery.
    assert status.required_rps == pytest.approx(200.0)
    settle(tracker, clock, 20.0, 300)
    assert tracker.required_rps == pytest.approx(40.0)


def test_recovery_scales_up_at_once() -> None:
    tracker, clock = make(hold_seconds=60.0)
    settle(tracker, clock, 100.0, 600)
    for _ in range(20):
        clock.advance(TICK)
        tracker.observe(down())
    clock.advance(TICK)
    assert tracker.observe(good(180.0)).required_rps == pytest.approx(360.0)


def test_no_reading_for_longer_than_hold_is_unknown() -> None:
    tracker, clock = make(hold_seconds=300.0)
    tracker.observe(good(100.0))
    clock.advance(301.0)
    status = tracker.recommend()
    assert status.state is SourceState.UNKNOWN
    assert status.reason == "NoRecentReading"
    assert status.required_rps == pytest.approx(200.0)


def test_failure_before_any_good_reading_reports_the_source_reason() -> None:
    tracker, clock = make(safe_floor_rps=2.0)
    clock.advance(TICK)
    status = tracker.observe(Reading.failed(Reason.TIMEOUT, "no answer within 5s"))
    assert status.state is SourceState.UNKNOWN
    assert status.reason == "SourceTimeout"
    assert "no answer within 5s" in status.message
    assert status.required_rps == 2.0


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"target_utilization": 0.0},
        {"target_utilization": 1.5},
        {"panic_threshold": 1.0},
        {"max_scale_up_factor": 0.5},
        {"safe_floor_rps": 0.0},
        {"hold_seconds": -1.0},
        {"scale_down_stabilization_seconds": math.inf},
        {"scale_up_tolerance": 1.0},
        {"scale_down_tolerance": -0.1},
    ],
)
def test_invalid_settings_are_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        ScalingSettings(**bad)


# --- properties -----------------------------------------------------------------------------

readings = st.one_of(
    st.floats(min_value=0.0, max_value=1e5).map(Reading.good),
    st.just(Reading.failed(Reason.TIMEOUT, "slow")),
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(min_value=0.0, max_value=600.0), readings), max_size=60),
    min_capacity=st.floats(min_value=0.0, max_value=100.0),
)
# Demand 0, then the source fails for exactly the hold period: stale, so never zero.
@example(steps=[(1.0, Reading.good(0.0)), (300.0, Reading.failed(Reason.TIMEOUT, "slow"))],
         min_capacity=0.0)
def test_invariants_hold_for_any_sequence(
    steps: list[tuple[float, Reading]], min_capacity: float
) -> None:
    clock = ManualClock()
    tracker = DemandTracker(
        ScalingSettings(min_capacity_rps=min_capacity, safe_floor_rps=1.0), clock
    )
    for dt, reading in steps:
        clock.advance(dt)
        before = tracker.required_rps
        status = tracker.observe(reading)
        assert status.required_rps >= min_capacity
        assert math.isfinite(status.required_rps)
        if status.demand_unknown:
            assert status.required_rps > 0  # never zero for missing metrics
        if status.state is SourceState.UNKNOWN:
            assert status.required_rps >= before  # blind: never down
        if reading.ok and not status.panic and status.required_rps > before > 0:
            assert status.required_rps <= before * 2.0 + 1e-9  # the step cap


@settings(max_examples=50, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=1e4),
    target=st.floats(min_value=0.0, max_value=1e4),
)
def test_constant_demand_converges_exactly(start: float, target: float) -> None:
    clock = ManualClock()
    tracker = DemandTracker(
        ScalingSettings(target_utilization=U, safe_floor_rps=0.5, scale_up_tolerance=0.0,
                        scale_down_tolerance=0.0), clock
    )
    tracker.observe(Reading.good(start))
    for _ in range(60):  # 15 minutes: longer than the down window, enough x2 steps up
        clock.advance(TICK)
        tracker.observe(Reading.good(target))
    assert tracker.required_rps == pytest.approx(target / U)
