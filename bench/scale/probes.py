"""What `make bench-scale` measures and how: the API read as plain JSON, the operator's
process (/proc), its log lines and /metrics, and kwok's log."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.common import say
from inferpool.sandbox import state
from inferpool.sandbox.operator_process import OperatorProcess

# Client-side rate limits of the usual Kubernetes clients, for comparison (the Python client
# and kopf have none): client-go's rest.Config defaults and controller-runtime's.
LEASE_REQUESTS_PER_SECOND = 2 / 2.5  # GET + PUT of the leader Lease every lease-seconds / 4
CLIENT_LIMITS = {"client_go_default": {"qps": 5, "burst": 10},
                 "controller_runtime_default": {"qps": 20, "burst": 30}}


def api_client(kubeconfig: Path) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 16  # read when the client is made
    return client.ApiClient(cfg)


def raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A call's JSON as plain dicts (the client's model objects are slow at this size)."""
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def is_ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def placed(pool: dict[str, Any]) -> bool:
    st = pool.get("status") or {}
    return (st.get("observedGeneration") == pool["metadata"]["generation"]
            and (st.get("desiredReplicas") or 0) > 0
            and st.get("readyReplicas") == st.get("desiredReplicas"))


def percentiles(values: Iterable[float], digits: int = 2) -> dict[str, Any]:
    """p50/p99 (nearest rank), max and count."""
    xs = sorted(values)
    if not xs:
        return {"samples": 0}
    rank = max(0, math.ceil(0.99 * len(xs)) - 1)
    return {"p50": round(statistics.median(xs), digits), "p99": round(xs[rank], digits),
            "max": round(xs[-1], digits), "samples": len(xs)}


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (wall seconds, value) in value per minute."""
    if len(samples) < 3:
        return None
    ts, vs = [t for t, _ in samples], [v for _, v in samples]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    return 60 * sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / var


def proc_status(pid: int, key: str) -> float | None:
    """A `/proc/<pid>/status` figure in MB (VmRSS, VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, USER_HZ ticks
    except (OSError, ValueError, IndexError):
        return None


class RssSampler(threading.Thread):
    """Samples the operator's VmRSS every `interval` seconds, in the background."""

    def __init__(self, pid: int, interval: float = 2.0) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            if (mb := proc_status(self.pid, "VmRSS")) is not None:
                self.samples.append((time.time(), mb))
            if self._done.wait(self.interval):
                return

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(t, v) for t, v in self.samples if start <= t <= end]


def parse_time(value: str) -> float:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _timestamp(line: dict[str, Any]) -> float:
    return parse_time(str(line.get("timestamp", "")))


def reconciles(op: OperatorProcess, start: float, end: float) -> list[dict[str, Any]]:
    """The operator's `reconciled` log lines within [start, end] (wall clock), with `t`."""
    out = []
    for line in op.log_lines():
        if line.get("event") == "reconciled" and start <= (t := _timestamp(line)) <= end:
            out.append({**line, "t": t})
    return out


def phase_summary(lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    phases = [line["phases_ms"] for line in lines if line.get("phases_ms")]
    if not phases:
        return {}
    names = list(phases[0])
    out = {name: percentiles((p.get(name, 0.0) for p in phases), 1) for name in names}
    out["total"] = percentiles((sum(p.values()) for p in phases), 1)
    return out


def write_rates(lines: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Writes per second over a window, and the burst rate inside the busiest reconcile
    (its writes over its apply + status phases, where the writes happen)."""
    writes = [int(line.get("writes", 0)) for line in lines]
    bursts = [int(line.get("writes", 0)) * 1000 /
              max(1.0, line["phases_ms"].get("apply", 0) + line["phases_ms"].get("status", 0))
              for line in lines if line.get("writes") and line.get("phases_ms")]
    return {"seconds": round(seconds, 1), "reconciles": len(lines), "writes": sum(writes),
            "writes_per_second": round(sum(writes) / seconds, 2) if seconds > 0 else None,
            "max_writes_in_one_reconcile": max(writes, default=0),
            "peak_writes_per_second_in_a_reconcile": round(max(bursts, default=0.0), 1)}


def api_rates(lines: Sequence[dict[str, Any]], seconds: float, events: int) -> dict[str, Any]:
    """`write_rates` plus the Events posted and every request the operator makes, counting
    the leader Lease (its five watch streams are long-lived and not counted)."""
    out = write_rates(lines, seconds)
    out["operator_events_posted"] = events
    out["all_requests_per_second"] = round(
        (out["writes"] + events) / seconds + LEASE_REQUESTS_PER_SECOND, 2) if seconds else None
    return out


def scrape(port: int) -> dict[str, float]:
    """The operator's own counters from /metrics (unlabelled series and result="success")."""
    wanted = ("inferpool_api_writes_total", "inferpool_pods_replaced_total",
              "inferpool_reconcile_total{result=\"success\"}",
              "inferpool_reconcile_total{result=\"error\"}",
              "inferpool_reconcile_duration_seconds_sum",
              "inferpool_reconcile_duration_seconds_count")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError as exc:
        say(f"metrics scrape failed: {exc}")
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


def operator_events(core: client.CoreV1Api) -> int:
    """Events the operator posted (they are not in its `writes` count)."""
    return len(raw(core.list_event_for_all_namespaces,
                   field_selector="reportingComponent=inferpool-operator")["items"])


def last_event(op: OperatorProcess, event: str, start: float, end: float) -> float | None:
    """Seconds from `start` to the operator's last `event` log line within [start, end]."""
    times = [t for line in op.log_lines() if line.get("event") == event
             and start <= (t := _timestamp(line)) <= end]
    return round(max(times) - start, 1) if times else None


def kwok_stage_errors(name: str) -> dict[str, int]:
    """kwok's failed stage applications, by stage (a pod whose Ready stage failed waits for a
    retry), from the sandbox's kwok log."""
    errors: Counter[str] = Counter()
    try:
        with (state.sandbox_dir(name) / "logs" / "kwok.log").open(errors="replace") as log:
            for line in log:
                if "failed to apply stage" in line:
                    errors[json.loads(line).get("stage", "?")] += 1
    except (OSError, ValueError):
        pass
    return dict(errors)
