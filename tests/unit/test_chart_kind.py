"""kind-config.yaml and the kind quickstart in docs/install.md use the real vendor strings (the
same as the sandbox's simulated pools), and the quickstart's objects and flags are valid."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from inferpool.api import InferencePool
from inferpool.sandbox import pools
from tests.unit.test_chart_helm import CHART, RELEASE, REPO, helm

KIND = yaml.safe_load((REPO / "kind-config.yaml").read_text())
INSTALL_DOC = (REPO / "docs" / "install.md").read_text()


def _sandbox_pools() -> dict[str, pools.PoolSpec]:
    path = REPO / "operator" / "inferpool" / "sandbox" / "default-pools.yaml"
    return {p.name: p for p in pools.PoolsFile.model_validate(
        yaml.safe_load(path.read_text())).pools}


def _workers() -> list[dict[str, Any]]:
    return [n for n in KIND["nodes"] if n["role"] == "worker"]


def _taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    taints: list[dict[str, Any]] = []
    for patch in node.get("kubeadmConfigPatches", []):
        body = yaml.safe_load(patch)
        assert body["kind"] == "JoinConfiguration"
        taints += body["nodeRegistration"]["taints"]
    return taints


def test_one_control_plane_and_a_worker_per_vendor() -> None:
    assert KIND["kind"] == "Cluster"
    assert [n["role"] for n in KIND["nodes"]].count("control-plane") == 1
    families = {_sandbox_pools()[n["labels"][pools.POOL_LABEL]].family
                for n in _workers() if pools.POOL_LABEL in n.get("labels", {})}
    assert families == {"nvidia", "tpu", "neuron"}


def test_a_plain_worker_for_the_operator() -> None:
    plain = [n for n in _workers() if not _taints(n)
             and pools.POOL_LABEL not in n.get("labels", {})]
    assert plain, "every worker is an accelerator node: the operator pod could not schedule"


@pytest.mark.parametrize("node", [n for n in _workers() if pools.POOL_LABEL in n.get("labels", {})],
                         ids=lambda n: n["labels"][pools.POOL_LABEL])
def test_accelerator_workers_carry_the_real_labels_and_taints(node: dict[str, Any]) -> None:
    spec = _sandbox_pools()[node["labels"][pools.POOL_LABEL]]
    assert spec.labels.items() <= node["labels"].items()
    assert _taints(node) == pools.DEFAULT_TAINTS[spec.family]
    # kubelets may only set these kubernetes.io labels on themselves (NodeRestriction)
    for key in node["labels"]:
        if "kubernetes.io/" in key:
            assert key.startswith("node.kubernetes.io/"), key


def test_quickstart_advertises_each_pools_accelerators() -> None:
    for node in _workers():
        name = node.get("labels", {}).get(pools.POOL_LABEL)
        if name is None:
            continue
        spec = _sandbox_pools()[name]
        wanted = {pools.RESOURCE[spec.family]: str(spec.accelerators), **spec.extra_resources}
        line = re.search(rf"^advertise {name} +(.*)$", INSTALL_DOC, re.M)
        assert line, f"docs/install.md does not advertise the {name} pool"
        got = dict(item.split("=") for item in line.group(1).split())
        assert got == wanted


def _fenced_after(marker: str) -> str:
    start = INSTALL_DOC.index(marker)
    match = re.search(r"```sh\n(.*?)```", INSTALL_DOC[start:], re.S)
    assert match
    return match.group(1)


def test_quickstart_inference_pool_is_valid() -> None:
    block = _fenced_after("**5. Describe the node pools")
    manifest = block.split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    body = yaml.safe_load(manifest)
    pool = InferencePool.model_validate({**body, "metadata": {**body["metadata"],
                                                              "namespace": "serving"}})
    families = {v.accelerator.family.value for v in pool.spec.variants}
    assert families == {"nvidia", "tpu", "neuron"}


def test_quickstart_helm_flags_are_chart_values() -> None:
    block = _fenced_after("**4. Install the chart**")
    flags = re.findall(r"--set (\S+)", block)
    assert flags
    args = [a for flag in flags for a in ("--set", flag)]
    helm("template", RELEASE, str(CHART), *args)
