"""Only one operator plans at a time; a standby takes over; a killed operator converges."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from tests.operator_process import OperatorProcess
from tests.sandbox.test_operator import H100, V6E, apply, ipool, ready, replicas, settle
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox


def test_standby_stays_idle_until_the_leader_dies(
    sandbox: Sandbox, ns: str, ops: list[OperatorProcess], tmp_path: Path
) -> None:
    first = OperatorProcess(sandbox, tmp_path, "first").start()
    ops.append(first)
    first.wait_leader()
    second = OperatorProcess(sandbox, tmp_path, "second").start()
    ops.append(second)
    apply(sandbox, ns, ipool("ha", 20, [V6E]))
    settle(sandbox, ns, {"ha-v6e-v6e": 2})
    wait_for(lambda: second.said("starting"), timeout=30, what="the standby to start")
    assert not second.said("became leader")
    assert not any(line.get("event") == "reconciled" for line in second.log_lines())

    first.kill()  # no clean release: the lease has to expire
    second.wait_leader(timeout=40)
    apply(sandbox, ns, ipool("ha", 30, [V6E]))
    settle(sandbox, ns, {"ha-v6e-v6e": 3})


def test_operator_killed_mid_rebalance_converges_without_duplicates_or_dropping_below_min(
    sandbox: Sandbox, ns: str, ops: list[OperatorProcess], tmp_path: Path
) -> None:
    op = OperatorProcess(sandbox, tmp_path, "restart").start()
    ops.append(op)
    op.wait_leader()
    apply(sandbox, ns, ipool("move", 30, [H100, V6E], min_=3))
    settle(sandbox, ns, {"move-v6e-v6e": 3})

    lowest: list[int] = []
    stop = threading.Event()

    def watch_ready() -> None:
        while not stop.is_set():
            with contextlib.suppress(AssertionError):
                lowest.append(sum(ready(sandbox, ns).values()))
            stop.wait(0.3)

    watcher = threading.Thread(target=watch_ready, daemon=True)
    watcher.start()
    try:
        # TPU becomes the expensive choice: every replica moves to H100, make-before-break.
        cheaper_h100 = ipool("move", 30, [{**H100, "costPerHour": 10}, V6E], min_=3)
        apply(sandbox, ns, cheaper_h100)
        wait_for(lambda: replicas(sandbox, ns).get("move-h100-h100", 0) > 0, timeout=30,
                 what="the move to start")
        op.kill()
        restarted = OperatorProcess(sandbox, tmp_path, "restart-2").start()
        ops.append(restarted)
        restarted.wait_leader(timeout=40)
        settle(sandbox, ns, {"move-h100-h100": 3}, timeout=120)
    finally:
        stop.set()
        watcher.join()
    assert min(lowest) >= 3, f"ready replicas dropped to {min(lowest)}"


def test_leader_change_during_a_pool_failure_still_fails_over(
    sandbox: Sandbox, ns: str, ops: list[OperatorProcess], tmp_path: Path
) -> None:
    op = OperatorProcess(sandbox, tmp_path, "before").start()
    ops.append(op)
    op.wait_leader()
    apply(sandbox, ns, ipool("fo", 30, [H100, V6E], min_=3))
    settle(sandbox, ns, {"fo-v6e-v6e": 3})
    sandbox.inferpool("sandbox", "fail", "--name", sandbox.name, "--pool", "v6e")
    try:
        op.kill()  # the operator dies while its replicas' pool is dying
        after = OperatorProcess(sandbox, tmp_path, "after").start()
        ops.append(after)
        after.wait_leader(timeout=40)
        settle(sandbox, ns, {"fo-h100-h100": 3}, timeout=60)
    finally:
        sandbox.inferpool("sandbox", "recover", "--name", sandbox.name, "--pool", "v6e")
