"""Every Kubernetes API access the operator makes: the one list its RBAC is written from.

The Helm chart's ClusterRole and Role (charts/inferpool-operator/templates/rbac.yaml) grant
exactly these rules, each commented with its `why`; tests/unit/test_chart_rbac.py fails when
the rendered chart grants anything not listed here (or misses something that is), and
tests/sandbox/test_chart.py runs the operator with nothing but the chart's ServiceAccount and
compares what it called (the API server's audit log) with what the chart grants (cluster-wide;
with `watchNamespaces` the namespaced rules are Roles in those namespaces): every verb
granted must have been called, except the `unaudited` ones, which the API server authorizes
inside another request (create on an apply that creates, update of finalizers on setting
blockOwnerDeletion), and the rules behind a chart switch that run leaves off (`when`: get
secrets). Change the code's API usage, change this list, then the chart.

Not listed because nothing needs granting: kopf's API discovery (`/api`, `/apis`: non-resource
URLs every authenticated user may read through the default `system:discovery` binding). With
kopf's scanning disabled and peering standalone, kopf needs no CRD or peering access, and it
posts no Events of its own (posting is disabled; ours go through `inferpool.k8s.events`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

# "watched-namespaces": a Role in each namespace of the chart's `watchNamespaces`
Scope = Literal["cluster", "release-namespace", "watched-namespaces"]
# Cluster-scoped resources: granted by the ClusterRole in every mode. In the namespaced mode
# (`watchNamespaces`) every other "cluster" rule becomes a Role in each watched namespace.
CLUSTER_SCOPED: frozenset[str] = frozenset({"nodes", "acceleratorpools",
                                            "acceleratorpools/status", "nodepools",
                                            "tokenreviews",
                                            "subjectaccessreviews"})


@dataclass(frozen=True)
class Access:
    """Verbs on one resource, where they are granted, and why the operator needs them."""

    group: str  # API group; "" is the core group
    resource: str  # plural, with "/subresource" where one is meant
    verbs: tuple[str, ...]
    # "cluster": ClusterRole (a Role per watched namespace in the namespaced mode, unless the
    # resource is CLUSTER_SCOPED); "release-namespace": Role in the operator's namespace
    scope: Scope
    why: str  # the comment above the rule in the chart
    when: str | None = None  # chart value that must be true for the rule to be granted
    # Granted only on the operator's own object (RBAC resourceNames: the chart's lease name).
    # `create` cannot be limited so: the name is not known when it is authorized.
    own_object_only: bool = False
    # Verbs the API server authorizes inside another of the operator's requests, so they never
    # show as requests of their own in the audit log (tests/sandbox/test_chart.py).
    unaudited: tuple[str, ...] = ()


ACCESS: tuple[Access, ...] = (
    Access("", "nodes", ("list", "watch"), "cluster",
           "nodes: the cluster view (node pools, allocatable accelerators, readiness, taints)"),
    Access("", "pods", ("list", "watch"), "cluster",
           "pods: accelerators in use on each node, and readiness of the replicas we run"),
    Access("", "pods", ("delete",), "cluster",
           "pods: delete the operator's own pods bound to a failed (NotReady or deleted) node, "
           "so their replacements start at once instead of after the eviction timeout",
           when="operator.replacePodsOnFailedNodes"),
    Access("apps", "deployments", ("list", "watch", "create", "patch", "update", "delete"),
           "cluster",
           "deployments: server-side apply of the Deployments the operator owns, one per "
           "(InferencePool, variant, node pool; an apply that creates one needs create too); "
           "update to remove fields added by hand; delete when a placement goes away",
           unaudited=("create",)),
    Access("", "services", ("list", "create", "patch"), "cluster",
           "services: server-side apply of each InferencePool's one Service, which selects "
           "the Ready pods of all its variants (an apply that creates it needs create too); "
           "list ours once per resync period to put back one that was deleted",
           unaudited=("create",)),
    Access("policy", "poddisruptionbudgets", ("list", "create", "patch"), "cluster",
           "poddisruptionbudgets: server-side apply of each InferencePool's one budget, so "
           "evictions (consolidation, drains) take its pods a few at a time (an apply that "
           "creates it needs create too); list ours once per resync period, as for Services",
           unaudited=("create",)),
    Access("inferpool.dev", "inferencepools", ("list", "watch"), "cluster",
           "inferencepools: what to serve (read only; the operator never edits the spec)"),
    Access("inferpool.dev", "inferencepools/status", ("patch",), "cluster",
           "inferencepools/status: demand, capacity, placement and conditions"),
    Access("inferpool.dev", "inferencepools/finalizers", ("update",), "cluster",
           "inferencepools/finalizers: set ownerReferences with blockOwnerDeletion on the "
           "Deployments (the OwnerReferencesPermissionEnforcement admission check)",
           unaudited=("update",)),
    Access("inferpool.dev", "acceleratorpools", ("list", "watch"), "cluster",
           "acceleratorpools: declared node pools (selector, family, price, capacity type)"),
    Access("inferpool.dev", "acceleratorpools/status", ("patch",), "cluster",
           "acceleratorpools/status: report each pool's nodes and accelerators"),
    Access("karpenter.sh", "nodepools", ("list",), "cluster",
           "nodepools: the spec.limits of Karpenter NodePools whose nodes elastic "
           "AcceleratorPools select; a pool grows to no more nodes than they allow",
           when="operator.readKarpenterLimits"),
    Access("", "events", ("create",), "cluster",
           "events: placement decisions and failovers, on the InferencePools they concern "
           "(repeats are deduplicated in the operator, never patched)"),
    Access("", "events", ("list",), "cluster",
           "events: what Karpenter or the cluster autoscaler say about our pods waiting for "
           "nodes in elastic pools (provisioning, or a failed scale-up that spills at once)",
           when="operator.readAutoscalerEvents"),
    Access("", "secrets", ("get",), "cluster",
           "secrets: bearer tokens for Prometheus demand queries; the operator only uses "
           "Secrets labelled inferpool.dev/usage=prometheus-auth",
           when="prometheus.authSecrets"),
    Access("authentication.k8s.io", "tokenreviews", ("create",), "cluster",
           "tokenreviews: who sends a scrape's bearer token (metrics.auth)",
           when="metrics.auth.enabled"),
    Access("authorization.k8s.io", "subjectaccessreviews", ("create",), "cluster",
           "subjectaccessreviews: may that user get the non-resource URL /metrics",
           when="metrics.auth.enabled"),
    Access("coordination.k8s.io", "leases", ("create",), "release-namespace",
           "leases: create the leader-election Lease (one replica plans at a time)"),
    Access("coordination.k8s.io", "leases", ("get", "update"), "release-namespace",
           "leases: read and renew (take over) the operator's own Lease, and no other",
           own_object_only=True),
)

Grant = tuple[str, str, str, Scope, bool]


def grants(access: Iterable[Access] = ACCESS, *, enabled: Iterable[str] = (),
           namespaced: bool = False) -> set[Grant]:
    """(group, resource, verb, scope, own_object_only) for every verb granted, given the chart
    values in `enabled` that are true (rules with a `when` are left out unless theirs is);
    `namespaced`: the chart's `watchNamespaces` mode."""
    on = set(enabled)
    return {(a.group, a.resource, verb, scope(a, namespaced), a.own_object_only)
            for a in access if a.when is None or a.when in on for verb in a.verbs}


def scope(a: Access, namespaced: bool) -> Scope:
    """Where the chart grants `a`, in the cluster-wide or the namespaced mode."""
    if namespaced and a.scope == "cluster" and a.resource not in CLUSTER_SCOPED:
        return "watched-namespaces"
    return a.scope


def conditions(access: Iterable[Access] = ACCESS) -> Iterator[str]:
    """The chart values some rule depends on."""
    seen: set[str] = set()
    for a in access:
        if a.when and a.when not in seen:
            seen.add(a.when)
            yield a.when
