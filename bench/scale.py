"""`make bench-scale`: the operator at scale on the sandbox.

    .venv/bin/python -m bench.scale [--nodes 2000] [--node-pools 32] [--pools 500]
                                    [--soak-minutes 30]

Generates `--node-pools` simulated node pools of the three families (H100, A100 and L4 GPUs; TPU
v6e and v5e slices; Trainium, Trainium2 and Inferentia2) with the vendors' real labels and taints,
`--nodes` nodes in all, and `--pools` InferencePools of 1-3 variants with fixed demand sized to
use ~65% of the accelerators. All InferencePools exist before the operator starts. Measures:

- time from operator start to every InferencePool placed (status.readyReplicas ==
  desiredReplicas at the current generation), with the operator's resident memory over time;
- failover at that scale: single nodes hosting replicas fail one after another; from the node's
  NotReady to its InferencePools' replicas Ready elsewhere, p50/p99;
- the operator's API writes (its `reconciled` log lines and `inferpool_api_writes_total`) and
  Events, as requests/s, next to the usual client-side QPS limits;
- the planner's reconcile phases (`phases_ms`) p50/p99;
- a soak: one demand bump every `--soak-interval` seconds; each must show in the status within
  `--stall-seconds` (else a watch has stalled), and the memory trend over the soak (MB/min).

Prints one JSON summary on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import signal
import statistics
import string
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from bench.common import Cluster, operator, sandbox, say
from inferpool.sandbox import control, state
from inferpool.sandbox.operator_process import OperatorProcess

GROUP, VERSION, PLURAL = "inferpool.dev", "v1alpha1", "inferencepools"
POOL_LABEL = "inferpool.dev/pool"
NAMESPACES = 10
USE_SHARE = 0.65  # of each accelerator type's slots that demand asks for
TARGET_UTILIZATION = 0.8  # spec.demand.targetUtilization of every pool
ALTERNATE_PRICE = 1.5  # alternates cost this much more per req/s than a pool's first variant
# Client-side rate limits of the usual Kubernetes clients, for comparison (the Python client
# and kopf have none): client-go's rest.Config defaults and controller-runtime's.
LEASE_REQUESTS_PER_SECOND = 2 / 2.5  # GET + PUT of the leader Lease every lease-seconds / 4
CLIENT_LIMITS = {"client_go_default": {"qps": 5, "burst": 10},
                 "controller_runtime_default": {"qps": 20, "burst": 30}}


# --- the cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of accelerator node, and the variant that runs on it."""

    family: str
    accelerators: int  # per node
    cpu: str
    memory: str
    cloud: str  # "gke" or "eks": which pool and capacity-type labels the nodes carry
    labels: dict[str, str]
    accelerator: dict[str, Any]  # the variant's spec.variants[].accelerator
    capacity: float  # req/s one replica serves
    size: str  # "large" (70B-class, whole nodes) or "small" (8B-class, a few devices)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def per_replica(self) -> int:
        return int(self.accelerator["count"])


def _gpu(product: str, gke: str, machine: str, count: int, memory: str) -> dict[str, str]:
    return {"cloud.google.com/gke-accelerator": gke, "node.kubernetes.io/instance-type": machine,
            "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(count),
            "nvidia.com/gpu.memory": memory}


def _tpu(accelerator: str, topology: str, machine: str) -> dict[str, str]:
    return {"cloud.google.com/gke-tpu-accelerator": accelerator,
            "cloud.google.com/gke-tpu-topology": topology,
            "node.kubernetes.io/instance-type": machine}


def _neuron(machine: str, name: str) -> dict[str, str]:
    return {"node.kubernetes.io/instance-type": machine,
            "karpenter.k8s.aws/instance-accelerator-name": name}


H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
L4 = "NVIDIA-L4"
# Sizes never mix on one kind of node (8B-class replicas would fragment 8-GPU nodes under the
# scheduler's spreading and leave 70B-class replicas Pending: a real effect, not this bench's).
KINDS: dict[str, Kind] = {
    "h100": Kind("nvidia", 8, "208", "1872Gi", "gke",
                 _gpu(H100, "nvidia-h100-80gb", "a3-highgpu-8g", 8, "81559"),
                 {"family": "nvidia", "product": H100, "count": 8}, 40.0, "large"),
    "a100": Kind("nvidia", 8, "96", "1360Gi", "gke",
                 _gpu(A100, "nvidia-a100-80gb", "a2-ultragpu-8g", 8, "81920"),
                 {"family": "nvidia", "product": A100, "count": 8}, 22.0, "large"),
    "l4": Kind("nvidia", 4, "48", "192Gi", "gke",
               _gpu(L4, "nvidia-l4", "g2-standard-48", 4, "23034"),
               {"family": "nvidia", "product": L4, "count": 1}, 5.0, "small"),
    "v6e": Kind("tpu", 8, "180", "1440Gi", "gke",
                _tpu("tpu-v6e-slice", "2x4", "ct6e-standard-8t"),
                {"family": "tpu", "type": "tpu-v6e-slice", "topology": "2x4", "count": 8},
                35.0, "large"),
    "v5e": Kind("tpu", 8, "224", "192Gi", "gke",
                _tpu("tpu-v5-lite-podslice", "2x4", "ct5lp-hightpu-8t"),
                {"family": "tpu", "type": "tpu-v5-lite-podslice", "topology": "2x4",
                 "count": 8}, 16.0, "large"),
    "v5e-2x2": Kind("tpu", 4, "112", "192Gi", "gke",
                    _tpu("tpu-v5-lite-podslice", "2x2", "ct5lp-hightpu-4t"),
                    {"family": "tpu", "type": "tpu-v5-lite-podslice", "topology": "2x2",
                     "count": 4}, 12.0, "small"),
    "trn1": Kind("neuron", 16, "128", "512Gi", "eks", _neuron("trn1.32xlarge", "trainium"),
                 {"family": "neuron", "product": "trainium", "count": 16}, 24.0, "large",
                 {"aws.amazon.com/neuroncore": "32"}),
    "trn2": Kind("neuron", 16, "192", "2048Gi", "eks", _neuron("trn2.48xlarge", "trainium2"),
                 {"family": "neuron", "product": "trainium2", "count": 16}, 45.0, "large",
                 {"aws.amazon.com/neuroncore": "128"}),
    "inf2": Kind("neuron", 12, "192", "768Gi", "eks", _neuron("inf2.48xlarge", "inferentia2"),
                 {"family": "neuron", "product": "inferentia2", "count": 2}, 6.0, "small",
                 {"aws.amazon.com/neuroncore": "24"}),
}
# Node pools are handed out in this order (32 pools: 16 nvidia, 8 tpu, 8 neuron).
CYCLE = ("h100", "l4", "v6e", "trn2", "a100", "inf2", "v5e", "h100",
         "l4", "v6e", "trn1", "v5e-2x2", "a100", "inf2", "h100", "l4")


@dataclass(frozen=True)
class NodePool:
    name: str
    kind: str
    nodes: int
    spot: bool

    @property
    def slots(self) -> int:
        k = KINDS[self.kind]
        return self.nodes * (k.accelerators // k.per_replica)


def node_pools(nodes: int, count: int) -> list[NodePool]:
    """`count` pools named `<kind>-a`, `<kind>-b`, ...; every third pool of a kind is spot."""
    seen: Counter[str] = Counter()
    out = []
    for i in range(count):
        kind = CYCLE[i % len(CYCLE)]
        n = seen[kind]
        seen[kind] += 1
        suffix = string.ascii_lowercase[n % 26] * (1 + n // 26)
        out.append(NodePool(f"{kind}-{suffix}", kind, nodes // count + (i < nodes % count),
                            spot=n % 3 == 2))
    return out


def pools_description(pools: Sequence[NodePool]) -> dict[str, Any]:
    out = []
    for p in pools:
        k = KINDS[p.kind]
        labels = dict(k.labels)
        if k.cloud == "gke":
            labels["cloud.google.com/gke-nodepool"] = p.name
            if p.spot:
                labels["cloud.google.com/gke-spot"] = "true"
        else:
            labels["eks.amazonaws.com/nodegroup"] = p.name
            labels["eks.amazonaws.com/capacityType"] = "SPOT" if p.spot else "ON_DEMAND"
            labels["karpenter.sh/capacity-type"] = "spot" if p.spot else "on-demand"
        desc: dict[str, Any] = {"name": p.name, "family": k.family, "nodes": p.nodes,
                                "accelerators": k.accelerators, "cpu": k.cpu,
                                "memory": k.memory, "labels": labels}
        if k.extra:
            desc["extraResources"] = dict(k.extra)
        out.append(desc)
    return {"pools": out}


# --- the InferencePools ------------------------------------------------------------------------


def _variant(kind: str, cost_factor: float) -> dict[str, Any]:
    k = KINDS[kind]
    return {"name": kind, "accelerator": dict(k.accelerator), "capacity": k.capacity,
            "costPerHour": round(k.capacity * cost_factor, 2),
            "template": {"spec": {"containers": [
                {"name": "server", "image": f"registry.local/serve-{kind}:1"}]}}}


def inference_pools(pools: Sequence[NodePool], count: int) -> list[dict[str, Any]]:
    """Even pools serve a 70B-class model, odd ones an 8B-class one. The first variant is the
    cheapest per req/s and its replicas are sized so that, over all pools, each kind of node is
    ~USE_SHARE used; 0-2 alternates (other families first) take spill-over and, for a quarter of
    the pools, a resilience share."""
    present = {p.kind for p in pools}
    classes = {size: [k for k in KINDS if KINDS[k].size == size and k in present]
               for size in ("large", "small")}
    slots: Counter[str] = Counter()
    for p in pools:
        slots[p.kind] += p.slots
    picks: list[tuple[str, list[str]]] = []  # (namespace/name, variant kinds)
    for i in range(count):
        size = "large" if (i % 2 == 0 and classes["large"]) or not classes["small"] else "small"
        order = classes[size]
        j = (i // 2) % len(order)
        primary = order[j]
        rest = order[j + 1:] + order[:j]
        rest.sort(key=lambda k: KINDS[k].family == KINDS[primary].family)  # stable
        picks.append((f"scale-{i % NAMESPACES:02d}/model-{i:03d}",
                      [primary, *rest[:i % 3]]))
    weights = [1 + (i % 4) / 3 for i in range(count)]  # 1 .. 2: pools of uneven size
    weight_of: dict[str, float] = defaultdict(float)
    for (_, kinds), w in zip(picks, weights, strict=True):
        weight_of[kinds[0]] += w
    out = []
    for i, ((key, kinds), w) in enumerate(zip(picks, weights, strict=True)):
        namespace, name = key.split("/")
        first = KINDS[kinds[0]]
        replicas = max(1, round(USE_SHARE * slots[kinds[0]] * w / weight_of[kinds[0]]))
        families = {KINDS[k].family for k in kinds}
        spec: dict[str, Any] = {
            "model": f"bench/{first.size}-{i}",
            "replicas": {"min": 1, "max": max(4, 3 * replicas)},
            # just under `replicas` replicas' worth, so rounding never asks for one more
            "demand": {"fixed": round(replicas * first.capacity * TARGET_UTILIZATION * 0.97, 2),
                       "targetUtilization": TARGET_UTILIZATION},
            "variants": [_variant(k, 1.0 if n == 0 else ALTERNATE_PRICE)
                         for n, k in enumerate(kinds)],
        }
        if i % 4 == 0 and len(families) > 1 and replicas >= 3:
            spec["resilience"] = {"maxFamilyShare": 0.7}
        out.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferencePool",
                    "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    return out


# --- observing ---------------------------------------------------------------------------------


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


def _parse_time(value: str) -> float:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _timestamp(line: dict[str, Any]) -> float:
    return _parse_time(str(line.get("timestamp", "")))


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


@dataclass
class Bench:
    cluster: Cluster
    api: client.ApiClient
    summary: dict[str, Any]
    node_pools: Sequence[NodePool]
    custom: client.CustomObjectsApi = field(init=False)
    core: client.CoreV1Api = field(init=False)
    apps: client.AppsV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def pools(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = raw(self.custom.list_cluster_custom_object, GROUP, VERSION,
                                          PLURAL)["items"]
        return items

    def wait_placed(self, expected: int, timeout: float, what: str) -> float | None:
        """Seconds until all `expected` InferencePools are placed, else None."""
        started = last_say = time.time()
        while time.time() - started < timeout:
            items = self.pools()
            done = sum(placed(p) for p in items)
            if len(items) == expected and done == expected:
                return time.time() - started
            if time.time() - last_say > 15:
                last_say = time.time()
                say(f"  {what}: {done}/{expected} InferencePools placed "
                    f"({time.time() - started:.0f} s)")
            time.sleep(1.0)
        return None

    def last_ready(self, since: float) -> float | None:
        """Seconds from `since` to the latest Ready transition of our pods (1 s resolution)."""
        times = [_parse_time(c["lastTransitionTime"]) for p in self.our_pods()
                 for c in (p.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready" and c.get("status") == "True"]
        return round(max(times) - since, 1) if times else None

    def our_pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = raw(self.core.list_pod_for_all_namespaces,
                                          label_selector=POOL_LABEL)["items"]
        return items

    def placement_figures(self) -> dict[str, Any]:
        deployments = raw(self.apps.list_deployment_for_all_namespaces,
                          label_selector="app.kubernetes.io/managed-by=inferpool")["items"]
        used: Counter[str] = Counter()
        replicas = 0
        for d in deployments:
            n = d["spec"].get("replicas") or 0
            replicas += n
            limits = d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            for resource, amount in limits.items():
                if "/" in resource:
                    used[resource] += n * int(amount)
        nodes = raw(self.core.list_node)["items"]
        total: Counter[str] = Counter()
        for node in nodes:
            for resource in ("nvidia.com/gpu", "google.com/tpu", "aws.amazon.com/neuron"):
                total[resource] += int((node["status"].get("allocatable") or {}).get(resource,
                                                                                    0))
        pods = self.our_pods()
        pools = self.pools()
        short = sum(any(c["type"] == "CapacityShortfall" and c["status"] == "True"
                        for c in (p.get("status") or {}).get("conditions") or [])
                    for p in pools)
        return {
            "deployments": len(deployments), "replicas": replicas,
            "pods_ready": sum(is_ready(p) for p in pods),
            "accelerators_total": sum(total.values()),
            "accelerators_requested": sum(used.values()),
            "utilization": round(sum(used.values()) / max(1, sum(total.values())), 3),
            "utilization_by_resource": {r: round(used[r] / total[r], 3) for r in sorted(total)
                                        if total[r]},
            "pools_with_capacity_shortfall": short,
        }

    # -- failover -------------------------------------------------------------------------

    def failover(self, count: int, spacing: float, grace: float, timeout: float
                 ) -> dict[str, Any]:
        """Fail `count` nodes hosting replicas, `spacing` seconds apart, round robin over the
        node pools; each failure's InferencePools are not touched by another one in flight.
        Per failure: from the node's NotReady (seen on a watch) to as many Ready replicas of
        each of its InferencePools on other nodes as before the failure."""
        failed: list[str] = []
        busy: set[tuple[str, str]] = set()
        results: list[dict[str, Any]] = []
        lock = threading.Lock()
        threads = []

        def one(victim: str, before: dict[tuple[str, str], int], t_fail: float) -> None:
            t_down = self._watch_not_ready(victim, t_fail + grace + 120)
            t_back, missing = (self._wait_back(before, victim, t_down + timeout)
                               if t_down is not None else (None, {}))
            with lock:
                busy.difference_update(before)
                results.append({"node": victim, "pools": len(before), "fail": t_fail,
                                "not_ready": t_down, "back": t_back, "missing": missing})
            say(f"  {victim} ({len(before)} InferencePool(s)): " + (
                f"back {t_back - t_down:.2f} s after NotReady" if t_down and t_back else
                "not back in time" if t_down else "never went NotReady"))

        for n in range(count):
            slot = time.time() + spacing
            with lock:
                victim, before = self._pick_victim(failed, busy)
                if victim is not None:
                    busy.update(before)
            if victim is None:
                say("  no node left that hosts Ready replicas of InferencePools at rest")
                break
            failed.append(victim)
            t_fail = time.time()
            self.cluster.sandbox("fail", victim)
            thread = threading.Thread(target=one, args=(victim, before, t_fail), daemon=True)
            thread.start()
            threads.append(thread)
            if n + 1 < count:
                time.sleep(max(0.0, slot - time.time()))
        for thread in threads:
            thread.join()
        ok = [r for r in results if r["not_ready"] and r["back"]]
        return {"nodes_failed": failed, "spacing_seconds": spacing,
                "node_monitor_grace_seconds": grace,
                "not_back_in_time": len(results) - len(ok),
                "not_back_detail": {r["node"]: r["missing"] or "never NotReady"
                                    for r in results if r not in ok},
                "not_ready_to_replacement_ready_seconds": percentiles(
                    r["back"] - r["not_ready"] for r in ok),
                "fail_to_not_ready_seconds": percentiles(r["not_ready"] - r["fail"] for r in ok),
                "fail_to_replacement_ready_seconds": percentiles(
                    r["back"] - r["fail"] for r in ok)}

    def _pick_victim(self, failed: Sequence[str], busy: set[tuple[str, str]]
                     ) -> tuple[str | None, dict[tuple[str, str], int]]:
        by_node: dict[str, set[tuple[str, str]]] = defaultdict(set)
        ready_of: Counter[tuple[str, str]] = Counter()
        for pod in self.our_pods():
            meta = pod["metadata"]
            key = (meta["namespace"], meta["labels"][POOL_LABEL])
            if meta.get("deletionTimestamp") or not is_ready(pod):
                continue
            ready_of[key] += 1
            by_node[pod["spec"]["nodeName"]].add(key)
        # node names are <node pool>-<index>: take the node pools in turn, in the order they
        # were made (which interleaves the kinds of accelerator)
        used = Counter(name.rsplit("-", 1)[0] for name in failed)
        rank = {pool.name: i for i, pool in enumerate(self.node_pools)}
        candidates = sorted(
            (used[pool], rank.get(pool, len(rank)), int(index), node)
            for node, keys in by_node.items() if node not in failed and not keys & busy
            for pool, index in [node.rsplit("-", 1)])
        if not candidates:
            return None, {}
        victim = candidates[0][3]
        return victim, {key: ready_of[key] for key in by_node[victim]}

    def _watch_not_ready(self, node: str, deadline: float) -> float | None:
        """When the node stops being Ready, seen on a watch (a poll per victim would load the
        API server for the whole grace period)."""
        while (left := deadline - time.time()) > 0:
            stream = watch.Watch().stream(self.core.list_node,
                                          field_selector=f"metadata.name={node}",
                                          timeout_seconds=max(1, int(left)))
            try:
                for event in stream:
                    conditions = event["object"].status.conditions or []
                    if event["type"] != "DELETED" and not any(
                            c.type == "Ready" and c.status == "True" for c in conditions):
                        return time.time()
            except ApiException as exc:
                if exc.status != 410:  # an expired watch is simply started again
                    raise
        return None

    def _wait_back(self, before: dict[tuple[str, str], int], victim: str,
                   deadline: float) -> tuple[float | None, dict[str, Any]]:
        """When every InferencePool has as many Ready replicas off the victim as before the
        failure, or as its plan now asks for (the plan may change meanwhile); else None and,
        per pool left, what was missing."""
        todo = dict(before)
        missing: dict[str, Any] = {}
        while time.time() < deadline:
            for (namespace, name), want in list(todo.items()):
                pods = raw(self.core.list_namespaced_pod, namespace,
                           label_selector=f"{POOL_LABEL}={name}")["items"]
                live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
                have = sum(1 for p in live
                           if p["spec"].get("nodeName") not in (None, victim) and is_ready(p))
                if have >= want:
                    del todo[(namespace, name)]
                    continue
                pool = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                PLURAL, name)
                st = pool.get("status") or {}
                if placed(pool) and have >= st["desiredReplicas"]:
                    del todo[(namespace, name)]
                    continue
                missing[f"{namespace}/{name}"] = {
                    "want": want, "ready_elsewhere": have,
                    "status": {k: st.get(k) for k in ("desiredReplicas", "readyReplicas")},
                    "not_ready": sorted(f"{p['spec'].get('nodeName')}:"
                                        f"{p['status'].get('phase')}" for p in live
                                        if not is_ready(p))[:5]}
            if not todo:
                return time.time(), {}
            time.sleep(0.05)
        return None, {k: v for k, v in missing.items() if tuple(k.split("/")) in todo}

    # -- soak -----------------------------------------------------------------------------

    def soak(self, minutes: float, interval: float, stall: float,
             pools: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One demand bump every `interval` seconds, each on another pool: +20 % or one more
        replica of the first variant, whichever is more (the scaler ignores changes within its
        10 % tolerance band by design). Seen: the status shows the new generation and
        requirement; served: Ready capacity covers it. A bump not seen within `stall` seconds
        means a stalled watch."""
        seen, ready_after = [], []
        stalled, not_served = [], []
        started = time.time()
        n = 0
        while time.time() - started + interval <= minutes * 60 + 1e-6:
            time.sleep(max(0.0, started + n * interval - time.time()))
            meta = pools[(n * 37) % len(pools)]["metadata"]  # spread over namespaces/kinds
            namespace, name = meta["namespace"], meta["name"]
            body = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                            name)
            old = body["spec"]["demand"]["fixed"]
            bump = max(0.2 * old, body["spec"]["variants"][0]["capacity"] * TARGET_UTILIZATION)
            fixed = round(old + bump, 2)
            required = fixed / TARGET_UTILIZATION - 0.1  # the status rounds to 0.1 req/s
            t0 = time.time()
            patched = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"spec": {"demand": {"fixed": fixed}}},
                _content_type="application/merge-patch+json")
            generation = patched["metadata"]["generation"]
            t_seen = t_ready = None
            while time.time() - t0 < max(stall, 120):
                obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                               PLURAL, name)
                st = obj.get("status") or {}
                if t_seen is None and st.get("observedGeneration") == generation and \
                        (st.get("requiredCapacity") or 0) >= required:
                    t_seen = time.time()
                if t_seen is not None and placed(obj) and (st.get("capacity") or 0) >= required:
                    t_ready = time.time()
                    break
                time.sleep(0.1)
            if t_seen is None or t_seen - t0 > stall:
                stalled.append(f"{namespace}/{name}")
            if t_seen is not None:
                seen.append(t_seen - t0)
            if t_ready is None:
                not_served.append(f"{namespace}/{name}")
            else:
                ready_after.append(t_ready - t0)
            n += 1
            if n % 10 == 0:
                say(f"  soak: {n} changes, {(time.time() - started) / 60:.1f} min")
        time.sleep(max(0.0, started + minutes * 60 - time.time()))
        return {"changes": n, "interval_seconds": interval,
                "change_to_status_seconds": percentiles(seen),
                "change_to_served_seconds": percentiles(ready_after),
                "stall_bound_seconds": stall, "stalled": stalled, "not_served": not_served}


# --- the run -----------------------------------------------------------------------------------


def create_all(custom: client.CustomObjectsApi, core: client.CoreV1Api,
               bodies: Sequence[dict[str, Any]]) -> None:
    for ns in sorted({b["metadata"]["namespace"] for b in bodies}):
        core.create_namespace({"metadata": {"name": ns}})

    def create(body: dict[str, Any]) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, body["metadata"]["namespace"],
                                               PLURAL, body, _preload_content=False)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, bodies))


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    plans = node_pools(args.nodes, args.node_pools)
    bodies = inference_pools(plans, args.pools)
    families = Counter(KINDS[p.kind].family for p in plans)
    summary: dict[str, Any] = {"sizes": {
        "nodes": sum(p.nodes for p in plans), "node_pools": len(plans),
        "node_pools_by_family": dict(sorted(families.items())),
        "inference_pools": len(bodies), "namespaces": min(NAMESPACES, len(bodies)),
        "variants": sum(len(b["spec"]["variants"]) for b in bodies),
        "demand_sized_for_utilization": USE_SHARE}}
    pools_file = tmp / "pools.yaml"
    pools_file.write_text(yaml.safe_dump(pools_description(plans), sort_keys=False))
    say(f"{summary['sizes']['nodes']} nodes in {len(plans)} node pools, "
        f"{len(bodies)} InferencePools")

    t_up = time.time()
    with sandbox(args.name, pools_file, keep=args.keep) as cluster:
        summary["sandbox_up_seconds"] = round(time.time() - t_up, 1)
        bench = Bench(cluster, api_client(cluster.kubeconfig), summary, plans)
        t0 = time.time()
        create_all(bench.custom, bench.core, bodies)
        summary["create_inference_pools_seconds"] = round(time.time() - t0, 1)
        say(f"sandbox up in {summary['sandbox_up_seconds']} s; InferencePools created")

        started = time.time()
        with operator(cluster, tmp, f"--tick-seconds={args.tick_seconds}") as op:
            assert op.proc is not None
            pid = op.proc.pid
            rss = RssSampler(pid)
            rss.start()
            try:
                measure(args, bench, op, rss, started, bodies)
            finally:
                rss.stop()
            summary["operator_log_lines"] = len(op.log_lines())
    return summary


def measure(args: argparse.Namespace, bench: Bench, op: OperatorProcess, rss: RssSampler,
            started: float, bodies: Sequence[dict[str, Any]]) -> None:
    summary = bench.summary
    assert op.proc is not None
    pid = op.proc.pid
    say(f"operator leader after {time.time() - started:.1f} s; waiting for full placement")
    budget = 600 + args.pools + args.nodes / 5
    took = bench.wait_placed(len(bodies), budget, "start")
    t_placed = time.time()
    lines = reconciles(op, started, t_placed)
    first = lines[0] if lines else None
    summary["start"] = {
        "start_to_all_placed_seconds": round(t_placed - started, 1) if took is not None
        else None,
        # kopf lists every watched resource before the planner may plan
        "first_plan_started_seconds": round(
            first["t"] - sum(first["phases_ms"].values()) / 1000 - started, 1) if first
        else None,
        "first_reconcile_done_seconds": round(first["t"] - started, 1) if first else None,
        "first_reconcile_writes": first.get("writes") if first else None,
        "last_deployment_applied_seconds": _last(op, "applied deployment", started, t_placed),
        "last_replica_ready_seconds": bench.last_ready(started),
        "operator_cpu_seconds": cpu_seconds(pid),
        **bench.placement_figures(),
        "reconcile_phases_ms": phase_summary(lines),
        "api": api_rates(lines, t_placed - started, operator_events(bench.core)),
    }
    summary["operator_rss_mb"] = {"at_all_placed": _round(proc_status(pid, "VmRSS"), 1)}
    say(f"all placed after {summary['start']['start_to_all_placed_seconds']} s: "
        f"{summary['start']['replicas']} replicas, "
        f"utilization {summary['start']['utilization']}")
    if took is None:
        say("not everything was placed in time; measuring the rest anyway")

    # failover
    if args.failures > 0:
        say(f"failing {args.failures} nodes one at a time")
        t_f, cpu_f, events_f = time.time(), cpu_seconds(pid), operator_events(bench.core)
        grace = control.node_timing(summary["sizes"]["nodes"])[1]
        result = bench.failover(args.failures, args.failure_spacing, grace, timeout=120)
        t_f_end = time.time()
        lines = reconciles(op, t_f, t_f_end)
        result["reconcile_phases_ms"] = phase_summary(lines)
        result["api"] = api_rates(lines, t_f_end - t_f, operator_events(bench.core) - events_f)
        result["operator_cpu_seconds"] = round((cpu_seconds(pid) or 0) - (cpu_f or 0), 1)
        summary["failover"] = result
        say("recovering the failed nodes")
        t_r = time.time()
        bench.cluster.sandbox("recover", *result["nodes_failed"])
        again = bench.wait_placed(len(bodies), budget, "recovery")
        summary["failover"]["recover_to_all_placed_seconds"] = (
            round(time.time() - t_r, 1) if again is not None else None)

    # soak
    t_s, cpu_s, events_s = time.time(), cpu_seconds(pid), operator_events(bench.core)
    metrics_before = scrape(op.metrics_port)
    if args.soak_minutes > 0:
        say(f"soak: {args.soak_minutes} min, a demand change every {args.soak_interval:.0f} s")
        soak = bench.soak(args.soak_minutes, args.soak_interval, args.stall_seconds, bodies)
    else:
        soak = {"skipped": True}
    t_s_end = time.time()
    lines = reconciles(op, t_s, t_s_end)
    samples = rss.between(t_s, t_s_end)
    half = rss.between((t_s + t_s_end) / 2, t_s_end)
    metrics_after = scrape(op.metrics_port)
    if args.soak_minutes > 0:
        cpu = (cpu_seconds(pid) or 0) - (cpu_s or 0)
        soak.update({
            "minutes": round((t_s_end - t_s) / 60, 1),
            "rss_mb_start": round(samples[0][1], 1) if samples else None,
            "rss_mb_end": round(samples[-1][1], 1) if samples else None,
            "rss_slope_mb_per_minute": _round(slope_per_minute(samples), 3),
            "rss_slope_mb_per_minute_second_half": _round(slope_per_minute(half), 3),
            "operator_cpu_percent": round(100 * cpu / max(1.0, t_s_end - t_s), 1),
            "reconcile_phases_ms": phase_summary(lines),
            "api": {**api_rates(lines, t_s_end - t_s, operator_events(bench.core) - events_s),
                    "metrics_api_writes": _delta(metrics_before, metrics_after,
                                                 "inferpool_api_writes_total")},
        })
    summary["soak"] = soak

    values = [v for _, v in rss.samples]
    summary["operator_rss_mb"].update({
        "first_sample": round(values[0], 1) if values else None,
        "max_sampled": round(max(values), 1) if values else None,
        "peak_vmhwm": _round(proc_status(pid, "VmHWM"), 1),
        "end": _round(proc_status(pid, "VmRSS"), 1),
        "samples": len(values)})
    summary["operator_metrics"] = metrics_after
    summary["client_limits_for_comparison"] = CLIENT_LIMITS
    summary["sandbox_kwok_stage_errors"] = kwok_stage_errors(bench.cluster.name)


def _last(op: OperatorProcess, event: str, start: float, end: float) -> float | None:
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


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _delta(before: dict[str, float], after: dict[str, float], key: str) -> float | None:
    return after[key] - before.get(key, 0.0) if key in after else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--node-pools", type=int, default=32)
    parser.add_argument("--pools", type=int, default=500, help="InferencePools")
    parser.add_argument("--failures", type=int, default=20, help="single-node failures")
    parser.add_argument("--failure-spacing", type=float, default=15.0,
                        help="seconds between two node failures")
    parser.add_argument("--soak-minutes", type=float, default=30.0, help="0 skips the soak")
    parser.add_argument("--soak-interval", type=float, default=30.0)
    parser.add_argument("--stall-seconds", type=float, default=10.0,
                        help="a soak change not in the status within this long is a stall")
    parser.add_argument("--tick-seconds", type=float, default=15.0)
    parser.add_argument("--name", default="scale", help="sandbox name")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    parser.add_argument("--out", type=Path, help="keep the operator log and pools file here")
    args = parser.parse_args()
    # stop cleanly (operator stopped, sandbox down) on SIGTERM, and on SIGINT even when started
    # in the background by a shell that ignores it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        summary = run(args, out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
