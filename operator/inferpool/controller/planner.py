"""The one global planner loop: snapshot → demand → engine → apply → status.

All InferencePools compete for the same accelerators, so one loop plans them all at once. It is
woken (debounced) by relevant changes and by a periodic tick, runs only while this instance holds
the leader Lease, and never lets one bad object or one failed write stop it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from inferpool.cluster import ClusterSnapshot
from inferpool.controller import autoscaler, naming, planning
from inferpool.controller import demand as dm
from inferpool.controller import failures as fl
from inferpool.controller import status as st
from inferpool.controller.autoscaler import Signal
from inferpool.controller.health import (
    Backoff,
    HealthTracker,
    dead_node_pools,
    disrupted_zones,
    frozen_node_pools,
    pod_accelerators,
    pods_on_failed_nodes,
    serving_node_pools,
    starting_nodes,
    unknown_nodes,
    waits_for_node,
)
from inferpool.controller.karpenter_limits import NodePoolLimits
from inferpool.controller.metrics import OperatorMetrics
from inferpool.controller.report import Report
from inferpool.controller.settings import Settings
from inferpool.controller.translate import (
    LiveDeployment,
    MoveClock,
    ParseCache,
    ParsedPool,
    by_pool,
    make_before_break,
    node_selector,
    time_moves,
    workload,
    write_needed,
)
from inferpool.k8s import deployments as dep
from inferpool.k8s import disruption, events, secrets
from inferpool.k8s import labels as lbl
from inferpool.k8s import services as svc
from inferpool.k8s.owned import OwnedKey, list_owned
from inferpool.k8s.pod_events import list_pod_events
from inferpool.placement import PlacementKey, Plan
from inferpool.scaling.clock import SystemClock
from inferpool.scaling.sources import Reading

log = structlog.get_logger("inferpool.planner")


INDEX_NAMES = ("nodes", "pods", "accelerator_pools", "inference_pools", "deployments")
WRITE_CONCURRENCY = 8  # API writes in flight at once (the client's connection pool holds 32)
# A plan that deletes or scales down acts only on caches checked against a listing this recently.
SYNC_MAX_AGE_SECONDS = 10.0
EVENT_READ_TIMEOUT_SECONDS = 10.0  # all lists of autoscaler Events of one reconcile
# A cache maps "namespace/name" to the slim view of that object (handlers.Caches).
Index = Mapping[str, dict[str, Any]]


def _values(index: Index) -> list[dict[str, Any]]:
    return list(index.values())


def _owned_key(body: Mapping[str, Any]) -> OwnedKey:
    meta = body["metadata"]
    return (str(body["kind"]), str(meta["namespace"]), str(meta["name"]))


class Planner:
    def __init__(self, settings: Settings, api: client.ApiClient,
                 is_leader: Callable[[], bool] = lambda: True) -> None:
        self.settings = settings
        self.indexes: dict[str, Index] = {name: {} for name in INDEX_NAMES}
        self.is_leader = is_leader
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.policy = client.PolicyV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.ready = asyncio.Event()  # set once the caches hold every object
        self._wake = asyncio.Event()
        self._wake_reasons: set[str] = set()
        self.clock = SystemClock()
        # A read still running after two ticks is reported (its pool plans on held demand).
        self.demand = dm.DemandBook(self.clock, settings.prometheus_url, self._read_secret,
                                    settings.prometheus_allowed_urls,
                                    wait_seconds=settings.demand_wait_seconds,
                                    overdue_seconds=2 * settings.tick_seconds,
                                    on_late_first_reading=lambda key: self.wake("demand read"),
                                    tenancy_label=settings.prometheus_tenancy_label
                                    if settings.prometheus_tenancy else None)
        self._leading = False  # as of the last wake-up: a change to True resets the demand book
        self.moves: MoveClock = {}  # make-before-break timers (translate.time_moves)
        self.disrupted: frozenset[str] = frozenset()  # zones last seen in a zone-scale failure
        # (namespace, name) -> (metadata.generation right after our own write, digest of what
        # we wrote): a spec still at it is ours as written (translate.write_needed).
        self.written: dict[tuple[str, str], tuple[int, str]] = {}
        # Services and PodDisruptionBudgets applied: (kind, namespace, name) -> digest; applied
        # again when the body changes, or when the listing made every resync period no longer
        # has them (nothing watches them: this heals a deletion)
        self.owned_written: dict[OwnedKey, str] = {}
        self._owned_listed_at: float | None = None
        self.deduper = events.EventDeduper()
        self.health = HealthTracker(
            stockout_seconds=settings.stockout_seconds, broken_seconds=settings.broken_seconds,
            stockouts=Backoff(initial=settings.retry_backoff_seconds),
            broken=Backoff(initial=settings.retry_backoff_seconds))
        # variants whose pods admission refuses or whose Deployment the API refuses
        self.refusals = fl.RefusalTracker(Backoff(initial=settings.retry_backoff_seconds))
        # pool key -> what this reconcile's apply found, for the status: refused Deployment
        # writes retried on the next one (a 5xx, a timeout), names a foreign Deployment holds
        self.apply_problems: dict[str, list[tuple[str, str]]] = {}
        # pool key -> the generation whose Deployments were last dry-run, and the admission
        # warnings of those dry runs (posted as Events with the statuses)
        self.dry_run: dict[str, int] = {}
        self.dry_run_warnings: dict[str, list[str]] = {}
        # "namespace/name" of Deployments that are not ours (handlers.Caches)
        self.foreign_deployments: Collection[str] = frozenset()
        self.replaced: dict[tuple[str, str], float] = {}  # pods deleted off failed nodes
        # placements whose new pods of the last plan all bind in the scheduler's view: a pod
        # of one unschedulable is a wrong model, re-planned at once (health.py)
        self.expected_to_bind: frozenset[PlacementKey] = frozenset()
        # pool key -> (reason, node pool) -> variant: failures that moved its replicas
        self.affected: dict[str, dict[tuple[str, str], str]] = {}
        self.last_report: Report | None = None
        self.reconciles = 0
        self.metrics = OperatorMetrics()
        # Blocking API calls run on pools of their own: hundreds of best-effort Events (one per
        # InferencePool on the first plan) must not queue in front of Deployment and status
        # writes, nor in front of the engine and the Lease renewal on asyncio's default pool.
        self._writer = ThreadPoolExecutor(WRITE_CONCURRENCY, thread_name_prefix="api-write")
        self._poster = ThreadPoolExecutor(2, thread_name_prefix="api-event")
        # Secret reads before queries: a slow API server ties up these threads, nothing else
        self._secret_reader = ThreadPoolExecutor(4, thread_name_prefix="secret-read")
        self._parsed: ParseCache = {}  # InferencePools validated at their current version
        self.skipped_writes = 0  # writes not made because leadership ran out meanwhile
        # Karpenter's Cluster.Synced(): are the caches true to a recent listing? (resync.py)
        self.synced: Callable[[float], Awaitable[bool]] | None = None
        self._problems: frozenset[str] = frozenset()  # bad quantities already logged
        self._events_unreadable = False  # the last read of autoscaler Events failed
        self.node_pool_limits = NodePoolLimits(self.custom, time.monotonic)

    # -- the loop ------------------------------------------------------------------------------

    def attach(self, indexes: Mapping[str, Index]) -> None:
        """Start planning from the live caches (called once they hold every object)."""
        self.indexes = dict(indexes)
        self.ready.set()

    def wake(self, reason: str) -> None:
        self._wake_reasons.add(reason)
        self._wake.set()

    async def run(self) -> None:
        # Never plan from half-listed caches: an empty view looks like "no nodes" and would
        # scale everything down. handlers.fill attaches the caches once they are complete.
        while not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), timeout=30)
            except TimeoutError:
                log.warning("waiting for the first complete listing of the cluster "
                            "(is the API reachable and are the CRDs installed?)")
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.tick_seconds)
            except TimeoutError:
                self._wake_reasons.add("tick")
            await asyncio.sleep(self.settings.debounce_seconds)  # gather a burst of changes
            self._wake.clear()
            reasons, self._wake_reasons = sorted(self._wake_reasons), set()
            if not await self.follow_leadership():
                continue
            try:
                report = await self.reconcile()
            except Exception:
                self.metrics.reconcile_failed()
                log.exception("reconcile failed; retrying on the next tick")
                continue
            log.info("reconciled", woken_by=reasons, writes=report.writes,
                     phases_ms={k: round(v * 1000, 1) for k, v in report.phases.items()},
                     cost_per_hour=round(report.plan.cost_per_hour, 2) if report.plan else None,
                     invalid=report.invalid)

    async def follow_leadership(self) -> bool:
        """Whether this instance leads now. On taking the lead the demand trackers are dropped,
        so the next plan seeds them from what runs, and the seed keeps every replica for one
        scale-down window, whatever history this instance had from an earlier term."""
        leading = self.is_leader()
        if leading and not self._leading:
            await self.demand.forget()
        self._leading = leading
        return leading

    # -- one reconcile ------------------------------------------------------------------------

    async def reconcile(self) -> Report:
        report = Report()
        now_wall = dt.datetime.now(dt.UTC).replace(microsecond=0)

        # 1. snapshot
        t0 = time.perf_counter()
        views = {n: _values(self.indexes[n]) for n in INDEX_NAMES}
        limits = (await self.node_pool_limits.read(views["accelerator_pools"])
                  if self.settings.read_karpenter_limits else {})
        cluster = planning.read_cluster(views, self.settings.allow_privileged_namespaces,
                                        self._parsed, limits)
        nodes, pods, accelerator_pools = cluster.nodes, cluster.pods, cluster.accelerator_pools
        pools, invalid, snapshot, live = (cluster.pools, cluster.invalid, cluster.snapshot,
                                          cluster.live)
        report.invalid = len(invalid)
        self._report_problems(cluster.problems)
        report.phases["snapshot"] = time.perf_counter() - t0

        # 2. demand
        t0 = time.perf_counter()
        by_key = {p.key: p for p in pools}
        live_of = by_pool(live)
        running = {p.key: dm.running(p, live_of.get(p.key, {})) for p in pools}
        demands = await self.demand.observe_all({k: p.model for k, p in by_key.items()},
                                                running)
        report.phases["demand"] = time.perf_counter() - t0

        # 3. engine
        t0 = time.perf_counter()
        now = time.monotonic()
        elastic = {p.name: p.elastic.provisioning_timeout_s for p in snapshot.pools
                   if p.elastic is not None}
        self.health.observe(pods, {p.key: float(p.model.spec.rollout.ready_timeout_seconds)
                                   for p in pools}, now, now_wall, nodes,
                            self.expected_to_bind, elastic,
                            await self._autoscaler_signals(pods, elastic))
        stocked_out = self.health.stocked_out(now)
        broken = self.health.broken_variants(now)
        self.refusals.observe(((k, d.body) for k, d in live.items() if k[0] in by_key), now)
        refused = self.refusals.refused(now)
        call = planning.engine_call(cluster, {k: d.required_rps for k, d in demands.items()},
                                    self.settings, stocked_out, broken | refused)
        plan, binding = await asyncio.to_thread(planning.bindable_plan, cluster, call,
                                                self.settings)
        self.expected_to_bind = binding.fitting
        report.plan = plan
        report.phases["engine"] = time.perf_counter() - t0

        # 4. apply
        t0 = time.perf_counter()
        # A zone-scale failure: nodes of unknown health; nothing of ours on them is deleted.
        unknown = unknown_nodes(nodes, self.settings.unhealthy_zone_threshold)
        self._warn_disruption(nodes, unknown)
        frozen = frozen_node_pools(snapshot, pods, unknown)
        dead = dead_node_pools(snapshot, {k[2] for k in live}, serving_node_pools(pods, nodes),
                               starting_nodes(snapshot, nodes, now_wall)) - frozen
        # Replicas that serve nothing never hold old ones back (make-before-break).
        no_hold = dead | frozenset(stocked_out)
        started = time_moves(self.moves, plan.replicas, live, now)
        gate = make_before_break(plan.replicas, live, by_key, started, now, no_hold, broken,
                                 frozen, refused)
        destructive = _destructive(gate.targets, live, pods, nodes,
                                   self.settings.replace_pods_on_failed_nodes)
        if destructive and self.synced is not None and not await self.synced(
                SYNC_MAX_AGE_SECONDS):  # planned from a wrong view
            log.warning("caches were out of date: re-planning before deleting anything")
            self.wake("caches resynced")
            report.phases["apply"] = time.perf_counter() - t0
            return report
        report.writes += await self._apply(gate.targets, live, by_key, snapshot, now)
        report.writes += await self._replace_pods_on_failed_nodes(pods, nodes, now)
        report.phases["apply"] = time.perf_counter() - t0
        if not self.is_leader():  # statuses would describe a plan the next leader may redo
            log.warning("not leading any more: reconcile stopped before the status phase")
            return report

        # 5. status and events
        t0 = time.perf_counter()
        in_use = _in_use_by_pool(pods, nodes, accelerator_pools)
        degraded = self._degradations(pools, live, dead, stocked_out, broken, now)
        report.writes += await self._write_statuses(pools, invalid, plan, demands, gate.targets,
                                                    gate.holding, live, snapshot, degraded,
                                                    now_wall, accelerator_pools, in_use)
        report.phases["status"] = time.perf_counter() - t0
        self.metrics.observe_reconcile(
            report, pools=pools, snapshot=snapshot, demands=demands, targets=gate.targets,
            live=live, degraded=degraded, in_use=in_use,
            accelerator_pools=[ap["metadata"]["name"] for ap in accelerator_pools])
        self.last_report = report
        self.reconciles += 1
        return report

    async def _autoscaler_signals(self, pods: Iterable[Mapping[str, Any]],
                                  elastic: Mapping[str, float]) -> dict[str, Signal]:
        """What autoscalers said about our pods that wait for a node in an elastic pool, read
        only while there are some (controller/autoscaler.py). A failed read is logged and
        planned without: the provisioning timeout still ends the wait."""
        if not (elastic and self.settings.read_autoscaler_events and any(
                waits_for_node(p, elastic) for p in pods)):
            return {}
        try:
            listed = await asyncio.wait_for(asyncio.to_thread(
                list_pod_events, self.core, autoscaler.REASONS, self.settings.namespaces),
                timeout=EVENT_READ_TIMEOUT_SECONDS)
        except Exception as exc:  # ApiException, timeouts, connection errors
            if not self._events_unreadable:  # once per failure, not every tick
                log.warning("could not read the autoscaler's Events on pods waiting for "
                            "nodes; their node pools count as stocked out only after the "
                            "provisioning timeout", error=f"{type(exc).__name__}: "
                            f"{getattr(exc, 'status', None) or exc}")
            self._events_unreadable = True
            return {}
        self._events_unreadable = False
        return autoscaler.signals(listed)

    def _report_problems(self, problems: Iterable[str]) -> None:
        """Log each bad resource value once while it lasts (it is counted as nothing)."""
        now = frozenset(problems)
        for problem in sorted(now - self._problems):
            log.warning("bad resource quantity", problem=problem)
        self._problems = now

    # -- apply --------------------------------------------------------------------------------

    async def _apply(self, targets: Mapping[PlacementKey, int],
                     live: Mapping[PlacementKey, LiveDeployment],
                     pools: Mapping[str, ParsedPool], snapshot: ClusterSnapshot,
                     now: float) -> int:
        jobs: list[Callable[[], bool]] = []
        self.apply_problems = {}
        names = naming.resolve([k for k, n in targets.items() if n > 0],
                               {k: d.name for k, d in live.items()}, self.foreign_deployments)
        for key, taken in names.avoided.items():
            self.apply_problems.setdefault(key[0], []).append((fl.NAME_CONFLICT, (
                f"Deployment {taken} is not this InferencePool's: left alone; variant {key[1]}"
                f" in node pool {key[2]} runs as {names.names[key]}")))
        for key, replicas in sorted(targets.items()):
            pool = pools[key[0]]
            existing = live.get(key)
            if replicas == 0:
                if existing is not None:
                    jobs.append(partial(self._delete, existing))
                continue
            variants = {v.name: v for v in pool.model.spec.variants}
            if key[2] not in {p.name for p in snapshot.pools} or key[1] not in variants:
                # A vanished node pool or a removed variant: its old replicas are only being
                # held (make-before-break) until the new ones are Ready; nothing to rebuild.
                continue
            variant = variants[key[1]]
            # a new spec: each Deployment it changes is dry-run first, and a refusal reported
            # before anything is applied
            dry = self.dry_run.get(pool.key) != pool.generation
            selector = node_selector(variant, snapshot.pool(key[2]))
            body = dep.build(workload(pool, variant), key[2], selector, replicas,
                             self.settings.toleration_seconds, names.names[key])
            if existing is None:
                jobs.append(partial(self._write_deployment, body, None, key, now, dry))
                continue
            action = write_needed(body, existing, self.written.get(
                (existing.namespace, existing.name)))
            if action is not None:
                jobs.append(partial(self._write_deployment, body,
                                    existing.body if action == "replace" else None, key, now,
                                    dry))
        self.dry_run = {k: p.generation for k, p in pools.items()}
        await self._forget_deleted_owned(now)
        jobs += self._owned_object_jobs(pools.values())
        return await self._write(jobs, "apply")

    async def _forget_deleted_owned(self, now: float) -> None:
        """Once per resync period: what of ours was deleted is applied again."""
        listed_at = self._owned_listed_at
        if listed_at is not None and now - listed_at < self.settings.resync_seconds:
            return
        self._owned_listed_at = now
        try:
            existing = await asyncio.wait_for(asyncio.to_thread(
                list_owned, self.core, self.policy, self.settings.namespaces), timeout=30)
        except Exception as exc:  # ApiException, timeouts: checked again next period
            log.warning("could not list our Services and PodDisruptionBudgets",
                        error=f"{type(exc).__name__}: {getattr(exc, 'status', None) or exc}")
            return
        for key in [k for k in self.owned_written if k not in existing]:
            del self.owned_written[key]

    def _owned_object_jobs(self, pools: Iterable[ParsedPool]) -> list[Callable[[], bool]]:
        """Each InferencePool's Service and PodDisruptionBudget, applied when they change (or
        went missing: `_forget_deleted_owned`)."""
        jobs: list[Callable[[], bool]] = []
        for pool in sorted(pools, key=lambda p: p.key):
            spec = pool.model.spec
            bodies = (svc.build(pool.name, pool.namespace, pool.uid,
                                spec.service.model_dump(by_alias=True),
                                spec.variants[0].template.to_dict()),
                      disruption.build(pool.name, pool.namespace, pool.uid,
                                       spec.disruption_budget.model_dump(by_alias=True)))
            for body in bodies:
                if body is None:
                    continue
                digest = dep.digest(body)
                if self.owned_written.get(_owned_key(body)) != digest:
                    jobs.append(partial(self._write_owned, pool.key, body, digest))
        return jobs

    def _write_owned(self, pool_key: str, body: dict[str, Any], digest: str) -> bool:
        """Server-side apply without force: an object of that name that another manager made
        answers 409 and is left alone, named in a NameConflict condition."""
        meta, kind = body["metadata"], body["kind"]
        name = f"{meta['namespace']}/{meta['name']}"
        apply = (self.core.patch_namespaced_service if kind == "Service"
                 else self.policy.patch_namespaced_pod_disruption_budget)
        try:
            apply(meta["name"], meta["namespace"], body, field_manager=lbl.FIELD_MANAGER,
                  _content_type="application/apply-patch+yaml", _preload_content=False)
        except ApiException as exc:
            error = fl.write_error(exc.status, exc.reason, exc.body)
            log.warning("apply failed", kind=kind, object=name, status=exc.status,
                        reason=error.reason, message=error.message)
            self.metrics.write_failed(kind, exc.status)
            self.owned_written.pop(_owned_key(body), None)
            self.apply_problems.setdefault(pool_key, []).append(
                (fl.NAME_CONFLICT, f"{kind} {meta['name']} is not this InferencePool's: left "
                 f"alone; the model has no {kind} of its own") if exc.status == 409 else
                (fl.write_refusal(name, error).reason, f"{kind} {meta['name']}: "
                 f"{error.message}; retried on the next plan"))
            return False
        self.owned_written[_owned_key(body)] = digest
        return True

    def _write_deployment(self, body: dict[str, Any], replacing: Mapping[str, Any] | None,
                          key: PlacementKey | None = None, now: float = 0.0,
                          dry_run: bool = False) -> bool:
        """Server-side apply `body`; or, with `replacing` (the live object), replace it whole so
        that fields another manager added go too. A refusal is reported with the API's words;
        one the same body would get again (400, 403, 422) holds the variant back (`key`).
        With `dry_run`, a server-side dry run goes first: the real write only if it passes."""
        meta = body["metadata"]
        if dry_run and not self._dry_run(body, replacing, key, now):
            return False
        try:
            # plain JSON: only the generation is read, and building the client's model
            # objects for every applied Deployment costs more CPU than the request itself
            if replacing is None:
                result = self.apps.patch_namespaced_deployment(
                    meta["name"], meta["namespace"], body, field_manager=lbl.FIELD_MANAGER,
                    force=True, _content_type="application/apply-patch+yaml",
                    _preload_content=False)
            else:
                result = self.apps.replace_namespaced_deployment(
                    meta["name"], meta["namespace"], dep.replacement(body, replacing),
                    field_manager=lbl.FIELD_MANAGER, _preload_content=False)
            written = json.loads(result.data)
        except ApiException as exc:
            error = fl.write_error(exc.status, exc.reason, exc.body)
            name = f"{meta['namespace']}/{meta['name']}"
            log.warning("apply failed" if replacing is None else "replace failed",
                        deployment=name, status=exc.status, reason=error.reason,
                        message=error.message, fields=list(error.fields))
            self.metrics.write_failed("Deployment", exc.status)
            if key is not None:
                refusal = fl.write_refusal(name, error)
                if error.permanent:
                    self.refusals.refuse(key[:2], refusal, now)
                else:
                    self.apply_problems.setdefault(key[0], []).append(
                        (refusal.reason, refusal.message + "; retried on the next plan"))
            return False
        self.written[(meta["namespace"], meta["name"])] = (
            int(written["metadata"].get("generation") or 0), dep.digest(body))
        if replacing is None:
            log.info("applied deployment", deployment=f"{meta['namespace']}/{meta['name']}",
                     replicas=body["spec"]["replicas"])
        else:
            log.warning("replaced deployment: fields set by hand put back",
                        deployment=f"{meta['namespace']}/{meta['name']}",
                        fields=list(replacing.get("foreignFields") or ())[:10])
        return True

    def _dry_run(self, body: dict[str, Any], replacing: Mapping[str, Any] | None,
                 key: PlacementKey | None, now: float) -> bool:
        """Whether the API server (validation, webhooks, Pod Security's warnings) would take
        this write; its admission warnings are kept for an Event."""
        meta = body["metadata"]
        name = f"{meta['namespace']}/{meta['name']}"
        try:
            if replacing is None:
                result = self.apps.patch_namespaced_deployment(
                    meta["name"], meta["namespace"], body, field_manager=lbl.FIELD_MANAGER,
                    force=True, dry_run="All", _content_type="application/apply-patch+yaml",
                    _preload_content=False)
            else:
                result = self.apps.replace_namespaced_deployment(
                    meta["name"], meta["namespace"], dep.replacement(body, replacing),
                    field_manager=lbl.FIELD_MANAGER, dry_run="All", _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:  # a replace of a Deployment deleted meanwhile: apply it
                return True
            error = fl.write_error(exc.status, exc.reason, exc.body)
            log.warning("dry run refused", deployment=name, status=exc.status,
                        reason=error.reason, message=error.message, fields=list(error.fields))
            self.metrics.write_failed("Deployment", exc.status)
            if key is not None:
                refusal = fl.write_refusal(name, error, dry_run=True)
                if error.permanent:
                    self.refusals.refuse(key[:2], refusal, now)
                else:
                    self.apply_problems.setdefault(key[0], []).append(
                        (refusal.reason, refusal.message + "; retried on the next plan"))
            return False
        texts = fl.warnings(getattr(result, "headers", {}).get("Warning"))
        if texts:
            log.warning("dry run warned", deployment=name, warnings=texts)
            if key is not None:
                self.dry_run_warnings.setdefault(key[0], []).extend(
                    f"a dry run of Deployment {name} warned: {text}" for text in texts)
        return True

    def _delete(self, d: LiveDeployment) -> bool:
        try:
            self.apps.delete_namespaced_deployment(d.name, d.namespace,
                                                   propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                log.warning("delete failed", deployment=f"{d.namespace}/{d.name}",
                            status=exc.status)
                self.metrics.write_failed("Deployment", exc.status)
            return False
        self.written.pop((d.namespace, d.name), None)
        return True

    async def _replace_pods_on_failed_nodes(self, pods: list[dict[str, Any]],
                                            nodes: Mapping[str, dict[str, Any]],
                                            now: float) -> int:
        """Delete our pods on failed nodes so their ReplicaSets replace them at once (a
        terminating pod no longer counts), instead of after the eviction timeout."""
        if not self.settings.replace_pods_on_failed_nodes:
            return 0
        self.replaced = {k: t for k, t in self.replaced.items() if now - t < 60}
        todo = [k for k in pods_on_failed_nodes(pods, nodes,
                                                self.settings.unhealthy_zone_threshold)
                if k not in self.replaced]
        for key in todo:
            self.replaced[key] = now
        return await self._write([partial(self._delete_pod, ns, name) for ns, name in todo],
                                 "pod replacement")

    def _warn_disruption(self, nodes: Mapping[str, dict[str, Any]],
                         unknown: frozenset[str]) -> None:
        zones = disrupted_zones(nodes, self.settings.unhealthy_zone_threshold) if unknown \
            else frozenset()
        if zones != self.disrupted:
            if zones:
                log.warning("zone-scale failure: our pods on its unhealthy nodes are neither "
                            "replaced nor scaled down until they recover",
                            zones=sorted(zones), unhealthy_nodes=len(unknown),
                            nodes=len(nodes))
            else:
                log.info("zone-scale failure over", zones=sorted(self.disrupted))
            self.disrupted = zones

    def _delete_pod(self, namespace: str, name: str) -> bool:
        try:
            self.core.delete_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("pod delete failed", pod=f"{namespace}/{name}", status=exc.status)
                self.metrics.write_failed("Pod", exc.status)
            return False
        log.info("replacing pod on a failed node", pod=f"{namespace}/{name}")
        self.metrics.pods_replaced()
        return True

    def _degradations(self, pools: list[ParsedPool], live: Mapping[PlacementKey, LiveDeployment],
                      dead: frozenset[str], stocked_out: list[str],
                      broken: frozenset[tuple[str, str]], now: float
                      ) -> dict[str, list[tuple[str, str]]]:
        """Per pool key: (reason, message) of every failure that currently affects it.

        A lost or stocked-out node pool is remembered per InferencePool until the node pool
        recovers, not only while replicas are still there to move."""
        out: dict[str, list[tuple[str, str]]] = {p.key: [] for p in pools}
        for (pool_key, variant, node_pool), d in sorted(live.items()):
            if pool_key not in out or d.replicas == 0:
                continue
            if node_pool in dead:
                self.affected.setdefault(pool_key, {})[("NodePoolLost", node_pool)] = variant
            if node_pool in stocked_out:
                self.affected.setdefault(pool_key, {})[("Stockout", node_pool)] = variant
        for pool_key, entries in list(self.affected.items()):
            for (reason, node_pool), variant in sorted(entries.items()):
                still = node_pool in dead if reason == "NodePoolLost" else (
                    node_pool in stocked_out)
                if not still or pool_key not in out:
                    del entries[(reason, node_pool)]
                elif reason == "NodePoolLost":
                    out[pool_key].append((reason, f"node pool {node_pool} has no healthy node: "
                                          f"replicas of {variant} moved elsewhere"))
                else:
                    out[pool_key].append((reason, f"node pool {node_pool} is stocked out ("
                                          f"{self.health.stockout_why.get(node_pool, '')}); "
                                          "spilling elsewhere, retrying it later"))
            if not entries:
                del self.affected[pool_key]
        for pool_key, variant in sorted(broken):
            if pool_key in out:
                out[pool_key].append(("VariantDegraded", f"variant {variant} is failing ("
                                      f"{self.health.broken_why.get((pool_key, variant), '')});"
                                      " capacity moved to other variants, retrying it later"))
        for (pool_key, variant) in sorted(self.refusals.refused(now)):
            refusal = self.refusals.why.get((pool_key, variant))
            if pool_key in out and refusal is not None:
                out[pool_key].append((refusal.reason, f"variant {variant}: {refusal.message}; "
                                      "its capacity is planned on other variants, retrying "
                                      "it later"))
        for pool_key, problems in self.apply_problems.items():
            if pool_key in out:
                out[pool_key].extend(problems)
        return {k: sorted(set(v)) for k, v in out.items()}

    # -- status -------------------------------------------------------------------------------

    async def _write_statuses(self, pools: list[ParsedPool], invalid: Iterable[Any], plan: Plan,
                              demands: Mapping[str, Any], targets: Mapping[PlacementKey, int],
                              holding: Mapping[str, str],
                              live: Mapping[PlacementKey, LiveDeployment],
                              snapshot: ClusterSnapshot,
                              degraded: Mapping[str, list[tuple[str, str]]],
                              now: dt.datetime, accelerator_pools: Iterable[dict[str, Any]],
                              in_use: Mapping[str, int]) -> int:
        jobs: list[Callable[[], bool]] = []
        # each pool's status reads only its own places: group them once, not once per pool
        targets_of, live_of = by_pool(targets), by_pool(live)
        for pool in pools:
            problems = degraded.get(pool.key, [])
            waiting = [message for (key, _), message in sorted(self.health.provisioning.items())
                       if key == pool.key]
            new = st.pool_status(pool, plan.outcomes.get(pool.key), demands[pool.key],
                                 targets_of.get(pool.key, {}), live_of.get(pool.key, {}),
                                 snapshot, holding.get(pool.key),
                                 problems, now, waiting)
            for reason, message in problems:
                self._event(pool.body, "Warning", reason, message)
            for message in self.dry_run_warnings.pop(pool.key, []):
                self._event(pool.body, "Warning", "AdmissionWarning", message)
            if _differs(new, pool.body.get("status") or {}):
                jobs.append(partial(self._patch_status, "inferencepools", pool.namespace,
                                    pool.name, new))
            self._events_for(pool, new)
        for bad in invalid:
            new = st.invalid_status(bad.body, bad.message, now)
            if _differs(new, bad.body.get("status") or {}):
                ns, name = bad.key.split("/", 1)
                jobs.append(partial(self._patch_status, "inferencepools", ns, name, new))
            self._event(bad.body, "Warning", "SpecInvalid", bad.message)
        for body in accelerator_pools:
            new = st.accelerator_pool_status(body, snapshot, in_use, now)
            if _differs(new, body.get("status") or {}):
                jobs.append(partial(self._patch_status, "acceleratorpools", None,
                                    body["metadata"]["name"], new))
        return await self._write(jobs, "status")

    async def _write(self, jobs: list[Callable[[], bool]], batch: str) -> int:
        """Run a batch of writes, only while this instance leads: checked before the batch and
        again before each write, since a batch queues behind WRITE_CONCURRENCY (a leader whose
        renewal fails mid-reconcile stops within its renew deadline, not at the next one)."""
        if not jobs:
            return 0
        if not self.is_leader():
            self.skipped_writes += len(jobs)
            log.warning("not leading any more: writes skipped", batch=batch, writes=len(jobs))
            return 0
        return sum(await _run_all([partial(self._if_leader, job) for job in jobs],
                                  self._writer))

    def _if_leader(self, job: Callable[[], bool]) -> bool:
        if not self.is_leader():
            self.skipped_writes += 1
            return False
        return job()

    def _patch_status(self, plural: str, namespace: str | None, name: str,
                      status: dict[str, Any]) -> bool:
        try:
            if namespace is None:
                self.custom.patch_cluster_custom_object_status(
                    lbl.GROUP, lbl.VERSION, plural, name, {"status": status})
            else:
                self.custom.patch_namespaced_custom_object_status(
                    lbl.GROUP, lbl.VERSION, namespace, plural, name, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status write failed", object=f"{plural}/{namespace}/{name}",
                            status=exc.status, reason=exc.reason, body=str(exc.body)[:300])
                self.metrics.write_failed(
                    "InferencePool" if plural == "inferencepools" else "AcceleratorPool",
                    exc.status)
            return False
        log.debug("status updated", object=f"{plural}/{namespace or ''}/{name}", status=status)
        return True

    def _events_for(self, pool: ParsedPool, new: Mapping[str, Any]) -> None:
        old = {c["type"]: c for c in (pool.body.get("status") or {}).get("conditions") or []}
        for cond in new["conditions"]:
            before = old.get(cond["type"])
            if cond["type"] == "Ready" and cond["reason"] == "Provisioning" and (
                    before is None or before.get("reason") != "Provisioning"):
                self._event(pool.body, "Normal", "Provisioning", cond["message"])
            if before is not None and before.get("status") == cond["status"]:
                continue
            if cond["type"] in ("CapacityShortfall", st.DEMAND_UNKNOWN) and \
                    cond["status"] == "True":
                self._event(pool.body, "Warning", cond["reason"], cond["message"])
            elif cond["type"] == "Rebalancing" and cond["status"] == "True":
                self._event(pool.body, "Normal", cond["reason"], cond["message"])
        old_rows = {(r.get("variant"), r.get("nodePool")): r.get("desired")
                    for r in (pool.body.get("status") or {}).get("placement") or []}
        new_rows = {(r["variant"], r["nodePool"]): r["desired"] for r in new["placement"]}
        if old_rows != new_rows:
            summary = ", ".join(f"{v}@{n}={d}" for (v, n), d in sorted(new_rows.items()))
            self._event(pool.body, "Normal", "Placed", f"placement: {summary or 'none'}")

    def _event(self, body: Mapping[str, Any], type_: events.EventType, reason: str,
               message: str) -> None:
        meta = body.get("metadata") or {}
        ref = events.ObjectRef(api_version=f"{lbl.GROUP}/{lbl.VERSION}",
                               kind=str(body.get("kind", "InferencePool")),
                               namespace=meta.get("namespace"), name=str(meta.get("name")),
                               uid=str(meta.get("uid")))
        if self.is_leader() and self.deduper.allow(ref, reason, message):
            asyncio.get_running_loop().run_in_executor(
                self._poster, events.post, self.core, ref, type_, reason, message,
                self.settings.identity)

    async def _read_secret(self, namespace: str, name: str, key: str) -> str | Reading:
        return await secrets.read_token(self.core, self._secret_reader, namespace, name, key,
                                        timeout=self.settings.secret_read_timeout_seconds)


# -- helpers ------------------------------------------------------------------------------------


async def _run_all(jobs: list[Callable[[], bool]], executor: Executor) -> list[bool]:
    """Run blocking API calls on `executor` (its size bounds how many run at once)."""
    loop = asyncio.get_running_loop()
    return list(await asyncio.gather(*(loop.run_in_executor(executor, j) for j in jobs)))


def _differs(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    return any(old.get(k) != v for k, v in new.items() if v is not None) or any(
        k in old and old[k] is not None for k, v in new.items() if v is None)


def _destructive(targets: Mapping[PlacementKey, int], live: Mapping[PlacementKey, LiveDeployment],
                 pods: list[dict[str, Any]], nodes: Mapping[str, dict[str, Any]],
                 replace_pods: bool) -> bool:
    """Would acting on this plan remove replicas (scale down, delete, replace pods)?"""
    if any(key in live and replicas < live[key].replicas for key, replicas in targets.items()):
        return True
    return replace_pods and bool(pods_on_failed_nodes(pods, nodes))


def _in_use_by_pool(pods: Iterable[dict[str, Any]], nodes: Mapping[str, dict[str, Any]],
                    accelerator_pools: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Accelerators requested by running pods (ours and others) per AcceleratorPool."""
    per_node: dict[str, int] = {}
    for pod in pods:
        node_name = pod["spec"].get("nodeName")
        if node_name and pod["status"].get("phase") not in ("Succeeded", "Failed"):
            per_node[node_name] = per_node.get(node_name, 0) + pod_accelerators(pod)
    out: dict[str, int] = {}
    for ap in accelerator_pools:
        selector = (ap.get("spec") or {}).get("nodeSelector") or {}
        out[ap["metadata"]["name"]] = sum(
            used for name, used in per_node.items()
            if name in nodes and selector and all(
                (nodes[name]["metadata"].get("labels") or {}).get(k) == v
                for k, v in selector.items()))
    return out
