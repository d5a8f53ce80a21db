"""What the sandbox hands Karpenter for its elastic pools (pure; the running Karpenter is tested
in tests/sandbox/test_karpenter.py)."""

from __future__ import annotations

from inferpool.sandbox import karpenter
from inferpool.sandbox import pools as pool_desc


def description() -> pool_desc.PoolsFile:
    return pool_desc.load(pool_desc.KARPENTER_POOLS)


def test_every_elastic_pool_is_an_instance_type_with_its_shape_and_price() -> None:
    types = {t["name"]: t for t in karpenter.instance_types(description())}

    assert set(types) == {"p5.48xlarge", "g6.24xlarge", "ct6e-standard-8t", "trn2.48xlarge",
                          "inf2.48xlarge"}
    h100 = types["p5.48xlarge"]
    assert h100["resources"]["nvidia.com/gpu"] == "8"
    assert h100["offerings"][0]["Price"] == 55.04  # 8 x the operator's H100 list price
    assert types["trn2.48xlarge"]["offerings"][0]["Price"] == 21.5  # the file's own figure
    assert types["inf2.48xlarge"]["resources"]["aws.amazon.com/neuroncore"] == "24"


def test_an_unavailable_offering_leaves_its_instance_type_out() -> None:
    names = {t["name"] for t in karpenter.instance_types(description(), unavailable=["h100"])}
    assert "p5.48xlarge" not in names
    assert "g6.24xlarge" in names


def test_node_pools_carry_the_pools_labels_taints_limits_and_provisioning_time() -> None:
    made = {(o["kind"], o["metadata"]["name"]): o for o in karpenter.objects(description())}

    pool = made["NodePool", "l4"]["spec"]
    template = pool["template"]
    assert template["metadata"]["labels"][pool_desc.POOL_LABEL] == "l4"
    assert template["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    # Karpenter refuses template labels in its restricted domains: they become requirements
    assert not any(k.endswith("kubernetes.io/instance-type")
                   for k in template["metadata"]["labels"])
    assert {"key": "node.kubernetes.io/instance-type", "operator": "In",
            "values": ["g6.24xlarge"]} in template["spec"]["requirements"]
    assert template["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert pool["limits"] == {"nvidia.com/gpu": "16"}  # 4 nodes x 4
    assert made["KWOKNodeClass", "l4"]["spec"] == {"nodeRegistrationDelay": "10s"}
