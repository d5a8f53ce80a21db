"""ClusterSnapshot discovery from plain Kubernetes-shaped dicts."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from inferpool.cluster import build_snapshot, default_prices
from inferpool.cluster.labels import topology_chips
from inferpool.cluster.prices import PriceTable, parse_price_table

# --- builders of Kubernetes-shaped objects -----------------------------------------------------


def node(
    name: str,
    labels: dict[str, str],
    allocatable: dict[str, str],
    *,
    ready: bool = True,
    unschedulable: bool = False,
    taints: tuple[str, ...] = (),
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2025-06-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"unschedulable": unschedulable,
                 "taints": [{"key": t, "effect": "NoSchedule"} for t in taints]},
        "status": {
            "allocatable": allocatable,
            "capacity": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(
    node_name: str,
    resource: str,
    *amounts: int,
    labels: dict[str, str] | None = None,
    phase: str = "Running",
    init: tuple[int, ...] = (),
    use_limits: bool = False,
) -> dict[str, Any]:
    kind = "limits" if use_limits else "requests"
    return {
        "metadata": {"name": "p", "labels": labels or {}},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {kind: {resource: str(a)}}} for a in amounts],
            "initContainers": [{"resources": {"requests": {resource: str(a)}}} for a in init],
        },
        "status": {"phase": phase},
    }


H100_LABELS = {"cloud.google.com/gke-nodepool": "h100", "nvidia.com/gpu.product":
               "NVIDIA-H100-80GB-HBM3", "node.kubernetes.io/instance-type": "a3-highgpu-8g"}
GPU8 = {"nvidia.com/gpu": "8"}


def h100_node(name: str = "h100-a", **kwargs: Any) -> dict[str, Any]:
    return node(name, H100_LABELS, GPU8, **kwargs)


# --- pools ---------------------------------------------------------------------------------------


def test_nvidia_pool_from_gke_nodepool_label_priced_per_gpu_from_table() -> None:
    snap = build_snapshot([h100_node("h100-a"), h100_node("h100-b")])
    (pool,) = snap.pools
    assert pool.name == "h100"
    assert pool.family == "nvidia"
    assert pool.product == "NVIDIA-H100-80GB-HBM3"
    assert pool.resource == "nvidia.com/gpu"
    assert pool.node_selector == {"cloud.google.com/gke-nodepool": "h100"}
    assert pool.price_per_accelerator_hour == pytest.approx(11.03)  # a3-highgpu-8g / 8
    assert pool.price_known
    assert snap.free_accelerators("h100") == 16


def test_our_label_wins_over_cloud_labels() -> None:
    labels = {**H100_LABELS, "inferpool.dev/node-pool": "mine"}
    snap = build_snapshot([node("n", labels, GPU8)])
    assert snap.pools[0].name == "mine"
    assert snap.pools[0].node_selector == {"inferpool.dev/node-pool": "mine"}


def test_gke_accelerator_label_normalised_to_gpu_product() -> None:
    labels = {"cloud.google.com/gke-nodepool": "l4", "cloud.google.com/gke-accelerator":
              "nvidia-l4", "node.kubernetes.io/instance-type": "g2-standard-4"}
    snap = build_snapshot([node("n", labels, {"nvidia.com/gpu": "1"})])
    assert snap.pools[0].product == "NVIDIA-L4"
    assert snap.pools[0].price_per_accelerator_hour == pytest.approx(0.7068)


def test_tpu_spot_pool_has_topology_and_spot_price() -> None:
    labels = {"cloud.google.com/gke-nodepool": "v6e", "cloud.google.com/gke-tpu-accelerator":
              "tpu-v6e-slice", "cloud.google.com/gke-tpu-topology": "2x4",
              "cloud.google.com/gke-spot": "true"}
    snap = build_snapshot([node("t", labels, {"google.com/tpu": "8"},
                                taints=("google.com/tpu",))])
    pool = snap.pools[0]
    assert (pool.family, pool.product, pool.topology) == ("tpu", "tpu-v6e-slice", "2x4")
    assert pool.capacity_type == "spot"
    assert pool.price_per_accelerator_hour == pytest.approx(2.70 * 0.4)
    assert snap.nodes[0].free == 8  # the family's own taint does not make a node unhealthy


def test_neuron_product_from_instance_type_and_price_per_device() -> None:
    labels = {"eks.amazonaws.com/nodegroup": "inf2", "node.kubernetes.io/instance-type":
              "inf2.48xlarge", "eks.amazonaws.com/capacityType": "ON_DEMAND"}
    alloc = {"aws.amazon.com/neuron": "12", "aws.amazon.com/neuroncore": "24"}
    snap = build_snapshot([node("i", labels, alloc)])
    pool = snap.pools[0]
    assert (pool.family, pool.product, pool.resource) == (
        "neuron", "inferentia2", "aws.amazon.com/neuron")
    assert pool.price_per_accelerator_hour == pytest.approx(1.08)


def test_node_without_pool_label_forms_family_product_pool() -> None:
    labels = {"nvidia.com/gpu.product": "NVIDIA-L4"}
    snap = build_snapshot([node("n", labels, {"nvidia.com/gpu": "1"})])
    assert snap.pools[0].name == "nvidia-NVIDIA-L4"
    assert snap.pools[0].node_selector == {"nvidia.com/gpu.product": "NVIDIA-L4"}


def test_label_pool_mixing_capacity_types_is_split_and_pinned() -> None:
    base = {"karpenter.sh/nodepool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    snap = build_snapshot([
        node("a", {**base, "karpenter.sh/capacity-type": "on-demand"}, GPU8),
        node("b", {**base, "karpenter.sh/capacity-type": "spot"}, GPU8),
    ])
    by_type = {p.capacity_type: p for p in snap.pools}
    assert set(by_type) == {"on-demand", "spot"}
    assert by_type["spot"].node_selector["karpenter.sh/capacity-type"] == "spot"
    assert by_type["spot"].node_selector["karpenter.sh/nodepool"] == "gpu"
    spot, on_demand = by_type["spot"], by_type["on-demand"]
    assert spot.price_per_accelerator_hour < on_demand.price_per_accelerator_hour


def test_accelerator_pool_claims_nodes_and_sets_price() -> None:
    ap = {"metadata": {"name": "h100-ondemand"},
          "spec": {"family": "nvidia", "nodeSelector": {"cloud.google.com/gke-nodepool": "h100"},
                   "pricePerAcceleratorHour": 3.93, "capacityType": "on-demand",
                   "maxAccelerators": 64}}
    other = node("l4", {"nvidia.com/gpu.product": "NVIDIA-L4"}, {"nvidia.com/gpu": "1"})
    snap = build_snapshot([h100_node(), other], accelerator_pools=[ap])
    pool = snap.pool("h100-ondemand")
    assert pool.price_per_accelerator_hour == 3.93
    assert pool.max_accelerators == 64
    assert pool.node_selector == {"cloud.google.com/gke-nodepool": "h100"}
    assert pool.product == "NVIDIA-H100-80GB-HBM3"
    assert [n.name for n in snap.nodes_of("h100-ondemand")] == ["h100-a"]
    assert {p.name for p in snap.pools} == {"h100-ondemand", "nvidia-NVIDIA-L4"}


def ours(node_name: str, node_pool: str, **kwargs: Any) -> dict[str, Any]:
    """One of our replicas, placed in `node_pool`, bound to `node_name`."""
    return pod(node_name, "nvidia.com/gpu", 8, labels={
        "inferpool.dev/pool": "chat", "inferpool.dev/node-pool": node_pool}, **kwargs)


KARPENTER = {"karpenter.sh/nodepool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_a_split_keeps_the_name_the_running_replicas_were_placed_under() -> None:
    on_demand = [node(f"od-{i}", {**KARPENTER, "karpenter.sh/capacity-type": "on-demand"}, GPU8)
                 for i in range(3)]
    (before,) = build_snapshot(on_demand).pools
    assert before.name == "gpu"
    running = [ours("od-0", "gpu"), ours("od-1", "gpu")]
    spot = node("spot-0", {**KARPENTER, "karpenter.sh/capacity-type": "spot"}, GPU8)
    snap = build_snapshot([*on_demand, spot], running)
    by_type = {p.capacity_type: p for p in snap.pools}
    assert by_type["on-demand"].name == "gpu"  # not renamed: its Deployments stay
    assert by_type["on-demand"].node_selector["karpenter.sh/capacity-type"] == "on-demand"
    assert by_type["spot"].name == "gpu-nvidia-NVIDIA-H100-80GB-HBM3-spot"
    assert [n.name for n in snap.nodes_of("gpu")] == ["od-0", "od-1", "od-2"]
    # without replicas there is nothing to keep: the split names both parts
    assert {p.name for p in build_snapshot([*on_demand, spot]).pools} == {
        "gpu-nvidia-NVIDIA-H100-80GB-HBM3", "gpu-nvidia-NVIDIA-H100-80GB-HBM3-spot"}
    # the split over, replicas placed under a split name keep it
    later = build_snapshot(on_demand, [ours("od-0", "gpu-nvidia-NVIDIA-H100-80GB-HBM3")])
    assert [p.name for p in later.pools] == ["gpu-nvidia-NVIDIA-H100-80GB-HBM3"]
    # finished or deleting pods keep nothing
    gone = [ours("od-0", "x", phase="Succeeded"), {**ours("od-1", "x"), "metadata": {
        **ours("od-1", "x")["metadata"], "deletionTimestamp": "2025-06-01T00:00:00Z"}}]
    assert [p.name for p in build_snapshot(on_demand, gone).pools] == ["gpu"]


def test_an_accelerator_pool_over_running_replicas_keeps_their_pool_name() -> None:
    ap = {"metadata": {"name": "fast"},
          "spec": {"family": "nvidia", "nodeSelector": {"cloud.google.com/gke-nodepool": "h100"},
                   "pricePerAcceleratorHour": 3.0}}
    nodes = [h100_node("h100-a"), h100_node("h100-b")]
    snap = build_snapshot(nodes, [ours("h100-a", "h100")], accelerator_pools=[ap])
    (pool,) = snap.pools
    assert pool.name == "h100"
    assert pool.accelerator_pool == "fast"
    assert pool.price_per_accelerator_hour == 3.0  # the AcceleratorPool's terms apply
    # with nothing running there it takes the AcceleratorPool's name
    (fresh,) = build_snapshot(nodes, accelerator_pools=[ap]).pools
    assert (fresh.name, fresh.accelerator_pool) == ("fast", "fast")
    # a name is never taken from another AcceleratorPool, and goes to one pool only
    other = {"metadata": {"name": "h100"}, "spec": {"nodeSelector": {"x": "y"}}}
    names = {p.name for p in build_snapshot(nodes, [ours("h100-a", "h100")],
                                            accelerator_pools=[ap, other]).pools}
    assert names == {"fast"}
    l4 = node("l4-a", {"cloud.google.com/gke-nodepool": "l4"}, {"nvidia.com/gpu": "4"})
    both = build_snapshot([*nodes, l4], [ours("h100-a", "h100"), ours("h100-b", "h100"),
                                         ours("l4-a", "h100")])
    assert {p.name for p in both.pools} == {"h100", "l4"}


def test_accelerator_pool_with_odd_spec_is_read_defensively() -> None:
    ap = {"metadata": {"name": "x"}, "spec": {"nodeSelector": {"cloud.google.com/gke-nodepool":
                                                                "h100"},
                                              "pricePerAcceleratorHour": "oops"}}
    snap = build_snapshot([h100_node()], accelerator_pools=[ap])
    pool = snap.pool("x")
    assert pool.family == "nvidia"  # from its nodes
    assert pool.price_per_accelerator_hour == pytest.approx(11.03)  # table, not "oops"
    assert pool.max_accelerators is None


def test_unknown_product_gets_fallback_price_and_flag() -> None:
    labels = {"eks.amazonaws.com/nodegroup": "trn2", "node.kubernetes.io/instance-type":
              "trn2.48xlarge"}
    snap = build_snapshot([node("t", labels, {"aws.amazon.com/neuron": "16"})])
    pool = snap.pools[0]
    assert pool.product == "trainium2"
    assert not pool.price_known
    assert pool.price_per_accelerator_hour == default_prices().fallback_price_per_accelerator_hour


def test_nodes_without_accelerators_are_ignored() -> None:
    snap = build_snapshot([node("cpu", {}, {"cpu": "8"})])
    assert snap.pools == ()
    assert snap.nodes == ()


# --- health --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ready": False},
        {"unschedulable": True},
        {"taints": ("node.kubernetes.io/unreachable",)},
        {"taints": ("node.kubernetes.io/not-ready",)},
        {"taints": ("node.kubernetes.io/unschedulable",)},
        {"deleting": True},
    ],
    ids=["not-ready", "cordoned", "unreachable", "not-ready-taint", "unschedulable-taint",
         "deleting"],
)
def test_unhealthy_or_cordoned_nodes_offer_nothing(kwargs: dict[str, Any]) -> None:
    snap = build_snapshot([h100_node(**kwargs)])
    assert snap.nodes[0].allocatable == 8
    assert snap.nodes[0].free == 0


# --- pods ----------------------------------------------------------------------------------------


def test_other_pods_consume_accelerators_ours_and_finished_do_not() -> None:
    pods = [
        pod("h100-a", "nvidia.com/gpu", 2, 1),  # sum over containers: 3
        pod("h100-a", "nvidia.com/gpu", 4, labels={"inferpool.dev/pool": "ns/m"}),  # ours
        pod("h100-a", "nvidia.com/gpu", 4, phase="Succeeded"),
        pod("h100-a", "nvidia.com/gpu", 4, phase="Failed"),
        pod("elsewhere", "nvidia.com/gpu", 4),
    ]
    snap = build_snapshot([h100_node()], pods)
    assert snap.nodes[0].used_by_others == 3
    assert snap.nodes[0].free == 5


def test_pod_request_is_max_of_requests_limits_and_init_containers() -> None:
    snap = build_snapshot([h100_node()], [pod("h100-a", "nvidia.com/gpu", 1, init=(4,)),
                                          pod("h100-a", "nvidia.com/gpu", 2, use_limits=True)])
    assert snap.nodes[0].used_by_others == 6  # max(1, init 4) + 2 from limits


def test_neuroncore_requests_take_whole_devices() -> None:
    labels = {"eks.amazonaws.com/nodegroup": "inf2", "node.kubernetes.io/instance-type":
              "inf2.48xlarge"}
    alloc = {"aws.amazon.com/neuron": "12", "aws.amazon.com/neuroncore": "24"}
    snap = build_snapshot([node("i", labels, alloc)],
                          [pod("i", "aws.amazon.com/neuroncore", 3)])
    assert snap.nodes[0].used_by_others == 2  # 3 cores at 2 per device


def test_used_never_exceeds_allocatable() -> None:
    snap = build_snapshot([h100_node()], [pod("h100-a", "nvidia.com/gpu", 12)])
    assert snap.nodes[0].used_by_others == 8
    assert snap.nodes[0].free == 0


# --- determinism and the price table -----------------------------------------------------------


def test_input_order_does_not_change_the_snapshot() -> None:
    nodes = [h100_node("h100-a"), h100_node("h100-b"),
             node("l", {"nvidia.com/gpu.product": "NVIDIA-L4"}, {"nvidia.com/gpu": "1"})]
    pods = [pod("h100-a", "nvidia.com/gpu", 1), pod("h100-b", "nvidia.com/gpu", 2)]
    assert build_snapshot(nodes, pods) == build_snapshot(list(reversed(nodes)),
                                                         list(reversed(pods)))


def test_without_node_drops_it() -> None:
    snap = build_snapshot([h100_node("h100-a"), h100_node("h100-b")])
    assert [n.name for n in snap.without_node("h100-a").nodes] == ["h100-b"]


def test_every_builtin_price_cites_a_source_and_a_date() -> None:
    from importlib import resources

    doc = yaml.safe_load(resources.files("inferpool.cluster").joinpath("prices.yaml")
                         .read_text("utf-8"))
    assert doc["entries"]
    for entry in doc["entries"]:
        assert entry["source"].startswith("https://"), entry
        assert entry["as_of"], entry
        assert entry["price_per_accelerator_hour"] > 0, entry
        if "instance_price_per_hour" in entry:
            per = entry["instance_price_per_hour"] / entry["accelerators_per_instance"]
            assert per == pytest.approx(entry["price_per_accelerator_hour"], abs=0.01), entry


def test_price_lookup_order_instance_type_then_product_default() -> None:
    table: PriceTable = parse_price_table({"entries": [
        {"family": "nvidia", "product": "X", "price_per_accelerator_hour": 2.0, "default": True},
        {"family": "nvidia", "product": "X", "instance_type": "big", "price_per_accelerator_hour":
         3.0},
    ]})
    assert table.lookup("nvidia", "X", "big").per_accelerator_hour == 3.0
    assert table.lookup("nvidia", "X", "other").per_accelerator_hour == 2.0
    assert not table.lookup("nvidia", "Y").known


def test_topology_chips() -> None:
    assert topology_chips("2x4") == 8
    assert topology_chips("2x2x1") == 4
    assert topology_chips("bad") is None


def test_an_accelerator_pool_that_selects_no_node_is_an_empty_pool() -> None:
    """A selector with a typo (or a pool drained to zero) once failed every reconcile."""
    ap = {"metadata": {"name": "typo"}, "spec": {"family": "tpu", "nodeSelector": {"a": "b"},
                                                 "pricePerAcceleratorHour": 1.0}}
    snapshot = build_snapshot([], [], [ap])
    assert [p.name for p in snapshot.pools] == ["typo"]
    assert snapshot.nodes_of("typo") == () == snapshot.room_of("typo")
