"""DemandBook across the operator's own life: a new tracker (restart, new leader) starts from
what runs, and one hung load source never holds up the other pools' plans."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest

from inferpool.api.inference_pool import InferencePool
from inferpool.controller import demand
from inferpool.controller.demand import REASON_OVERDUE, DemandBook, Running, running
from inferpool.controller.planner import Planner
from inferpool.controller.settings import Settings
from inferpool.controller.translate import parse_pools
from inferpool.scaling import DemandStatus, ManualClock, PrometheusConfig, Reading, SourceState
from tests.unit.test_controller_rules import live, pool_body

URL = "http://prom.monitoring:9090"
WAIT = 0.05  # how long a reconcile waits for reads in flight, in these tests


class ScriptedSource:
    """Stands in for PrometheusSource: answers `value`, or never answers while `hang` is set."""

    value = 210.0
    hang = False
    reads = 0

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config

    async def read(self) -> Reading:
        ScriptedSource.reads += 1
        if ScriptedSource.hang:
            await asyncio.Event().wait()  # a server that accepts and never answers
        return Reading.good(ScriptedSource.value)

    async def aclose(self) -> None:
        pass


@pytest.fixture(autouse=True)
def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    ScriptedSource.value, ScriptedSource.hang, ScriptedSource.reads = 210.0, False, 0
    monkeypatch.setattr(demand, "PrometheusSource", ScriptedSource)


def prometheus_body(name: str = "chat", *, min_: int = 2, capacity: float = 12,
                    status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body = pool_body(name, demand={"prometheus": {"query": "sum(rate(x[1m]))"},
                                   "targetUtilization": 0.7})
    body["spec"]["replicas"] = {"min": min_, "max": 40}
    body["spec"]["variants"][0]["capacity"] = capacity
    if status is not None:
        body["status"] = dict(status)
    return body


def model(body: Mapping[str, Any]) -> InferencePool:
    return InferencePool.model_validate({k: v for k, v in body.items() if k != "status"})


def book(clock: ManualClock, **kwargs: Any) -> DemandBook:
    return DemandBook(clock, URL, wait_seconds=WAIT, **kwargs)


async def observe(b: DemandBook, pools: Mapping[str, InferencePool],
                  run: Mapping[str, Running]) -> dict[str, DemandStatus]:
    # A reconcile must never wait for a slow source: fail instead of hanging the test.
    return await asyncio.wait_for(b.observe_all(pools, run), timeout=2)


# -- 1. a restart or a new leader starts from what runs ------------------------------------


def test_restart_under_load_keeps_what_runs() -> None:
    """min 2 x capacity 12, 300 req/s running, 210 req/s demand: the first plan after a restart
    asked for 48 req/s (the floor 24, doubled by the step cap) and removed replicas."""
    body = prometheus_body(status={"observedGeneration": 1, "demand": 210.0,
                                   "requiredCapacity": 300.0})
    (pool,), _ = parse_pools([body])
    deployments = {("ns/chat", "v6e", "v6e"): live(("ns/chat", "v6e", "v6e"), 25, 25)}
    now = running(pool, deployments)
    assert now == Running(ready_rps=300.0, desired_rps=300.0, last_demand_rps=210.0,
                         last_required_rps=300.0)

    async def run() -> None:
        clock = ManualClock(1000.0)
        b = book(clock)
        try:
            first = await observe(b, {pool.key: pool.model}, {pool.key: now})
            assert first[pool.key].required_rps == pytest.approx(300.0)
            # demand stays: nothing moves on the following ticks either (no panic round trip)
            for _ in range(3):
                clock.advance(15)
                again = await observe(b, {pool.key: pool.model}, {pool.key: now})
                assert again[pool.key].required_rps == pytest.approx(300.0)
                assert not again[pool.key].panic
        finally:
            await b.close()

    asyncio.run(run())


def test_restart_after_a_drop_scales_down_only_after_the_window() -> None:
    ScriptedSource.value = 70.0  # needs 100 req/s; 300 are Ready
    pool = model(prometheus_body())
    now = Running(ready_rps=300.0, desired_rps=300.0)

    async def run() -> list[float]:
        clock = ManualClock(1000.0)
        b = book(clock)
        seen = []
        try:
            for _ in range(22):  # 0 .. 315 s at 15 s ticks; the default window is 300 s
                seen.append((await observe(b, {"ns/chat": pool}, {"ns/chat": now}))[
                    "ns/chat"].required_rps)
                clock.advance(15)
        finally:
            await b.close()
        return seen

    seen = asyncio.run(run())
    assert seen[:21] == [pytest.approx(300.0)] * 21
    assert seen[21] == pytest.approx(100.0)


def test_seed_covers_starting_replicas_but_an_old_status_never_scales_up() -> None:
    settings = demand.scaling_settings(model(prometheus_body()))
    # a scale-up in flight: 20 of 25 Ready, the last status asked for all of them
    starting = Running(ready_rps=240.0, desired_rps=300.0, last_demand_rps=210.0)
    assert demand.initial_required_rps(settings, starting) == pytest.approx(300.0)
    # a status from a busier day: never above what the Deployments ask for
    old = Running(ready_rps=120.0, desired_rps=120.0, last_demand_rps=600.0,
                  last_required_rps=857.0)
    assert demand.initial_required_rps(settings, old) == pytest.approx(120.0)
    # nothing runs, no status: the floor (min 2 x 12)
    assert demand.initial_required_rps(settings, Running(0.0)) == pytest.approx(24.0)


def test_running_ignores_a_malformed_or_older_status() -> None:
    key = ("ns/chat", "v6e", "v6e")
    for status in ({"demand": "lots", "requiredCapacity": None}, {"demand": True},
                   {"observedGeneration": 0, "requiredCapacity": 500.0}, {"demand": -5.0}):
        (pool,), _ = parse_pools([prometheus_body(status=status)])
        got = running(pool, {key: live(key, 3, 2)})
        assert got == Running(ready_rps=24.0, desired_rps=36.0), status


def test_a_new_leader_rebuilds_its_trackers_from_what_runs() -> None:
    """An instance that led before, lost the Lease and takes it again must not plan from the
    history it had then: the trackers are rebuilt, seeded from what runs now."""
    leading = [True]
    planner = Planner(Settings(), api=None, is_leader=lambda: leading[0])
    pool = model(prometheus_body())

    async def run() -> tuple[float, float]:
        try:
            small = Running(ready_rps=24.0, desired_rps=24.0)
            assert await planner.follow_leadership()
            await planner.demand.observe_all({"ns/chat": pool}, {"ns/chat": small})
            leading[0] = False
            assert not await planner.follow_leadership()
            leading[0] = True  # meanwhile another leader scaled the pool to 300 req/s
            assert await planner.follow_leadership()
            big = Running(ready_rps=300.0, desired_rps=300.0)
            ScriptedSource.value = 70.0
            after = await planner.demand.observe_all({"ns/chat": pool}, {"ns/chat": big})
            kept = await planner.demand.observe_all({"ns/chat": pool}, {"ns/chat": big})
            return after["ns/chat"].required_rps, kept["ns/chat"].required_rps
        finally:
            await planner.demand.close()

    assert asyncio.run(run()) == (pytest.approx(300.0), pytest.approx(300.0))


# -- 9. one slow tenant never delays the others ------------------------------------------------


def test_a_hung_source_does_not_delay_other_pools_and_its_held_value_ages() -> None:
    slow = model(prometheus_body("slow"))
    fixed = model(pool_body("fixed", demand={"fixed": 30.0, "targetUtilization": 1.0}))
    pools = {"ns/slow": slow, "ns/fixed": fixed}
    clock = ManualClock(1000.0)
    b = book(clock, overdue_seconds=30.0)

    async def run() -> list[dict[str, DemandStatus]]:
        out = []
        try:
            out.append(await observe(b, pools, {}))  # both answer
            ScriptedSource.hang = True
            for _ in range(4):  # 15, 30, 45, 60 s: the read started at 15 s never answers
                clock.advance(15)
                started = time.monotonic()
                out.append(await observe(b, pools, {}))
                assert time.monotonic() - started < 1.0
        finally:
            await b.close()
        return out

    first, t15, t30, t45, t60 = asyncio.run(run())
    assert first["ns/slow"].demand_rps == 210.0
    for status in (t15, t30, t45, t60):
        assert status["ns/fixed"].state is SourceState.OK
        assert status["ns/fixed"].required_rps == pytest.approx(30.0)
        # the planner keeps the last value it knows
        assert status["ns/slow"].required_rps == pytest.approx(300.0)
        assert status["ns/slow"].demand_rps == 210.0
    assert ScriptedSource.reads == 2  # one read in flight at a time, never a pile of them
    # within the bound the held value is used quietly, past it the pool reports its age
    assert t15["ns/slow"].state is SourceState.OK
    assert t30["ns/slow"].state is SourceState.OK
    for status, age, running_for in ((t45, 45, 30), (t60, 60, 45)):
        slow_status = status["ns/slow"]
        assert slow_status.state is SourceState.STALE
        assert slow_status.demand_unknown
        assert slow_status.reason == REASON_OVERDUE
        assert f"no answer for {running_for}s" in slow_status.message
        assert f"210.0 rps from {age}s ago" in slow_status.message


def test_a_slow_first_reading_is_used_as_soon_as_it_comes() -> None:
    """A new pool whose source answers after the wait: the reconcile does not wait for it, and
    the planner is woken when it arrives instead of a tick later."""
    woken: list[str] = []
    gate = asyncio.Event()

    class Slow(ScriptedSource):
        async def read(self) -> Reading:
            await gate.wait()
            return Reading.good(42.0)

    async def run() -> tuple[DemandStatus, DemandStatus]:
        clock = ManualClock(1000.0)
        b = book(clock, on_late_first_reading=woken.append)
        demand.PrometheusSource = Slow  # type: ignore[misc]  # the autouse fixture restores it
        try:
            pool = model(prometheus_body())
            before = (await observe(b, {"ns/chat": pool}, {}))["ns/chat"]
            gate.set()
            await asyncio.sleep(0.01)
            assert woken == ["ns/chat"]
            after = (await observe(b, {"ns/chat": pool}, {}))["ns/chat"]
            return before, after
        finally:
            await b.close()

    before, after = asyncio.run(run())
    assert before.state is SourceState.UNKNOWN
    assert before.reason == "AwaitingFirstReading"
    assert after.state is SourceState.OK
    assert after.demand_rps == 42.0
