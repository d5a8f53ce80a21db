"""Events are deduplicated: a repeated or flapping condition does not flood the API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inferpool.controller.planner import Planner
from inferpool.controller.settings import Settings
from inferpool.controller.translate import parse_pools
from inferpool.k8s import events
from inferpool.k8s.events import EventDeduper, ObjectRef
from tests.unit.fake_cluster import H100, ipool


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ref(uid: str = "uid-1") -> ObjectRef:
    return ObjectRef(api_version="inferpool.dev/v1alpha1", kind="InferencePool",
                     namespace="serving", name="chat", uid=uid)


def test_the_same_event_is_posted_once_per_window() -> None:
    clock = FakeClock()
    dedup = EventDeduper(window=600, burst=10, clock=clock)
    assert dedup.allow(ref(), "Stockout", "node pool h100 is stocked out")
    clock.now += 599
    assert not dedup.allow(ref(), "Stockout", "node pool h100 is stocked out")
    clock.now += 1  # the window has passed since the first post
    assert dedup.allow(ref(), "Stockout", "node pool h100 is stocked out")


def test_a_different_reason_message_or_object_is_a_different_event() -> None:
    dedup = EventDeduper(window=600, burst=10, clock=FakeClock())
    assert dedup.allow(ref(), "Stockout", "a")
    assert dedup.allow(ref(), "Stockout", "b")
    assert dedup.allow(ref(), "NodePoolLost", "a")
    assert dedup.allow(ref("uid-2"), "Stockout", "a")
    assert not dedup.allow(ref(), "Stockout", "a")


def test_a_burst_per_object_is_capped_until_the_window_moves_on() -> None:
    clock = FakeClock()
    dedup = EventDeduper(window=60, burst=3, clock=clock)
    allowed = []
    for i in range(10):
        allowed.append(dedup.allow(ref(), "Placed", f"placement: v6e@v6e={i}"))
        clock.now += 1
    assert allowed == [True] * 3 + [False] * 7
    assert dedup.allow(ref("uid-2"), "Placed", "placement: v6e@v6e=1")  # others unaffected
    clock.now += 60  # the first three have left the window
    assert dedup.allow(ref(), "Placed", "placement: v6e@v6e=10")


def test_a_flapping_condition_posts_once_per_window() -> None:
    clock = FakeClock()
    dedup = EventDeduper(window=600, burst=10, clock=clock)
    posted = 0
    for _ in range(20):  # True/False every 10 s for 200 s
        posted += dedup.allow(ref(), "InsufficientAccelerators", "60.0 req/s short")
        clock.now += 10
    assert posted == 1


@pytest.fixture
def planner(monkeypatch: pytest.MonkeyPatch) -> tuple[Planner, list[tuple[str, str]]]:
    """A planner whose Events go to a list instead of the API."""
    posted: list[tuple[str, str]] = []

    def post(api: Any, ref: ObjectRef, type_: str, reason: str, message: str, *_: Any) -> None:
        posted.append((reason, message))

    monkeypatch.setattr(events, "post", post)
    return Planner(Settings(), api=None), posted


def test_the_planner_posts_a_repeated_status_event_once(
        planner: tuple[Planner, list[tuple[str, str]]]) -> None:
    p, posted = planner
    (pool,), _ = parse_pools([ipool("chat", 30, [H100])])
    conditions = {"False": {"type": "CapacityShortfall", "status": "False"},
                  "True": {"type": "CapacityShortfall", "status": "True",
                           "reason": "InsufficientAccelerators",
                           "message": "10.0 req/s short: no more H100"}}

    async def flap() -> None:
        # the condition flips on every tick; every True would be a new Event without dedup
        for i in range(6):
            old, new = ("False", "True") if i % 2 == 0 else ("True", "False")
            body = {**pool.body, "status": {"conditions": [conditions[old]], "placement": []}}
            p._events_for(type(pool)(pool.key, body, pool.model),
                          {"conditions": [conditions[new]], "placement": []})
            p._event(pool.body, "Warning", "Stockout", "node pool h100 is stocked out")

    asyncio.run(flap())
    p._poster.shutdown(wait=True)  # Events are posted from the planner's own thread
    assert sorted(posted) == [("InsufficientAccelerators", "10.0 req/s short: no more H100"),
                              ("Stockout", "node pool h100 is stocked out")]
