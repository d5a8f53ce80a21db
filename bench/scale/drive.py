"""What `make bench-scale` does to the cluster: creates the InferencePools, starts the operator,
waits for full placement, fails nodes one after another, bumps demand through a soak, and
gathers the figures into one summary."""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from bench.common import Cluster, operator, sandbox, say
from bench.scale.generate import (
    GROUP,
    KINDS,
    NAMESPACES,
    PLURAL,
    TARGET_UTILIZATION,
    USE_SHARE,
    VERSION,
    NodePool,
    inference_pools,
    node_pools,
    pools_description,
)
from bench.scale.probes import (
    CLIENT_LIMITS,
    RssSampler,
    api_client,
    api_rates,
    cpu_seconds,
    is_ready,
    kwok_stage_errors,
    last_event,
    operator_events,
    parse_time,
    percentiles,
    phase_summary,
    placed,
    proc_status,
    raw,
    reconciles,
    scrape,
    slope_per_minute,
)
from inferpool.sandbox import control
from inferpool.sandbox.operator_process import OperatorProcess

POOL_LABEL = "inferpool.dev/pool"


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
        times = [parse_time(c["lastTransitionTime"]) for p in self.our_pods()
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
        "last_deployment_applied_seconds": last_event(op, "applied deployment", started,
                                                      t_placed),
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


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _delta(before: dict[str, float], after: dict[str, float], key: str) -> float | None:
    return after[key] - before.get(key, 0.0) if key in after else None

