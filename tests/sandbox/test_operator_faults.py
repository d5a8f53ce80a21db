"""The operator's own life never costs a replica: an API server restart, expired watches, a hung
API and clock skew between two instances (each operator its own process)."""

from __future__ import annotations

import datetime as dt
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferpool.controller.settings import Settings
from inferpool.sandbox import control
from tests.operator_process import OperatorProcess
from tests.sandbox.test_operator import V6E, apply, deployments, ipool, replicas, settle
from tests.support import Sandbox, wait_for
from tests.tcp_proxy import StallingProxy

pytestmark = pytest.mark.sandbox
DEFAULTS = Settings()
OFFSET_ENV = "INFERPOOL_TEST_WALL_CLOCK_OFFSET_SECONDS"


@pytest.fixture
def proxy(sandbox: Sandbox) -> Iterator[StallingProxy]:
    state = control.require(sandbox.name)
    p = StallingProxy("127.0.0.1", state.ports["kube-apiserver"]).start()
    yield p
    p.stop()


def proxied_kubeconfig(sandbox: Sandbox, proxy: StallingProxy, tmp_path: Path) -> Path:
    doc = yaml.safe_load(sandbox.kubeconfig.read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path = tmp_path / "proxied.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def metric(op: OperatorProcess, name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None


def readyz(op: OperatorProcess) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/readyz",
                                    timeout=2) as r:
            return str(r.read().decode().strip())
    except OSError:
        return "unreachable"


def when(op: OperatorProcess, event: str) -> list[float]:
    """Unix times of the operator's log lines `event`."""
    return [dt.datetime.fromisoformat(line["timestamp"]).timestamp()
            for line in op.log_lines() if line.get("event") == event and "timestamp" in line]


def write_times(op: OperatorProcess) -> list[float]:
    """When the operator wrote: every applied Deployment, replaced pod, and reconcile that
    reports writes (statuses are logged only at debug)."""
    times = []
    for line in op.log_lines():
        event = line.get("event")
        if event in ("applied deployment", "replacing pod on a failed node") or (
                event == "reconciled" and line.get("writes")):
            times.append(dt.datetime.fromisoformat(line["timestamp"]).timestamp())
    return times


def v6e_nodes(sandbox: Sandbox) -> list[str]:
    return sorted(n["metadata"]["name"] for n in sandbox.get_json("nodes")["items"]
                  if n["metadata"]["labels"].get("inferpool.dev/node-pool") == "v6e")


def _uid(sandbox: Sandbox, ns: str, name: str) -> str | None:
    d = deployments(sandbox, ns).get(name)
    return d["metadata"]["uid"] if d else None


def test_objects_deleted_while_the_api_server_restarts_are_not_kept_as_ghosts(
        sandbox: Sandbox, ns: str, ops: list[OperatorProcess], tmp_path: Path) -> None:
    op = OperatorProcess(sandbox, tmp_path, "restart").start()
    ops.append(op)
    op.wait_leader()
    apply(sandbox, ns, ipool("ghost", 20, [V6E]))
    settle(sandbox, ns, {"ghost-v6e-v6e": 2})
    nodes = v6e_nodes(sandbox)
    wait_for(lambda: metric(op, "inferpool_node_pool_nodes", node_pool="v6e") == len(nodes),
             what="the v6e pool in the plan")
    busy = {p["spec"].get("nodeName") for p in sandbox.get_json("pods", "-n", ns)["items"]}
    victim = next(n for n in nodes if n not in busy)
    old_uid = _uid(sandbox, ns, "ghost-v6e-v6e")
    try:
        # both deleted in etcd while the API server is down: no watch sees them go
        sandbox.inferpool("sandbox", "restart-apiserver", "--name", sandbox.name,
                          "--down-seconds", "2", "--delete", f"deployment/{ns}/ghost-v6e-v6e",
                          "--delete", f"node/{victim}", timeout=180)
        back = time.monotonic()
        wait_for(lambda: _uid(sandbox, ns, "ghost-v6e-v6e") not in (None, old_uid),
                 timeout=DEFAULTS.resync_seconds + 15, what="the Deployment to be recreated")
        wait_for(lambda: metric(op, "inferpool_node_pool_nodes", node_pool="v6e")
                 == len(nodes) - 1, timeout=DEFAULTS.resync_seconds + 15,
                 what="the removed node's capacity to leave the plan")
        assert time.monotonic() - back <= DEFAULTS.resync_seconds
        # (its old ReplicaSet, orphaned behind etcd's back, is the garbage collector's to
        # delete, which it does not promise to do soon: no settle on Ready replicas here)
        assert replicas(sandbox, ns) == {"ghost-v6e-v6e": 2}
    finally:
        sandbox.inferpool("sandbox", "recover", "--name", sandbox.name, victim)


def test_expired_watches_leave_the_caches_equal_to_a_fresh_listing(
        sandbox: Sandbox, ns: str, ops: list[OperatorProcess], proxy: StallingProxy,
        tmp_path: Path) -> None:
    # Watches of Deployments and nodes are served from etcd, not the watch cache: after a
    # compaction a watch resumed from an older resourceVersion gets 410 Gone.
    sandbox.inferpool("sandbox", "restart-apiserver", "--name", sandbox.name,
                      "--apiserver-arg=--watch-cache-sizes=deployments.apps#0,nodes#0",
                      timeout=180)
    victim = None
    try:
        op = OperatorProcess(sandbox, tmp_path, "expiry", "--log-level=debug",
                             kubeconfig=proxied_kubeconfig(sandbox, proxy, tmp_path)).start()
        ops.append(op)
        op.wait_leader(timeout=60)
        apply(sandbox, ns, ipool("expire", 20, [V6E]))
        settle(sandbox, ns, {"expire-v6e-v6e": 2})
        old_uid = _uid(sandbox, ns, "expire-v6e-v6e")
        busy = {p["spec"].get("nodeName") for p in sandbox.get_json("pods", "-n", ns)["items"]}
        victim = next(n for n in v6e_nodes(sandbox) if n not in busy)

        proxy.stall()  # shorter than the renew deadline: the operator keeps leading
        sandbox.kubectl("delete", "deployment", "-n", ns, "expire-v6e-v6e", "--wait=false")
        sandbox.kubectl("delete", "node", victim, "--wait=true")
        sandbox.inferpool("sandbox", "compact-etcd", "--name", sandbox.name)
        proxy.heal()  # the operator's watches reconnect from before the compaction: 410
        wait_for(lambda: any("Restarting the watch-stream" in str(line.get("event"))
                             for line in op.log_lines()), timeout=60,
                 what="a watch to expire (410 Gone) and kopf to re-list")
        wait_for(lambda: _uid(sandbox, ns, "expire-v6e-v6e") not in (None, old_uid),
                 timeout=DEFAULTS.resync_seconds + 15, what="the Deployment to be recreated")

        def caches_match() -> bool:
            managed = sandbox.get_json("deployments", "-A", "-l",
                                       "app.kubernetes.io/managed-by=inferpool")["items"]
            return (metric(op, "inferpool_cache_objects", resource="nodes")
                    == len(sandbox.get_json("nodes")["items"])
                    and metric(op, "inferpool_cache_objects", resource="deployments")
                    == len(managed))

        wait_for(caches_match, timeout=DEFAULTS.resync_seconds + 15,
                 what="the caches to match a fresh listing")
        settle(sandbox, ns, {"expire-v6e-v6e": 2}, timeout=90)
    finally:
        if victim is not None:
            sandbox.inferpool("sandbox", "recover", "--name", sandbox.name, victim)
        sandbox.inferpool("sandbox", "restart-apiserver", "--name", sandbox.name, timeout=180)


def test_a_leader_behind_a_hung_api_stops_writing_before_the_standby_takes_over(
        sandbox: Sandbox, ns: str, ops: list[OperatorProcess], proxy: StallingProxy,
        tmp_path: Path) -> None:
    first = OperatorProcess(sandbox, tmp_path, "hung",
                            kubeconfig=proxied_kubeconfig(sandbox, proxy, tmp_path)).start()
    ops.append(first)
    first.wait_leader()
    second = OperatorProcess(sandbox, tmp_path, "standby").start()
    ops.append(second)
    wait_for(lambda: second.said("caches complete"), timeout=60, what="the standby's caches")
    apply(sandbox, ns, ipool("hung", 20, [V6E]))
    settle(sandbox, ns, {"hung-v6e-v6e": 2})

    stalled_at = time.time()
    proxy.stall()
    wait_for(lambda: when(first, "lost leadership"), timeout=DEFAULTS.lease_seconds + 10,
             what="the leader behind the hung API to stop leading")
    lost = when(first, "lost leadership")[0]
    assert lost - stalled_at <= DEFAULTS.lease_renew_deadline_seconds + 1.0
    second.wait_leader(timeout=DEFAULTS.lease_seconds + 20)
    took_over = when(second, "became leader")[0]
    assert took_over > lost
    apply(sandbox, ns, ipool("hung", 30, [V6E]))  # the new leader writes
    settle(sandbox, ns, {"hung-v6e-v6e": 3})

    proxy.heal()  # the old leader comes back: it sees the new holder and stays standby
    wait_for(lambda: readyz(first) == "standby, caches ready", timeout=30,
             what="the old leader to be a standby")
    time.sleep(DEFAULTS.lease_seconds)
    assert len(when(first, "became leader")) == 1
    assert replicas(sandbox, ns) == {"hung-v6e-v6e": 3}
    first_writes, second_writes = write_times(first), write_times(second)
    assert first_writes
    assert second_writes
    assert max(first_writes) < lost
    assert min(second_writes) - max(first_writes) >= 1.0  # never both in the same second
    assert not [t for t in first_writes if t > stalled_at]


@pytest.mark.parametrize("skew", [30])
def test_clock_skew_between_instances_does_not_split_leadership(
        sandbox: Sandbox, ns: str, ops: list[OperatorProcess], tmp_path: Path,
        skew: int) -> None:
    slow = OperatorProcess(sandbox, tmp_path, "slow-clock",
                           env={OFFSET_ENV: str(-skew)}).start()
    ops.append(slow)
    slow.wait_leader()
    fast = OperatorProcess(sandbox, tmp_path, "fast-clock", env={OFFSET_ENV: str(skew)}).start()
    ops.append(fast)
    wait_for(lambda: fast.said("caches complete"), timeout=60, what="the second instance")
    samples: list[tuple[str, str]] = []
    deadline = time.monotonic() + 3 * DEFAULTS.lease_seconds
    while time.monotonic() < deadline:
        samples.append((readyz(slow), readyz(fast)))
        time.sleep(0.5)
    assert all(s == ("leader", "standby, caches ready") for s in samples), _odd(samples)
    assert not fast.said("became leader")
    assert not slow.said("lost leadership")

    slow.kill()  # no release: the other takes over once the record stops changing
    killed = time.monotonic()
    fast.wait_leader(timeout=DEFAULTS.lease_seconds + 20)
    assert time.monotonic() - killed >= DEFAULTS.lease_seconds - 1


def _odd(samples: list[tuple[str, str]]) -> Any:
    return [s for s in samples if s != ("leader", "standby, caches ready")][:5]
