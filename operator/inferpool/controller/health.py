"""Failure detection from the watched pods and nodes (pure; the planner acts on the result).

- Pods of ours on a node that is not Ready (or gone) serve nothing: they are replaced at once
  rather than after the pod eviction timeout (300 s by default).
- Pods Pending as unschedulable for longer than a bound mean the node pool's usable capacity is
  overestimated (a stockout): its accelerators are capped at what our scheduled pods use, and the
  cap is lifted again after a backoff to retry.
- Pods that crash, cannot pull their image, or stay unready too long mean the variant is broken:
  it gets no replicas for a backoff, then is retried.
- In an elastic pool a Pending pod waits for a node: it is provisioning until the autoscaler
  says it cannot launch one (controller/autoscaler.py), which is a stockout at once, or until
  the pool's provisioning timeout runs out, which is one too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferpool.cluster import ClusterSnapshot
from inferpool.cluster.quantity import pod_request
from inferpool.controller.autoscaler import Signal
from inferpool.k8s import labels as lbl

BROKEN_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                            "CreateContainerConfigError", "CreateContainerError",
                            "InvalidImageName", "RunContainerError"})


def _age(pod: Mapping[str, Any], now: dt.datetime) -> float:
    created = pod["metadata"].get("creationTimestamp")
    if not created:
        return 0.0
    when = dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return (now - when).total_seconds()


def _created(pod: Mapping[str, Any]) -> dt.datetime:
    created = pod["metadata"].get("creationTimestamp")
    if not created:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))


def _condition(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for cond in pod["status"].get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def ours(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in pods if lbl.POOL in (p["metadata"].get("labels") or {})
            and not p["metadata"].get("deletionTimestamp")]


def waits_for_node(pod: Mapping[str, Any], elastic: Collection[str]) -> bool:
    """A pod of ours the scheduler finds no node for, in one of the `elastic` node pools."""
    labels = pod["metadata"].get("labels") or {}
    scheduled = _condition(pod, "PodScheduled")
    return (lbl.POOL in labels and labels.get(lbl.NODE_POOL) in elastic
            and not pod["metadata"].get("deletionTimestamp")
            and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable")


def node_is_healthy(node: Mapping[str, Any] | None) -> bool:
    if node is None or node["metadata"].get("deletionTimestamp"):
        return False
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in node["status"].get("conditions") or [])
    unreachable = any(t.get("key") in ("node.kubernetes.io/unreachable",
                                       "node.kubernetes.io/not-ready")
                      for t in node["spec"].get("taints") or [])
    return ready and not unreachable


ZONE_LABEL = "topology.kubernetes.io/zone"
DEFAULT_UNHEALTHY_ZONE_THRESHOLD = 0.55  # kube-controller-manager --unhealthy-zone-threshold


def disrupted_zones(nodes: Mapping[str, Mapping[str, Any]],
                    threshold: float = DEFAULT_UNHEALTHY_ZONE_THRESHOLD) -> frozenset[str]:
    """Zones (`topology.kubernetes.io/zone`; "" for nodes without it) where too many nodes went
    unhealthy at once to believe they all failed, as the node lifecycle controller judges it
    before it stops evicting: at least `threshold` of a zone's nodes and more than two, while
    some are still Ready (partial disruption); or every node of every zone (the control plane
    lost the nodes: a partition, or an API-server outage seen as stale heartbeats). A zone
    entirely down while others are fine is a real zone outage: not listed."""
    healthy: dict[str, int] = {}
    unhealthy: dict[str, int] = {}
    for node in nodes.values():
        zone = str((node["metadata"].get("labels") or {}).get(ZONE_LABEL, ""))
        healthy.setdefault(zone, 0)
        unhealthy.setdefault(zone, 0)
        if node_is_healthy(node):
            healthy[zone] += 1
        else:
            unhealthy[zone] += 1
    if unhealthy and not any(healthy.values()) and any(unhealthy.values()):
        return frozenset(unhealthy)  # nothing Ready anywhere
    return frozenset(z for z, bad in unhealthy.items()
                     if bad > 2 and healthy[z] and bad / (bad + healthy[z]) >= threshold)


def unknown_nodes(nodes: Mapping[str, Mapping[str, Any]],
                  threshold: float = DEFAULT_UNHEALTHY_ZONE_THRESHOLD) -> frozenset[str]:
    """Unhealthy nodes in a disrupted zone: whether they serve is unknown, so nothing of ours
    on them is deleted or scaled down."""
    zones = disrupted_zones(nodes, threshold)
    if not zones:
        return frozenset()
    return frozenset(name for name, node in nodes.items()
                     if not node_is_healthy(node)
                     and str((node["metadata"].get("labels") or {}).get(ZONE_LABEL, "")) in zones)


def pods_on_failed_nodes(pods: Iterable[Mapping[str, Any]],
                         nodes: Mapping[str, Mapping[str, Any]],
                         unhealthy_zone_threshold: float = DEFAULT_UNHEALTHY_ZONE_THRESHOLD
                         ) -> list[tuple[str, str]]:
    """(namespace, name) of our pods bound to a node that is not Ready or no longer exists,
    except on nodes of a zone-scale failure (`disrupted_zones`): those may well be serving.
    During one, pods of missing nodes wait too (their zone is unknown; the pod garbage
    collector removes them if the nodes stay gone)."""
    unknown = unknown_nodes(nodes, unhealthy_zone_threshold)
    return sorted(
        (str(p["metadata"]["namespace"]), str(p["metadata"]["name"]))
        for p in ours(pods)
        if p["spec"].get("nodeName") and p["spec"]["nodeName"] not in unknown
        and not (unknown and p["spec"]["nodeName"] not in nodes)
        and not node_is_healthy(nodes.get(p["spec"]["nodeName"])))


def serving_node_pools(pods: Iterable[Mapping[str, Any]],
                       nodes: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """Node pool names (the `inferpool.dev/node-pool` label) with a pod of ours Ready on a
    healthy node: whatever the snapshot calls that pool now, it serves."""
    return frozenset(
        str(p["metadata"]["labels"].get(lbl.NODE_POOL)) for p in ours(pods)
        if p["metadata"]["labels"].get(lbl.NODE_POOL) and node_is_healthy(
            nodes.get(str(p["spec"].get("nodeName") or "")))
        and any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in p["status"].get("conditions") or []))


def starting_nodes(snapshot: ClusterSnapshot, nodes: Mapping[str, Mapping[str, Any]],
                   wall: dt.datetime) -> frozenset[str]:
    """Nodes of elastic pools that do not take pods yet (not Ready, or still tainted as
    initializing) but are younger than the pool's provisioning timeout: just launched, not
    failed."""
    out = set()
    for n in snapshot.nodes:
        elastic = snapshot.pool(n.pool).elastic
        view = nodes.get(n.name)
        if elastic is None or view is None or (n.ready and n.schedulable):
            continue
        if _age(view, wall) < elastic.provisioning_timeout_s:
            out.add(n.name)
    return frozenset(out)


def dead_node_pools(snapshot: ClusterSnapshot, live_names: Iterable[str],
                    serving: frozenset[str], starting: frozenset[str] = frozenset()
                    ) -> frozenset[str]:
    """Node pools whose replicas serve nothing, so they never hold old ones back: no pod of
    ours Ready on a healthy node there (`serving_node_pools`), and either no node of it is Ready
    and schedulable or its name left the snapshot. A name that vanished (a node pool split by a
    new kind of node, or adopted by an AcceleratorPool) is no proof of failure by itself, nor
    is an elastic pool without nodes or with only `starting` ones (its nodes come when pods ask
    for them)."""
    names = {p.name for p in snapshot.pools}
    dead = {n for n in live_names if n not in names}
    dead |= {p.name for p in snapshot.pools
             if not any(n.ready and n.schedulable for n in snapshot.nodes_of(p.name))
             and (p.elastic is None
                  or any(n.name not in starting for n in snapshot.nodes_of(p.name)))}
    return frozenset(dead - serving)


def frozen_node_pools(snapshot: ClusterSnapshot, pods: Iterable[Mapping[str, Any]],
                      unknown: frozenset[str]) -> frozenset[str]:
    """Node pools with a node of unknown health (`unknown_nodes`), by the snapshot's name and by
    the label of our pods on such nodes: none of their replicas is scaled down meanwhile."""
    if not unknown:
        return frozenset()
    frozen = {n.pool for n in snapshot.nodes if n.name in unknown}
    frozen |= {str(p["metadata"]["labels"].get(lbl.NODE_POOL)) for p in ours(pods)
               if p["spec"].get("nodeName") in unknown and p["metadata"]["labels"].get(
                   lbl.NODE_POOL)}
    return frozenset(frozen)


# Event and pod timestamps are whole seconds from the API server
_CLOCK_SKEW = dt.timedelta(seconds=2)


def _waiting_message(node_pool: str, said: list[Signal | None]) -> str:
    heard = [s for s in said if s is not None]
    latest = f" ({max(heard, key=lambda s: s.at).says})" if heard else ""
    return f"{len(said)} replica(s) wait for nodes of elastic pool {node_pool}{latest}"


@dataclass
class Backoff:
    """Exponential backoff per key: how long a verdict (stockout, broken variant) stands."""

    initial: float = 60.0
    maximum: float = 900.0
    until: dict[Any, float] = field(default_factory=dict)
    _next: dict[Any, float] = field(default_factory=dict)

    def trip(self, key: Any, now: float) -> None:
        if self.active(key, now):
            return
        delay = self._next.get(key, self.initial)
        self.until[key] = now + delay
        self._next[key] = min(self.maximum, delay * 2)

    def active(self, key: Any, now: float) -> bool:
        return self.until.get(key, -1.0) > now

    def clear(self, key: Any) -> None:
        """The key works again: the next failure starts from the initial delay."""
        self.until.pop(key, None)
        self._next.pop(key, None)


@dataclass
class HealthTracker:
    stockout_seconds: float = 30.0
    broken_seconds: float = 20.0
    stockouts: Backoff = field(default_factory=Backoff)
    broken: Backoff = field(default_factory=Backoff)
    # why each verdict was given, for status and Events
    stockout_why: dict[str, str] = field(default_factory=dict)
    broken_why: dict[tuple[str, str], str] = field(default_factory=dict)
    # when each node pool was last found stocked out: only pods created after that and
    # scheduled prove the pool works again (older pods were placed before the stockout)
    stockout_since: dict[str, dt.datetime] = field(default_factory=dict)
    # (pool key, elastic node pool) -> what the InferencePool's replicas waiting for nodes there
    # are told, as of the last observe
    provisioning: dict[tuple[str, str], str] = field(default_factory=dict)

    def observe(self, pods: Iterable[Mapping[str, Any]], ready_timeouts: Mapping[str, float],
                now: float, wall: dt.datetime,
                nodes: Mapping[str, Mapping[str, Any]] | None = None,
                expected_to_bind: Collection[tuple[str, str, str]] = frozenset(),
                elastic: Mapping[str, float] | None = None,
                autoscaler: Mapping[str, Signal] | None = None) -> None:
        """Update verdicts from our pods. `ready_timeouts`: pool key -> readyTimeoutSeconds;
        `nodes` (name -> view) lets pods on failed nodes be judged as the node's fault;
        `expected_to_bind`: placements whose new pods the last plan checked would bind
        (controller/binding.py): one of them unschedulable means the scheduler sees less room
        than the engine, and its node pool is capped at once, not after the stockout bound.
        `elastic`: elastic node pool -> provisioning timeout (s); `autoscaler`: "namespace/name"
        of a pod -> the autoscaler's latest word on it."""
        elastic, autoscaler = elastic or {}, autoscaler or {}
        pending: dict[str, int] = {}
        mismatched: dict[str, int] = {}
        refused: dict[str, list[Signal]] = {}
        overdue: dict[str, int] = {}
        waiting: dict[tuple[str, str], list[Signal | None]] = {}
        scheduled_ok: set[str] = set()
        failing: dict[tuple[str, str], list[str]] = {}
        healthy_variants: set[tuple[str, str]] = set()
        for pod in ours(pods):
            labels = pod["metadata"]["labels"]
            pool_key = f"{pod['metadata']['namespace']}/{labels[lbl.POOL]}"
            variant = (pool_key, str(labels.get(lbl.VARIANT)))
            node_pool = str(labels.get(lbl.NODE_POOL))
            age = _age(pod, wall)
            scheduled = _condition(pod, "PodScheduled")
            if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
                if node_pool in elastic:
                    said = autoscaler.get(f"{pod['metadata']['namespace']}/"
                                          f"{pod['metadata']['name']}")
                    if said is not None and said.at < _created(pod) - _CLOCK_SKEW:
                        said = None  # about an earlier pod of the same name
                    if said is not None and not said.provisioning:
                        refused.setdefault(node_pool, []).append(said)
                    elif age >= elastic[node_pool]:
                        overdue[node_pool] = overdue.get(node_pool, 0) + 1
                    else:
                        waiting.setdefault((pool_key, node_pool), []).append(said)
                elif (pool_key, variant[1], node_pool) in expected_to_bind:
                    mismatched[node_pool] = mismatched.get(node_pool, 0) + 1
                elif age >= self.stockout_seconds:
                    pending[node_pool] = pending.get(node_pool, 0) + 1
                continue
            node_name = pod["spec"].get("nodeName")
            if nodes is not None and node_name and not node_is_healthy(nodes.get(node_name)):
                continue  # its node failed: neither the variant's nor the pool's fault
            since = self.stockout_since.get(node_pool)
            if node_name and (since is None or _created(pod) > since):
                scheduled_ok.add(node_pool)
            reasons = set(pod["status"].get("waiting") or []) & BROKEN_REASONS
            ready = _condition(pod, "Ready").get("status") == "True"
            if reasons and age >= self.broken_seconds:
                failing.setdefault(variant, []).append(sorted(reasons)[0])
            elif not ready and pod["spec"].get("nodeName") and age >= ready_timeouts.get(
                    pool_key, 600.0):
                failing.setdefault(variant, []).append("NotReadyInTime")
            elif ready:
                healthy_variants.add(variant)
        verdicts = {p: f"{n} replica(s) unschedulable for over {self.stockout_seconds:.0f} s"
                   for p, n in pending.items()}
        verdicts.update({p: f"{n} replica(s) unschedulable where the plan had room for them"
                        for p, n in mismatched.items()})
        verdicts.update({p: f"{n} replica(s) waited over {elastic[p]:.0f} s for a node the "
                         "autoscaler did not bring" for p, n in overdue.items()})
        verdicts.update({p: f"the autoscaler cannot launch a node for {len(said)} replica(s); "
                         f"{max(said, key=lambda s: s.at).says}" for p, said in refused.items()})
        self.provisioning = {key: _waiting_message(key[1], said)
                             for key, said in waiting.items() if key[1] not in verdicts}
        for node_pool, reason in sorted(verdicts.items()):
            if not self.stockouts.active(node_pool, now):
                self.stockout_why[node_pool] = reason
                self.stockout_since[node_pool] = wall
            self.stockouts.trip(node_pool, now)
        for node_pool in scheduled_ok - set(verdicts):
            if not self.stockouts.active(node_pool, now):
                self.stockouts.clear(node_pool)
                self.stockout_since.pop(node_pool, None)
        for variant, failures in failing.items():
            if variant in healthy_variants:
                continue  # some replicas work: a bad node, not a bad variant
            if not self.broken.active(variant, now):
                counts = {r: failures.count(r) for r in sorted(set(failures))}
                self.broken_why[variant] = ", ".join(f"{n} replica(s) {r}"
                                                     for r, n in counts.items())
            self.broken.trip(variant, now)
        for variant in healthy_variants:
            self.broken.clear(variant)

    def stocked_out(self, now: float) -> list[str]:
        return sorted(k for k in self.stockouts.until if self.stockouts.active(k, now))

    def broken_variants(self, now: float) -> frozenset[tuple[str, str]]:
        return frozenset(k for k in self.broken.until if self.broken.active(k, now))


def accelerators_in_use(pods: Iterable[Mapping[str, Any]], node_pool: str) -> int:
    """Accelerators our scheduled pods use in a node pool: a stocked-out pool's usable cap."""
    return sum(pod_accelerators(pod) for pod in ours(pods)
               if pod["metadata"]["labels"].get(lbl.NODE_POOL) == node_pool
               and pod["spec"].get("nodeName"))


def pod_accelerators(pod: Mapping[str, Any]) -> int:
    """Accelerators of every family one pod requests (Kubernetes' effective request); a bad
    quantity counts as none (cluster.quantity), it never fails a reconcile."""
    return sum(pod_request(pod.get("spec"), resource) for resource in lbl.FAMILY_RESOURCE.values())
