"""Build a ClusterSnapshot from plain dicts shaped like Kubernetes JSON objects.

Three sources, in this order of authority:
1. `AcceleratorPool` objects: nodes matching one's nodeSelector belong to it and take its price.
2. Node pool identity labels (ours, GKE, EKS managed node groups, Karpenter).
3. Otherwise a pool per family and product, e.g. `nvidia-NVIDIA-L4`.
A label pool that mixes accelerator products or capacity types is split, and each part's
selector gains the label that tells it apart, so a Deployment pinned to it lands on one kind.

A pool's name is its identity (Deployments, status and metrics are named after it), so it is
kept stable: a pool whose nodes run our pods keeps the node pool name those pods carry, when a
new kind of node splits its label pool, when the split ends, or when an AcceleratorPool adopts
its nodes (the pool then belongs to the AcceleratorPool but keeps its name). Otherwise a rename
would pin new replicas to the same, full nodes under a new name and delete the old ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from inferpool.cluster import labels as lbl
from inferpool.cluster.node_pool_limits import karpenter_node_pool, node_cap
from inferpool.cluster.prices import PriceTable, default_prices
from inferpool.cluster.quantity import container_request, count, is_valid
from inferpool.cluster.snapshot import (
    FAMILIES,
    CapacityType,
    ClusterSnapshot,
    Elastic,
    Family,
    Node,
    NodePool,
)

_TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})
_CAPACITY_TYPES: Mapping[str, CapacityType] = {
    "on-demand": "on-demand",
    "ondemand": "on-demand",
    "on_demand": "on-demand",
    "spot": "spot",
    "reserved": "reserved",
    "capacity_block": "reserved",
    "capacity-block": "reserved",
}


@dataclass(frozen=True, slots=True)
class _NodeFacts:
    """What discovery reads off one Node object."""

    name: str
    labels: Mapping[str, str]
    family: Family
    resource: str
    allocatable: int
    cores_per_device: int  # Neuron: pods may ask for cores instead of devices
    product: str | None
    product_label: str | None
    topology: str | None
    instance_type: str | None
    capacity_type: CapacityType
    capacity_label: str | None
    ready: bool
    schedulable: bool


def build_snapshot(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]] = (),
    accelerator_pools: Iterable[Mapping[str, Any]] = (),
    prices: PriceTable | None = None,
    node_pool_limits: Mapping[str, Mapping[str, Any]] | None = None,
) -> ClusterSnapshot:
    """`node_pool_limits`: Karpenter NodePool name -> its spec.limits, which cap the elastic
    AcceleratorPools that select that NodePool's nodes (cluster/node_pool_limits.py)."""
    table = prices if prices is not None else default_prices()
    pods = list(pods)
    facts = sorted(
        (f for f in (_read_node(n) for n in nodes) if f is not None), key=lambda f: f.name
    )
    used = _used_by_others(pods, {f.name: f for f in facts})

    pools: dict[str, NodePool] = {}
    members: dict[str, list[_NodeFacts]] = defaultdict(list)
    unclaimed: list[_NodeFacts] = []
    explicit = sorted(
        (ap for ap in accelerator_pools if _name(ap)), key=lambda ap: _name(ap)
    )
    for node in facts:
        owner = next((ap for ap in explicit if _selects(ap, node.labels)), None)
        if owner is None:
            unclaimed.append(node)
        else:
            members[_name(owner)].append(node)
    for ap in explicit:
        pool = _explicit_pool(ap, members.get(_name(ap), []), table, node_pool_limits or {})
        if pool is not None:
            pools[pool.name] = pool
            members.setdefault(pool.name, [])  # a pool with no node yet is named too
        else:
            members.pop(_name(ap), None)
    for pool, group in _discovered_pools(unclaimed, table, taken=set(pools)):
        pools[pool.name] = pool
        members[pool.name] = group
    names = _stable_names(members, _hosted(pods, {f.name for f in facts}),
                          reserved={_name(ap) for ap in explicit})
    pools = {names[old]: dataclasses.replace(pool, name=names[old])
             for old, pool in pools.items()}
    members = {names[old]: group for old, group in members.items()}

    snapshot_nodes = [
        Node(
            name=f.name,
            pool=pool_name,
            allocatable=f.allocatable,
            used_by_others=min(f.allocatable, used.get(f.name, 0)),
            ready=f.ready,
            schedulable=f.schedulable,
        )
        for pool_name, group in members.items()
        for f in group
    ]
    return ClusterSnapshot(pools=tuple(pools.values()), nodes=tuple(snapshot_nodes))


# --- nodes -------------------------------------------------------------------------------------


def _read_node(obj: Mapping[str, Any]) -> _NodeFacts | None:
    meta = _map(obj.get("metadata"))
    spec = _map(obj.get("spec"))
    status = _map(obj.get("status"))
    name = str(meta.get("name") or "")
    if not name:
        return None
    labels = {str(k): str(v) for k, v in _map(meta.get("labels")).items()}
    allocatable = _map(status.get("allocatable"))
    capacity = _map(status.get("capacity"))

    family, resource, count = _accelerators(allocatable, capacity)
    if family is None:
        return None
    cores = _quantity(allocatable.get(lbl.NEURONCORE_RESOURCE))
    devices = _quantity(allocatable.get(lbl.RESOURCES["neuron"]))
    cores_per_device = cores // devices if family == "neuron" and devices and cores else 1

    product, product_label = _product(family, labels)
    topology = labels.get(lbl.TPU_TOPOLOGY) if family == "tpu" else None
    capacity_type, capacity_label = _capacity_type(labels)
    taints = {str(_map(t).get("key", "")) for t in (spec.get("taints") or ())}
    ready = any(
        _map(c).get("type") == "Ready" and _map(c).get("status") == "True"
        for c in (status.get("conditions") or ())
    )
    schedulable = not (
        bool(spec.get("unschedulable"))
        or bool(taints & lbl.UNHEALTHY_TAINTS)
        or meta.get("deletionTimestamp")
    )
    return _NodeFacts(
        name=name,
        labels=labels,
        family=family,
        resource=resource,
        allocatable=count,
        cores_per_device=max(1, cores_per_device),
        product=product,
        product_label=product_label,
        topology=topology,
        instance_type=labels.get(lbl.INSTANCE_TYPE),
        capacity_type=capacity_type,
        capacity_label=capacity_label,
        ready=ready,
        schedulable=schedulable,
    )


def _accelerators(
    allocatable: Mapping[str, Any], capacity: Mapping[str, Any]
) -> tuple[Family | None, str, int]:
    """Family from the accelerator resource in allocatable; capacity alone still marks an
    accelerator node (e.g. a device plugin that crashed), which then offers nothing."""
    for source in (allocatable, capacity):
        for family in FAMILIES:
            if _quantity(source.get(lbl.RESOURCES[family])) > 0:
                count = _quantity(allocatable.get(lbl.RESOURCES[family]))
                return family, lbl.RESOURCES[family], count
        if _quantity(source.get(lbl.NEURONCORE_RESOURCE)) > 0:
            # Only cores advertised: count and request in cores.
            cores = _quantity(allocatable.get(lbl.NEURONCORE_RESOURCE))
            return "neuron", lbl.NEURONCORE_RESOURCE, cores
    return None, "", 0


def _product(family: Family, labels: Mapping[str, str]) -> tuple[str | None, str | None]:
    if family == "nvidia":
        if lbl.NVIDIA_PRODUCT in labels:
            return labels[lbl.NVIDIA_PRODUCT], lbl.NVIDIA_PRODUCT
        if lbl.GKE_ACCELERATOR in labels:
            raw = labels[lbl.GKE_ACCELERATOR]
            return lbl.GKE_GPU_PRODUCTS.get(raw, raw), lbl.GKE_ACCELERATOR
        return None, None
    if family == "tpu":
        if lbl.TPU_ACCELERATOR in labels:
            return labels[lbl.TPU_ACCELERATOR], lbl.TPU_ACCELERATOR
        return None, None
    if lbl.KARPENTER_ACCELERATOR_NAME in labels:
        return labels[lbl.KARPENTER_ACCELERATOR_NAME], lbl.KARPENTER_ACCELERATOR_NAME
    instance_type = labels.get(lbl.INSTANCE_TYPE, "")
    for prefix, product in lbl.NEURON_INSTANCE_PREFIXES:
        if instance_type.startswith(prefix):
            return product, lbl.INSTANCE_TYPE
    return None, None


def _capacity_type(labels: Mapping[str, str]) -> tuple[CapacityType, str | None]:
    for key in (lbl.KARPENTER_CAPACITY_TYPE, lbl.EKS_CAPACITY_TYPE):
        if key in labels:
            return _CAPACITY_TYPES.get(labels[key].lower(), "on-demand"), key
    for key in (lbl.GKE_SPOT, lbl.GKE_PREEMPTIBLE):
        if labels.get(key) == "true":
            return "spot", key
    return "on-demand", None


# --- pods --------------------------------------------------------------------------------------


def _hosted(pods: Iterable[Mapping[str, Any]], nodes: set[str]) -> dict[str, list[str]]:
    """Per node: the node pool names our pods bound to it were placed under."""
    out: dict[str, list[str]] = defaultdict(list)
    for pod in pods:
        meta = _map(pod.get("metadata"))
        node = str(_map(pod.get("spec")).get("nodeName") or "")
        placed = _map(meta.get("labels")).get(lbl.POD_NODE_POOL_LABEL)
        if (node in nodes and placed and not meta.get("deletionTimestamp")
                and _map(pod.get("status")).get("phase") not in _TERMINATED_PHASES):
            out[node].append(str(placed))
    return out


def _used_by_others(
    pods: Iterable[Mapping[str, Any]], nodes: Mapping[str, _NodeFacts]
) -> dict[str, int]:
    used: dict[str, int] = defaultdict(int)
    for pod in pods:
        meta = _map(pod.get("metadata"))
        spec = _map(pod.get("spec"))
        node = nodes.get(str(spec.get("nodeName") or ""))
        if node is None or _map(pod.get("status")).get("phase") in _TERMINATED_PHASES:
            continue
        if lbl.OWNED_POD_LABEL in _map(meta.get("labels")):
            continue  # ours: part of the current placement, not "used by others"
        used[node.name] += _pod_request(spec, node)
    return used


def _pod_request(spec: Mapping[str, Any], node: _NodeFacts) -> int:
    """Kubernetes' effective request: max(sum over containers, largest init container)."""

    def one(container: Any) -> int:
        amount = container_request(container, node.resource)
        if node.resource == lbl.RESOURCES["neuron"]:
            # A pod asking for NeuronCores occupies whole devices on that node.
            cores = container_request(container, lbl.NEURONCORE_RESOURCE)
            amount = max(amount, math.ceil(cores / node.cores_per_device))
        return amount

    regular = sum(one(c) for c in (spec.get("containers") or ()))
    init = max((one(c) for c in (spec.get("initContainers") or ())), default=0)
    return max(regular, init)


# --- pools -------------------------------------------------------------------------------------


def _explicit_pool(
    ap: Mapping[str, Any], nodes: list[_NodeFacts], table: PriceTable,
    node_pool_limits: Mapping[str, Mapping[str, Any]],
) -> NodePool | None:
    spec = _map(ap.get("spec"))
    family_raw = spec.get("family")
    family: Family | None = (
        cast(Family, family_raw) if family_raw in FAMILIES else (nodes[0].family if nodes else None)
    )
    if family is None:
        return None
    elastic_spec = _map(spec.get("elastic"))
    elastic = _elastic(elastic_spec)
    product = (_as_str(spec.get("product")) or _common(n.product for n in nodes)
               or _as_str(elastic_spec.get("product")))
    topology = (_as_str(spec.get("topology")) or _common(n.topology for n in nodes)
                or _as_str(elastic_spec.get("topology")))
    capacity_raw = str(spec.get("capacityType", "on-demand")).lower()
    capacity_type = _CAPACITY_TYPES.get(capacity_raw, "on-demand")
    price = _number(spec.get("pricePerAcceleratorHour"))
    known = price is not None and price >= 0
    if price is None or price < 0:
        looked_up = table.lookup(
            family, product, _common(n.instance_type for n in nodes), capacity_type
        )
        price, known = looked_up.per_accelerator_hour, looked_up.known
    max_acc = _number(spec.get("maxAccelerators"))
    resources = {n.resource for n in nodes if n.family == family}
    resource = resources.pop() if len(resources) == 1 else lbl.RESOURCES[family]
    selector = {str(k): str(v) for k, v in _map(spec.get("nodeSelector")).items()}
    if elastic is not None:
        elastic = _capped(elastic, selector, resource, node_pool_limits)
    # An elastic pool's nodeSelector is its pin: labels learnt from the nodes it has now would
    # change every Deployment's nodeSelector (a rollout) when its first node comes or goes.
    common = _common_labels(nodes) if elastic is None else {}
    return NodePool(
        name=_name(ap),
        family=family,
        product=product,
        topology=topology,
        price_per_accelerator_hour=float(price),
        capacity_type=capacity_type,
        node_selector=selector,
        resource=resource,
        max_accelerators=int(max_acc) if max_acc is not None and max_acc >= 0 else None,
        price_known=known,
        instance_type=common.get(lbl.INSTANCE_TYPE) or _as_str(elastic_spec.get("instanceType")),
        labels=common,
        accelerator_pool=_name(ap),
        elastic=elastic,
    )


def _elastic(spec: Mapping[str, Any]) -> Elastic | None:
    per_node, max_nodes = _number(spec.get("acceleratorsPerNode")), _number(spec.get("maxNodes"))
    if per_node is None or per_node < 1 or max_nodes is None or max_nodes < 0:
        return None  # not elastic (the schema refuses a half-given block)
    timeout = _number(spec.get("provisioningTimeoutSeconds"))
    return Elastic(int(per_node), int(max_nodes), timeout if timeout and timeout > 0 else 600.0)


def _capped(elastic: Elastic, selector: Mapping[str, str], resource: str,
            node_pool_limits: Mapping[str, Mapping[str, Any]]) -> Elastic:
    """`elastic` with at most the nodes its Karpenter NodePool's limits allow."""
    name = karpenter_node_pool(selector)
    cap = (node_cap(name, _map(node_pool_limits[name]), resource, elastic.accelerators_per_node)
           if name is not None and name in node_pool_limits else None)
    if cap is None or cap.nodes >= elastic.max_nodes:
        return elastic
    return dataclasses.replace(elastic, max_nodes=cap.nodes, declared_max_nodes=elastic.max_nodes,
                               limited_by=cap.reason)


def _discovered_pools(
    nodes: list[_NodeFacts], table: PriceTable, taken: set[str]
) -> list[tuple[NodePool, list[_NodeFacts]]]:
    # group by identity label, then split each group by what must not be mixed in one pool
    by_identity: dict[tuple[str, str], list[_NodeFacts]] = defaultdict(list)
    for node in nodes:
        key = next((k for k in lbl.POOL_LABELS if node.labels.get(k)), "")
        by_identity[(key, node.labels.get(key, "") if key else "")].append(node)

    result: list[tuple[NodePool, list[_NodeFacts]]] = []
    for (label, value), group in sorted(by_identity.items()):
        kinds: dict[tuple[str, str, str, str, str], list[_NodeFacts]] = defaultdict(list)
        for n in group:
            kind = (n.family, n.product or "", n.topology or "", n.capacity_type, n.resource)
            kinds[kind].append(n)
        split = len(kinds) > 1
        for (family, product, topology, _, resource), part in sorted(kinds.items()):
            first = part[0]
            selector: dict[str, str] = {label: value} if label else {}
            if not label or split:
                if first.product_label:
                    selector[first.product_label] = first.labels[first.product_label]
                if topology:
                    selector[lbl.TPU_TOPOLOGY] = topology
                if split and first.capacity_label:
                    selector[first.capacity_label] = first.labels[first.capacity_label]
            name = value if label and not split else _derived_name(value, first)
            while name in taken:
                name += "-discovered"
            taken.add(name)
            common = _common_labels(part)
            price = table.lookup(
                family, product or None, _common(n.instance_type for n in part), first.capacity_type
            )
            result.append(
                (
                    NodePool(
                        name=name,
                        family=first.family,
                        product=product or None,
                        topology=topology or None,
                        price_per_accelerator_hour=price.per_accelerator_hour,
                        capacity_type=first.capacity_type,
                        node_selector=selector,
                        resource=resource,
                        max_accelerators=None,
                        price_known=price.known,
                        instance_type=common.get(lbl.INSTANCE_TYPE),
                        labels=common,
                    ),
                    part,
                )
            )
    return result


def _stable_names(members: Mapping[str, list[_NodeFacts]], hosted: Mapping[str, list[str]],
                  reserved: set[str]) -> dict[str, str]:
    """Default pool name -> the name to use. A pool takes the name most of our pods on its
    nodes were placed under (ties: its own default name, then by name); each name goes to one
    pool, the one running most pods under it; no pool takes another AcceleratorPool's name.
    Pools left without a name keep their default one (suffixed if taken)."""
    claims: list[tuple[int, bool, str, str]] = []
    for default, group in members.items():
        counts = Counter(name for n in group for name in hosted.get(n.name, ()))
        claims += [(-count, wanted != default, default, wanted)
                   for wanted, count in counts.items()]
    final: dict[str, str] = {}
    for _, _, default, wanted in sorted(claims):
        if default in final or wanted in final.values():
            continue
        if wanted != default and wanted in reserved:
            continue
        final[default] = wanted
    used = set(final.values())
    for default in sorted(members):
        if default not in final:
            name = default
            while name in used:
                name += "-discovered"
            final[default] = name
            used.add(name)
    return final


def _derived_name(prefix: str, node: _NodeFacts) -> str:
    parts = [prefix] if prefix else []
    parts.append(f"{node.family}-{node.product}" if node.product else node.family)
    if node.topology:
        parts.append(node.topology)
    if node.capacity_type != "on-demand":
        parts.append(node.capacity_type)
    return "-".join(parts)


# --- small helpers ---------------------------------------------------------------------------


def _selects(ap: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = _map(_map(ap.get("spec")).get("nodeSelector"))
    # an empty selector would swallow every node: treat it as selecting nothing
    return bool(selector) and all(labels.get(str(k)) == str(v) for k, v in selector.items())


def _name(obj: Mapping[str, Any]) -> str:
    return str(_map(obj.get("metadata")).get("name") or "")


def _common_labels(nodes: list[_NodeFacts]) -> dict[str, str]:
    """The accelerator labels every one of `nodes` carries with the same value."""
    out = {}
    for key in lbl.ACCELERATOR_LABELS:
        values = {n.labels.get(key) for n in nodes}
        if len(values) == 1 and (value := values.pop()):
            out[key] = value
    return out


def _common(values: Iterable[str | None]) -> str | None:
    distinct = {v for v in values if v}
    return distinct.pop() if len(distinct) == 1 else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _as_str(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _quantity(value: Any) -> int:
    """What a node offers, in whole units (quantity.count: bad values count as zero)."""
    return count(value)


def bad_quantities(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
                   ) -> list[str]:
    """Resource values that are not quantities (counted as nothing), one line each, so the
    operator can say why a node offers or a pod uses less than it shows."""
    out = []
    for obj in nodes:
        for kind in ("allocatable", "capacity"):
            for resource, value in _map(_map(obj.get("status")).get(kind)).items():
                if not is_valid(value):
                    out.append(f"node {_name(obj)}: status.{kind}[{resource}]={value!r} is not "
                               "a quantity; counted as 0")
    for obj in pods:
        meta = _map(obj.get("metadata"))
        spec = _map(obj.get("spec"))
        for field_ in ("containers", "initContainers"):
            for container in spec.get(field_) or ():
                resources = _map(_map(container).get("resources"))
                for kind in ("requests", "limits"):
                    for resource, value in _map(resources.get(kind)).items():
                        if not is_valid(value):
                            out.append(f"pod {meta.get('namespace')}/{meta.get('name')}: "
                                       f"{kind}[{resource}]={value!r} is not a quantity; "
                                       "counted as 0")
    return sorted(out)
