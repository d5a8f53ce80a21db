"""LeaseElector: client-go's election semantics, on a fake clock and a fake Lease API."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from inferpool.k8s.lease import LeaseElector, holder_gone

DURATION, DEADLINE, RETRY = 10, 6.0, 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeLeaseApi:
    """One Lease with resourceVersion checks; `down` makes every call of one caller fail."""

    def __init__(self) -> None:
        self.lease: client.V1Lease | None = None
        self.rv = 0
        self.writes: list[str] = []

    def for_caller(self, caller: str) -> CallerApi:
        return CallerApi(self, caller)


class CallerApi:
    def __init__(self, store: FakeLeaseApi, caller: str) -> None:
        self.store, self.caller, self.down = store, caller, False

    def _check(self, timeout: Any) -> None:
        assert timeout, "every Lease call carries a request timeout"
        if self.down:
            raise ApiException(status=0, reason="timed out")

    def read_namespaced_lease(self, name: str, namespace: str, *, _request_timeout: Any = None
                              ) -> client.V1Lease:
        self._check(_request_timeout)
        if self.store.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.store.lease)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], *,
                                _request_timeout: Any = None) -> None:
        self._check(_request_timeout)
        if self.store.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        spec = body["spec"]
        self.store.rv += 1
        self.store.lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=body["metadata"]["name"], namespace=namespace,
                                         resource_version=str(self.store.rv)),
            spec=client.V1LeaseSpec(holder_identity=spec["holderIdentity"],
                                    lease_duration_seconds=spec["leaseDurationSeconds"],
                                    renew_time=spec["renewTime"], lease_transitions=0))
        self.store.writes.append(self.caller)

    def replace_namespaced_lease(self, name: str, namespace: str, body: client.V1Lease, *,
                                 _request_timeout: Any = None) -> client.V1Lease:
        self._check(_request_timeout)
        assert self.store.lease is not None
        if body.metadata.resource_version != self.store.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        self.store.rv += 1
        body = copy.deepcopy(body)
        body.metadata.resource_version = str(self.store.rv)
        self.store.lease = body
        self.store.writes.append(self.caller)
        return copy.deepcopy(body)


def elector(api: CallerApi, identity: str, clock: FakeClock, skew: float = 0.0
            ) -> LeaseElector:
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return LeaseElector(api, "lease", "default", identity,  # type: ignore[arg-type]
                        duration_seconds=DURATION, renew_deadline_seconds=DEADLINE,
                        monotonic=clock,
                        wall=lambda: base + dt.timedelta(seconds=clock.now + skew))


def round_of(e: LeaseElector) -> None:
    with contextlib.suppress(ApiException):  # the lease loop logs it; leadership runs out
        e.try_acquire_or_renew()


def simulate(until: float, electors: dict[str, LeaseElector], clock: FakeClock,
             step: float = 0.25) -> list[tuple[float, frozenset[str]]]:
    """Every elector runs a round every RETRY seconds (staggered); returns who leads when."""
    timeline = []
    offsets = {name: i * RETRY / len(electors) for i, name in enumerate(electors)}
    while clock.now < until:
        for name, e in electors.items():
            if abs((clock.now - offsets[name]) % RETRY) < 1e-9:
                round_of(e)
        leaders = frozenset(n for n, e in electors.items() if e.is_leader())
        assert len(leaders) <= 1, f"two leaders at t={clock.now}: {sorted(leaders)}"
        timeline.append((clock.now, leaders))
        clock.now += step
    return timeline


@pytest.mark.parametrize("skew", [30.0, -30.0])
def test_clock_skew_does_not_decide_who_leads(skew: float) -> None:
    clock, store = FakeClock(), FakeLeaseApi()
    first = elector(store.for_caller("first"), "first", clock, skew=-skew)
    second = elector(store.for_caller("second"), "second", clock, skew=skew)
    timeline = simulate(60, {"first": first, "second": second}, clock)
    assert all(leaders == {"first"} for t, leaders in timeline if t > 0)
    assert store.lease is not None
    assert store.lease.spec.lease_transitions == 0


def test_a_leader_that_cannot_renew_stops_before_the_standby_takes_over() -> None:
    clock, store = FakeClock(), FakeLeaseApi()
    first_api, second_api = store.for_caller("first"), store.for_caller("second")
    first, second = elector(first_api, "first", clock), elector(second_api, "second", clock)
    simulate(10, {"first": first, "second": second}, clock)
    assert first.is_leader()
    last_renewal_start = 10 - RETRY  # first renews at even seconds
    first_api.down = True  # partitioned (or the renewal hangs until it times out)
    timeline = simulate(40, {"first": first, "second": second}, clock)
    first_stopped = min(t for t, leaders in timeline if "first" not in leaders)
    second_started = min(t for t, leaders in timeline if "second" in leaders)
    assert first_stopped <= last_renewal_start + DEADLINE
    # the standby waited a whole lease duration after it last saw the record change
    assert second_started >= last_renewal_start + DURATION
    assert second_started - first_stopped >= DURATION - DEADLINE
    first_api.down = False  # back: the old leader sees the new holder and stays standby
    timeline = simulate(60, {"first": first, "second": second}, clock)
    assert all(leaders == {"second"} for _, leaders in timeline)


def test_leadership_runs_out_without_any_call_returning() -> None:
    """A hung renewal cannot keep `is_leader` True: it is judged on the clock alone."""
    clock, store = FakeClock(), FakeLeaseApi()
    e = elector(store.for_caller("a"), "a", clock)
    assert e.try_acquire_or_renew()
    clock.now = DEADLINE - 0.01
    assert e.is_leader()
    clock.now = DEADLINE
    assert not e.is_leader()


def test_release_hands_over_at_once() -> None:
    clock, store = FakeClock(), FakeLeaseApi()
    first = elector(store.for_caller("first"), "first", clock)
    second = elector(store.for_caller("second"), "second", clock)
    simulate(6, {"first": first, "second": second}, clock)
    first.release()
    assert not first.is_leader()
    assert second.try_acquire_or_renew()


def test_of_two_racing_candidates_only_one_wins() -> None:
    clock, store = FakeClock(), FakeLeaseApi()
    a, b = elector(store.for_caller("a"), "a", clock), elector(store.for_caller("b"), "b", clock)
    a.try_acquire_or_renew()
    clock.now = 100  # a is gone; both see the record expired and race for it
    stale = store.for_caller("b").read_namespaced_lease("lease", "default", _request_timeout=1)
    assert a.try_acquire_or_renew()
    with pytest.raises(ApiException) as err:
        store.for_caller("b").replace_namespaced_lease("lease", "default", stale,
                                                       _request_timeout=1)
    assert err.value.status == 409
    assert not b.try_acquire_or_renew()


def test_renew_deadline_is_kept_below_the_lease_duration() -> None:
    e = LeaseElector(FakeLeaseApi().for_caller("a"), "l", "d", "a",  # type: ignore[arg-type]
                     duration_seconds=10, renew_deadline_seconds=30)
    assert e.renew_deadline_seconds < 10


def test_holder_gone_is_judged_from_the_local_observation() -> None:
    assert holder_gone(None, "me", 0, 10, 0)
    assert holder_gone("me", "me", 0, 10, 0)
    assert not holder_gone("other", "me", observed_at=5, duration=10, now=14.9)
    assert holder_gone("other", "me", observed_at=5, duration=10, now=15)
