"""The pool description: the shipped default is realistic, bad input is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferpool.sandbox import control, pools
from inferpool.sandbox.errors import SandboxError


def test_default_description_has_every_family_with_real_strings() -> None:
    desc = pools.load()
    by_family = {p.family for p in desc.pools}
    assert by_family == {"nvidia", "tpu", "neuron"}
    h100 = desc.pool("h100").node_manifest(0)
    assert h100["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert h100["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100["metadata"]["labels"][pools.POOL_LABEL] == "h100"
    v6e = desc.pool("v6e").node_manifest(1)
    assert v6e["metadata"]["name"] == "v6e-1"
    assert v6e["metadata"]["labels"]["cloud.google.com/gke-tpu-topology"] == "2x4"
    assert v6e["spec"]["taints"] == [
        {"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"}]
    trn2 = desc.pool("trn2").node_manifest(0)
    assert trn2["status"]["allocatable"]["aws.amazon.com/neuron"] == "16"
    assert trn2["status"]["allocatable"]["aws.amazon.com/neuroncore"] == "128"
    assert trn2["spec"]["taints"] == [{"key": "aws.amazon.com/neuron", "effect": "NoSchedule"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pools: [{name: a, family: nvidia, nodes: 1, accelerators: 8, colour: red}]",
         "pools.0.colour: Extra inputs are not permitted"),
        ("pools: [{name: a, family: amd, nodes: 1, accelerators: 8}]", "pools.0.family"),
        ("pools: [{name: a, family: tpu, nodes: -1, accelerators: 8}]", "pools.0.nodes"),
        ("pools: [{name: A_B, family: tpu, nodes: 1, accelerators: 8}]", "pools.0.name"),
        ("pools: [{name: a, family: tpu, nodes: 1}]", "pools.0.accelerators: Field required"),
        ("pools: []", "pools: Tuple should have at least 1 item"),
        ("pools: [{name: a, family: tpu, nodes: 1, accelerators: 4},"
         " {name: a, family: tpu, nodes: 1, accelerators: 4}]", "duplicate pool names: a"),
        ("pools: [{name: a, family: tpu, nodes: 1, accelerators: 4,"
         " labels: {inferpool.dev/node-pool: x}}]", "set by the sandbox"),
        ("pools: [{name: a", "cannot read pool description"),
    ],
)
def test_bad_description_is_refused_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    with pytest.raises(SandboxError, match=r"pools\.yaml") as info:
        pools.load(path)
    assert message in str(info.value)


def test_down_of_a_sandbox_that_is_not_running_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERPOOL_STATE", str(tmp_path))
    said: list[str] = []
    assert control.down("nothing-here", log=said.append) is False
    assert said == ["sandbox 'nothing-here' is not running"]


def test_bad_sandbox_name_is_refused() -> None:
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        control.up("Not_Valid")
