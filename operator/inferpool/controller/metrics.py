"""Prometheus metrics of the operator, and the HTTP endpoint that serves them (plus /readyz).

Everything is registered on the `OperatorMetrics` instance's own `CollectorRegistry` (not the
process-global one), so tests get fresh metrics per instance and nothing a library registers
globally leaks into the scrape. The planner calls `observe_reconcile()` once per successful
reconcile and `reconcile_failed()` when one raises; the lease loop calls `set_leader()`.

Naming follows Prometheus conventions (`inferpool_` prefix, base units in the name, `_total` for
counters) and controller-runtime's shape (`..._reconcile_total{result}`, duration histograms).
Label values are bounded: namespace, InferencePool, variant, family and node pool names (what the
cluster's own objects define), phase and solver names, kinds and HTTP codes (fixed sets). No pod
or node names. The standard `process_*` and `python_info` collectors describe the process, and
`inferpool_build_info` the versions; no `_created` series are exported.

Gauges describing the latest plan are *synchronised*: a series whose InferencePool, variant or
node pool disappeared is removed on the next reconcile, and all of them are removed when this
instance stops being the leader, so a standby never exports a stale copy of the leader's plan.
"""

from __future__ import annotations

import platform
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)

import inferpool
from inferpool.controller.translate import by_pool
from inferpool.k8s import labels as lbl

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from inferpool.cluster import ClusterSnapshot
    from inferpool.controller.report import Report
    from inferpool.controller.translate import LiveDeployment, ParsedPool
    from inferpool.placement import PlacementKey
    from inferpool.scaling.recommender import DemandStatus

log = structlog.get_logger("inferpool.metrics")

# The `_created` series prometheus-client adds to every counter and histogram double their
# series for a timestamp no dashboard or alert reads. The switch is process-wide; the operator's
# process exports only this registry.
disable_created_metrics()  # type: ignore[no-untyped-call]

PHASES = ("snapshot", "demand", "engine", "apply", "status")
# Planner and solver durations run from about a millisecond (steady state, small cluster) to
# the solver's time budget and beyond (API calls of a large apply).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)

POOL_LABELS = ("namespace", "inferencepool")
PLACEMENT_LABELS = ("namespace", "inferencepool", "variant", "family", "node_pool")
NODE_POOL_LABELS = ("node_pool", "family")

LabelValues = tuple[str, ...]


class OperatorMetrics:
    """The operator's metrics on a dedicated registry; thread-safe (the HTTP server reads from
    its own threads while the planner writes)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        # the standard process_* (CPU, memory, file descriptors, start time) and python_info
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("inferpool_build", "Versions of the operator, its Python and its solver (always 1).",
             registry=r).info({"version": inferpool.__version__,
                               "python_version": platform.python_version(),
                               "highspy_version": _version("highspy")})
        self._lock = threading.Lock()
        # gauge -> the label sets it exported last time (to remove the ones that disappear)
        self._exported: dict[Gauge, set[LabelValues]] = {}
        self._last_planned: dict[str, dict[PlacementKey, int]] = {}
        self._active_failures: set[tuple[str, str, str]] = set()
        self._pool_counter_keys: set[LabelValues] = set()
        self._failover_keys: set[LabelValues] = set()
        self._leader = False

        # -- the reconcile loop (controller-runtime style) ---------------------------------
        self.reconcile_total = Counter(
            "inferpool_reconcile_total", "Planner reconciles, by result (success or error).",
            ["result"], registry=r)
        for result in ("success", "error"):
            self.reconcile_total.labels(result)  # export zeros from the start
        self.reconcile_duration = Histogram(
            "inferpool_reconcile_duration_seconds",
            "Wall time of one successful planner reconcile (all phases).",
            buckets=DURATION_BUCKETS, registry=r)
        self.phase_duration = Histogram(
            "inferpool_planner_phase_duration_seconds",
            "Wall time of each planner phase: snapshot, demand, engine, apply, status.",
            ["phase"], buckets=DURATION_BUCKETS, registry=r)
        self.solver_duration = Histogram(
            "inferpool_solver_duration_seconds",
            "Time the placement engine spent solving, by the solver that produced the plan.",
            ["solver"], buckets=DURATION_BUCKETS, registry=r)
        self.plan_optimal = Gauge(
            "inferpool_plan_optimal",
            "1 when the latest plan was proven optimal by the exact solver, else 0.", registry=r)
        self.api_writes = Counter(
            "inferpool_api_writes_total",
            "Successful API writes by the planner: Deployments applied or deleted, pods "
            "replaced, statuses patched.", registry=r)
        self.api_write_errors = Counter(
            "inferpool_api_write_errors_total",
            "API writes by the planner that failed, by the kind of object written and the HTTP "
            "status code (none: no answer).", ["kind", "code"], registry=r)
        self.last_success = Gauge(
            "inferpool_last_reconcile_success_timestamp_seconds",
            "Unix time of the latest successful reconcile.", registry=r)
        self.leader = Gauge(
            "inferpool_leader", "1 while this operator instance holds the leader Lease.",
            registry=r)
        self.cache_objects = Gauge(
            "inferpool_cache_objects",
            "Objects the operator's caches know of, by resource, as of the last resync.",
            ["resource"], registry=r)
        self.cache_corrections = Counter(
            "inferpool_cache_corrections_total",
            "Cache entries a resync corrected against a fresh listing (the watch missed "
            "them), by resource and kind (ghost, missed, stale).", ["resource", "kind"],
            registry=r)
        self.inference_pools = Gauge(
            "inferpool_inferencepools", "InferencePools seen by the planner, by validity.",
            ["state"], registry=r)

        # -- placement per InferencePool / variant / node pool -----------------------------
        self.replicas = Gauge(
            "inferpool_replicas",
            "Replicas the operator set on its Deployment (after make-before-break).",
            PLACEMENT_LABELS, registry=r)
        self.ready_replicas = Gauge(
            "inferpool_ready_replicas", "Ready replicas of the Deployment.", PLACEMENT_LABELS,
            registry=r)
        self.planned_replicas = Gauge(
            "inferpool_planned_replicas",
            "Replicas the placement engine chose in the latest plan.", PLACEMENT_LABELS,
            registry=r)

        # -- per InferencePool ---------------------------------------------------------------
        self.demand = Gauge(
            "inferpool_demand_requests_per_second",
            "Observed demand (absent while the load source has never answered).", POOL_LABELS,
            registry=r)
        self.required = Gauge(
            "inferpool_required_capacity_requests_per_second",
            "Capacity the planner provisions for (demand / targetUtilization, stabilised).",
            POOL_LABELS, registry=r)
        self.ready_capacity = Gauge(
            "inferpool_ready_capacity_requests_per_second",
            "Capacity of the Ready replicas.", POOL_LABELS, registry=r)
        self.planned_capacity = Gauge(
            "inferpool_planned_capacity_requests_per_second",
            "Capacity of the latest plan.", POOL_LABELS, registry=r)
        self.shortfall = Gauge(
            "inferpool_shortfall_requests_per_second",
            "Required capacity the latest plan cannot provide.", POOL_LABELS, registry=r)
        self.cost = Gauge(
            "inferpool_cost_dollars_per_hour",
            "Cost of the latest plan in USD per hour (list or AcceleratorPool prices).",
            POOL_LABELS, registry=r)
        self.demand_unknown = Gauge(
            "inferpool_demand_unknown",
            "1 while the load source fails (demand held or frozen), else 0.", POOL_LABELS,
            registry=r)
        self.plan_moves = Gauge(
            "inferpool_plan_moves",
            "Replicas the latest plan adds or removes relative to what runs now.", POOL_LABELS,
            registry=r)
        self.placement_changes = Counter(
            "inferpool_placement_changes_total",
            "Replicas added or removed by new placement decisions (sum of |change| per "
            "variant and node pool each time the plan changes).", POOL_LABELS, registry=r)
        self.degraded = Gauge(
            "inferpool_degraded",
            "Failures currently affecting the InferencePool, by reason (NodePoolLost, "
            "Stockout, VariantDegraded, or a refusal: PodSecurityRejected, QuotaExceeded, "
            "LimitRangeRejected, AdmissionDenied, PodCreateFailed, ProgressDeadlineExceeded, "
            "WriteRejected, NameConflict).", [*POOL_LABELS, "reason"], registry=r)
        self.failovers = Counter(
            "inferpool_failovers_total",
            "Failures that newly affected the InferencePool (capacity moved elsewhere), "
            "by reason.", [*POOL_LABELS, "reason"], registry=r)
        self.pods_replaced_total = Counter(
            "inferpool_pods_replaced_total",
            "Pods deleted off failed nodes so their ReplicaSets replace them at once.",
            registry=r)

        # -- node pools ----------------------------------------------------------------------
        self.node_pool_info = Gauge(
            "inferpool_node_pool_info",
            "Always 1; the node pool's product, capacity type and source as labels.",
            [*NODE_POOL_LABELS, "product", "capacity_type", "source"], registry=r)
        self.node_pool_nodes = Gauge(
            "inferpool_node_pool_nodes", "Nodes in the node pool.", NODE_POOL_LABELS,
            registry=r)
        self.node_pool_nodes_ready = Gauge(
            "inferpool_node_pool_nodes_ready", "Nodes that are Ready and schedulable.",
            NODE_POOL_LABELS, registry=r)
        self.node_pool_accelerators = Gauge(
            "inferpool_node_pool_accelerators", "Allocatable accelerators on all nodes.",
            NODE_POOL_LABELS, registry=r)
        self.node_pool_accelerators_ready = Gauge(
            "inferpool_node_pool_accelerators_ready",
            "Allocatable accelerators on Ready, schedulable nodes.", NODE_POOL_LABELS,
            registry=r)
        self.node_pool_accelerators_available = Gauge(
            "inferpool_node_pool_accelerators_available",
            "Accelerators inferpool may use: on Ready, schedulable nodes, not held by other "
            "workloads.", NODE_POOL_LABELS, registry=r)
        self.node_pool_accelerators_desired = Gauge(
            "inferpool_node_pool_accelerators_desired",
            "Accelerators requested by inferpool's desired replicas.", NODE_POOL_LABELS,
            registry=r)
        self.node_pool_accelerators_in_use = Gauge(
            "inferpool_node_pool_accelerators_in_use",
            "Accelerators requested by running pods (inferpool's and others') in an "
            "AcceleratorPool, as in its status.", NODE_POOL_LABELS, registry=r)
        self.node_pool_price = Gauge(
            "inferpool_node_pool_price_dollars_per_accelerator_hour",
            "Price of one accelerator-hour in the node pool, USD.", NODE_POOL_LABELS,
            registry=r)

    # -- called by the planner and the lease loop -------------------------------------------

    def reconcile_failed(self) -> None:
        self.reconcile_total.labels("error").inc()

    def write_failed(self, kind: str, code: int | None) -> None:
        """A write (apply, delete, status patch) the API server refused or never answered."""
        self.api_write_errors.labels(kind, str(code) if code else "none").inc()

    def pods_replaced(self, count: int = 1) -> None:
        if count > 0:
            self.pods_replaced_total.inc(count)

    def observe_resync(self, sizes: Mapping[str, int], corrected: Mapping[str, int]) -> None:
        for resource, size in sizes.items():
            self.cache_objects.labels(resource).set(size)
        for what, count in corrected.items():
            resource, kind = what.split(" ", 1)
            self.cache_corrections.labels(resource, kind).inc(count)

    def set_leader(self, leader: bool) -> None:
        """Losing the Lease removes every series that describes the plan: only the leader's
        view is current, and two instances exporting it would double every sum()."""
        with self._lock:
            self.leader.set(1 if leader else 0)
            if self._leader and not leader:
                self._forget_plan()
            self._leader = leader

    def observe_reconcile(
        self,
        report: Report,
        *,
        pools: Sequence[ParsedPool],
        snapshot: ClusterSnapshot,
        demands: Mapping[str, DemandStatus],
        targets: Mapping[PlacementKey, int],
        live: Mapping[PlacementKey, LiveDeployment],
        degraded: Mapping[str, Sequence[tuple[str, str]]],
        in_use: Mapping[str, int] | None = None,
        accelerator_pools: Iterable[str] = (),
    ) -> None:
        """Record one successful reconcile. Never raises: metrics must not stop the planner."""
        try:
            with self._lock:
                self._observe(report, pools, snapshot, demands, targets, live, degraded,
                              in_use or {}, frozenset(accelerator_pools))
        except Exception:
            log.exception("recording metrics failed")

    # -- internals --------------------------------------------------------------------------

    def _observe(self, report: Report, pools: Sequence[ParsedPool], snapshot: ClusterSnapshot,
                 demands: Mapping[str, DemandStatus], targets: Mapping[PlacementKey, int],
                 live: Mapping[PlacementKey, LiveDeployment],
                 degraded: Mapping[str, Sequence[tuple[str, str]]], in_use: Mapping[str, int],
                 accelerator_pools: frozenset[str]) -> None:
        self.reconcile_total.labels("success").inc()
        self.reconcile_duration.observe(sum(report.phases.values()))
        for phase, seconds in report.phases.items():
            self.phase_duration.labels(phase).observe(seconds)
        self.api_writes.inc(report.writes)
        self.last_success.set(time.time())
        self.inference_pools.labels("valid").set(len(pools))
        self.inference_pools.labels("invalid").set(report.invalid)
        plan = report.plan
        if plan is not None:
            self.solver_duration.labels(plan.solver).observe(plan.solve_seconds)
            self.plan_optimal.set(1 if plan.optimal else 0)

        by_key = {p.key: p for p in pools}
        family_of = {(p.key, v.name): v.accelerator.family.value
                     for p in pools for v in p.model.spec.variants}
        accelerators_of = {(p.key, v.name): v.accelerator.count
                           for p in pools for v in p.model.spec.variants}
        capacity_of = {(p.key, v.name): v.capacity for p in pools for v in p.model.spec.variants}

        def placement_labels(key: PlacementKey) -> LabelValues:
            namespace, name = key[0].split("/", 1)
            family = family_of.get(key[:2])
            if family is None and key in live:  # a removed variant whose replicas are held
                labels = (live[key].body.get("metadata") or {}).get("labels") or {}
                family = labels.get(lbl.ACCELERATOR)
            return (namespace, name, key[1], family or "unknown", key[2])

        # placement
        desired: dict[LabelValues, float] = {}
        ready: dict[LabelValues, float] = {}
        for key in set(targets) | set(live):
            if key[0] not in by_key:
                continue
            want = targets.get(key, 0)
            have = live[key].ready if key in live else 0
            if want == 0 and have == 0:
                continue
            labels = placement_labels(key)
            desired[labels] = want
            ready[labels] = have
        planned = {placement_labels(k): n for k, n in (plan.replicas if plan else {}).items()
                   if k[0] in by_key}
        self._sync(self.replicas, desired)
        self._sync(self.ready_replicas, ready)
        self._sync(self.planned_replicas, planned)

        # per InferencePool
        pool_labels = {key: tuple(key.split("/", 1)) for key in by_key}
        outcomes = plan.outcomes if plan else {}
        self._sync(self.demand, {
            pool_labels[k]: d.demand_rps for k, d in demands.items()
            if k in by_key and d.demand_rps is not None})
        self._sync(self.required, {pool_labels[k]: d.required_rps for k, d in demands.items()
                                   if k in by_key})
        self._sync(self.demand_unknown, {pool_labels[k]: float(d.demand_unknown)
                                         for k, d in demands.items() if k in by_key})
        ready_capacity: dict[LabelValues, float] = dict.fromkeys(pool_labels.values(), 0.0)
        for key, d in live.items():
            if key[0] in by_key:
                ready_capacity[pool_labels[key[0]]] += d.ready * capacity_of.get(key[:2], 0.0)
        self._sync(self.ready_capacity, ready_capacity)
        self._sync(self.planned_capacity, {pool_labels[k]: o.capacity_rps
                                           for k, o in outcomes.items() if k in by_key})
        self._sync(self.shortfall, {pool_labels[k]: o.shortfall_rps
                                    for k, o in outcomes.items() if k in by_key})
        self._sync(self.cost, {pool_labels[k]: o.cost_per_hour
                               for k, o in outcomes.items() if k in by_key})
        moves: dict[LabelValues, float] = dict.fromkeys(pool_labels.values(), 0.0)
        for move in plan.moves if plan else ():
            if move.key[0] in by_key:
                moves[pool_labels[move.key[0]]] += abs(move.after - move.before)
        self._sync(self.plan_moves, moves)
        if plan is not None:
            self._count_decisions(plan.replicas, live, by_key, pool_labels)
        self._count_failures(degraded, pool_labels)

        # node pools
        self._observe_node_pools(snapshot, targets, accelerators_of, in_use, accelerator_pools)

    def _count_decisions(self, planned: Mapping[PlacementKey, int],
                         live: Mapping[PlacementKey, LiveDeployment],
                         by_key: Mapping[str, ParsedPool],
                         pool_labels: Mapping[str, LabelValues]) -> None:
        """Count replicas that a *new* decision adds or removes: a plan repeated on every tick
        while a move is in progress is counted once. The first plan after a start compares
        against what runs."""
        now: dict[str, dict[PlacementKey, int]] = {k: {} for k in by_key}
        for key, n in planned.items():
            if key[0] in now:
                now[key[0]][key] = n
        running = by_pool({key: d.replicas for key, d in live.items()})
        for pool_key, placement in now.items():
            before = self._last_planned.get(pool_key)
            if before is None:
                before = running.get(pool_key, {})
            changed = sum(abs(placement.get(k, 0) - before.get(k, 0))
                          for k in set(placement) | set(before))
            labels = pool_labels[pool_key]
            self.placement_changes.labels(*labels).inc(changed)
            self._pool_counter_keys.add(labels)
        self._last_planned = now
        for labels in list(self._pool_counter_keys):
            if labels not in pool_labels.values():
                self.placement_changes.remove(*labels)
                self._pool_counter_keys.discard(labels)

    def _count_failures(self, degraded: Mapping[str, Sequence[tuple[str, str]]],
                        pool_labels: Mapping[str, LabelValues]) -> None:
        active = {(pool_key, reason, message) for pool_key, problems in degraded.items()
                  if pool_key in pool_labels for reason, message in problems}
        for pool_key, reason, _message in sorted(active - self._active_failures):
            labels = (*pool_labels[pool_key], reason)
            self.failovers.labels(*labels).inc()
            self._failover_keys.add(labels)
        self._active_failures = active
        counts: dict[LabelValues, float] = {}
        for pool_key, reason, _message in active:
            labels = (*pool_labels[pool_key], reason)
            counts[labels] = counts.get(labels, 0) + 1
        self._sync(self.degraded, counts)
        for labels in list(self._failover_keys):
            if labels[:2] not in pool_labels.values():
                self.failovers.remove(*labels)
                self._failover_keys.discard(labels)

    def _observe_node_pools(self, snapshot: ClusterSnapshot, targets: Mapping[PlacementKey, int],
                            accelerators_of: Mapping[tuple[str, str], int],
                            in_use: Mapping[str, int], accelerator_pools: frozenset[str]
                            ) -> None:
        info: dict[LabelValues, float] = {}
        values: dict[Gauge, dict[LabelValues, float]] = {
            g: {} for g in (self.node_pool_nodes, self.node_pool_nodes_ready,
                            self.node_pool_accelerators, self.node_pool_accelerators_ready,
                            self.node_pool_accelerators_available,
                            self.node_pool_accelerators_desired,
                            self.node_pool_accelerators_in_use, self.node_pool_price)}
        desired: dict[str, int] = {}
        for key, n in targets.items():
            desired[key[2]] = desired.get(key[2], 0) + n * accelerators_of.get(key[:2], 0)
        for pool in snapshot.pools:
            labels = (pool.name, pool.family)
            nodes = snapshot.nodes_of(pool.name)
            healthy = [n for n in nodes if n.ready and n.schedulable]
            declared = pool.accelerator_pool
            source = "acceleratorpool" if declared in accelerator_pools else "discovered"
            info[(*labels, pool.product or "", pool.capacity_type, source)] = 1
            values[self.node_pool_nodes][labels] = len(nodes)
            values[self.node_pool_nodes_ready][labels] = len(healthy)
            values[self.node_pool_accelerators][labels] = sum(n.allocatable for n in nodes)
            values[self.node_pool_accelerators_ready][labels] = sum(
                n.allocatable for n in healthy)
            values[self.node_pool_accelerators_available][labels] = snapshot.free_accelerators(
                pool.name)
            values[self.node_pool_accelerators_desired][labels] = desired.get(pool.name, 0)
            if declared is not None and declared in in_use:  # counted per AcceleratorPool
                values[self.node_pool_accelerators_in_use][labels] = in_use[declared]
            values[self.node_pool_price][labels] = pool.price_per_accelerator_hour
        self._sync(self.node_pool_info, info)
        for gauge, series in values.items():
            self._sync(gauge, series)

    def _sync(self, gauge: Gauge, values: Mapping[LabelValues, float]) -> None:
        """Set every series in `values` and remove the ones exported before but not now.
        (Set first, remove after: a scrape in between never sees a series missing.)"""
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        for labels in self._exported.get(gauge, set()) - set(values):
            gauge.remove(*labels)
        self._exported[gauge] = set(values)

    def _forget_plan(self) -> None:
        for gauge in list(self._exported):
            self._sync(gauge, {})
        for labels in self._pool_counter_keys:
            self.placement_changes.remove(*labels)
        for labels in self._failover_keys:
            self.failovers.remove(*labels)
        self._pool_counter_keys.clear()
        self._failover_keys.clear()
        self._last_planned.clear()
        self._active_failures.clear()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


# -- HTTP: /metrics, /readyz, /healthz -------------------------------------------------------


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a failed TLS handshake or a dropped scrape: nothing the operator can act on


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per scrape or probe would drown the operator's own logs


Readiness = Callable[[], tuple[bool, str]]


# A bearer token -> (HTTP status, reason): 200 lets the scrape through (k8s/metrics_auth.py).
Authorize = Callable[[str], Any]


class MetricsServer:
    """`/metrics` (Prometheus text or OpenMetrics, as the scraper asks), `/readyz` (200 when
    `ready()` says so, else 503, with the reason as the body) and `/healthz` (200 while the
    process serves), in a background thread.

    With `authorize`, /metrics needs a bearer token it allows (401 without a valid one, 403
    without the right); the probes stay open, as the kubelet sends no token. With `tls`, the
    server speaks HTTPS only (the handshake runs in the request's thread, not the accepting
    one, so a client that stalls it holds up no one else)."""

    def __init__(self, registry: CollectorRegistry, ready: Readiness, port: int,
                 host: str = "0.0.0.0", *, authorize: Authorize | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        metrics_app = make_wsgi_app(registry)

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO") or "/"
            if path == "/readyz":
                ok, why = ready()
                return _text(start_response, "200 OK" if ok else "503 Service Unavailable",
                             why)
            if path == "/healthz":
                return _text(start_response, "200 OK", "ok")
            if path in ("/", "/metrics"):
                if authorize is not None:
                    refused = _refusal(environ, authorize)
                    if refused is not None:
                        return _text(start_response, *refused)
                body: Iterable[bytes] = metrics_app(environ, start_response)
                return body
            return _text(start_response, "404 Not Found", "not found: try /metrics or /readyz")

        self._server = make_server(host, port, app, server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_STATUS = {401: "401 Unauthorized", 403: "403 Forbidden", 503: "503 Service Unavailable"}


def _refusal(environ: WSGIEnvironment, authorize: Authorize) -> tuple[str, str] | None:
    """(status line, body) when the request may not read /metrics; None when it may."""
    scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "401 Unauthorized", "a bearer token is needed"
    decision = authorize(token.strip())
    if decision.status == 200:
        return None
    return _STATUS.get(decision.status, "403 Forbidden"), str(decision.reason)


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context from PEM files (TLS 1.2 or newer)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _text(start_response: StartResponse, status: str, body: str) -> Iterator[bytes]:
    data = (body + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])
    yield data
