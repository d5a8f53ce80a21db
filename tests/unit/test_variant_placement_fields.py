"""Every field a variant uses to say where it can run (product, type, topology) constrains both
the engine's choice of node pool and the nodeSelector of the Deployment (one test per family)."""

from __future__ import annotations

from typing import Any

import pytest

from inferpool.controller import planning
from inferpool.controller.settings import Settings
from inferpool.controller.translate import node_selector
from inferpool.placement import place
from tests.unit.test_snapshot import node

INSTANCE = "node.kubernetes.io/instance-type"

NODES = [
    # two H100 pools of the same product on different machine types
    node("a3-0", {"cloud.google.com/gke-nodepool": "a3", INSTANCE: "a3-highgpu-8g",
                  "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, {"nvidia.com/gpu": "8"}),
    node("p5-0", {"eks.amazonaws.com/nodegroup": "p5", INSTANCE: "p5.48xlarge",
                  "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, {"nvidia.com/gpu": "8"}),
    node("trn2-0", {"eks.amazonaws.com/nodegroup": "trn2", INSTANCE: "trn2.48xlarge"},
         {"aws.amazon.com/neuron": "16", "aws.amazon.com/neuroncore": "128"}),
    node("inf2-0", {"eks.amazonaws.com/nodegroup": "inf2", INSTANCE: "inf2.48xlarge",
                    "karpenter.k8s.aws/instance-accelerator-name": "inferentia2"},
         {"aws.amazon.com/neuron": "12", "aws.amazon.com/neuroncore": "24"}),
    node("v6e-0", {"cloud.google.com/gke-nodepool": "v6e", INSTANCE: "ct6e-standard-8t",
                   "cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
                   "cloud.google.com/gke-tpu-topology": "2x4"}, {"google.com/tpu": "8"}),
    node("v6e4-0", {"cloud.google.com/gke-nodepool": "v6e4", INSTANCE: "ct6e-standard-4t",
                    "cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
                    "cloud.google.com/gke-tpu-topology": "2x2"}, {"google.com/tpu": "8"}),
]


def ipool(accelerator: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "inferpool.dev/v1alpha1", "kind": "InferencePool",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "resourceVersion": "1"},
        "spec": {"model": "m", "replicas": {"min": replicas, "max": replicas},
                 "demand": {"fixed": 1},
                 "variants": [{"name": "v", "accelerator": accelerator, "capacity": 1.0,
                               "template": {"spec": {"containers": [
                                   {"name": "s", "image": "i"}]}}}]},
    }


def placed(accelerator: dict[str, Any], replicas: int = 1
           ) -> tuple[dict[str, int], list[dict[str, str]]]:
    inputs = planning.read_cluster({"nodes": NODES,
                                    "inference_pools": [ipool(accelerator, replicas)]})
    call = planning.engine_call(inputs, {"ns/m": 1.0}, Settings())
    plan = place(call.snapshot, call.demands, call.current, call.options)
    variant = inputs.pools[0].model.spec.variants[0]
    where = {k[2]: n for k, n in plan.replicas.items()}
    return where, [node_selector(variant, inputs.snapshot.pool(p)) for p in sorted(where)]


@pytest.mark.parametrize(("accelerator", "pool", "selector"), [
    ({"family": "neuron", "type": "trn2.48xlarge", "count": 8}, "trn2",
     {INSTANCE: "trn2.48xlarge"}),
    ({"family": "neuron", "type": "inf2.48xlarge", "count": 8}, "inf2",
     {INSTANCE: "inf2.48xlarge"}),
    ({"family": "neuron", "product": "inferentia2", "count": 8}, "inf2",
     {"karpenter.k8s.aws/instance-accelerator-name": "inferentia2"}),
    ({"family": "nvidia", "type": "p5.48xlarge", "count": 8}, "p5", {INSTANCE: "p5.48xlarge"}),
    ({"family": "nvidia", "type": "a3-highgpu-8g", "count": 8}, "a3",
     {INSTANCE: "a3-highgpu-8g"}),
    ({"family": "tpu", "type": "tpu-v6e-slice", "topology": "2x2", "count": 4}, "v6e4",
     {"cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
      "cloud.google.com/gke-tpu-topology": "2x2"}),
])
def test_a_variants_type_picks_the_node_pool_and_pins_its_pods(
        accelerator: dict[str, Any], pool: str, selector: dict[str, str]) -> None:
    # two replicas: with only the family (or product) matched, the second would spill to the
    # other machine type of that family
    where, selectors = placed(accelerator, replicas=2)
    assert set(where) == {pool}, where
    for got in selectors:
        assert got.items() >= selector.items()


def test_a_type_no_node_pool_has_places_nothing() -> None:
    where, _ = placed({"family": "neuron", "type": "trn1.32xlarge", "count": 8})
    assert where == {}


def test_the_nvidia_product_label_pins_pods_where_nodes_share_it() -> None:
    _, selectors = placed({"family": "nvidia", "product": "NVIDIA-H100-80GB-HBM3", "count": 8})
    for got in selectors:
        assert got["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
