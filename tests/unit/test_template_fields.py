"""Fields of the pod template the operator sets itself: each is refused in the template or
merged by the rule docs/api.md states ("Fields the operator sets")."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from inferpool.api.security import PodTemplate
from inferpool.k8s import deployments as dep
from inferpool.k8s import labels as lbl

SHORT = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def built(spec: dict[str, Any], metadata: dict[str, Any] | None = None,
          family: str = "nvidia", count: int = 2) -> dict[str, Any]:
    template = PodTemplate.model_validate({"metadata": metadata or {}, "spec": spec}).to_dict()
    workload = dep.Workload(pool="p", namespace="ns", owner_uid="u", variant="h100",
                            family=family, accelerators=count, template=template)
    body = dep.build(workload, "pool-a", {lbl.NODE_POOL: "pool-a", "zone": "z1"}, 1,
                     toleration_seconds=30)
    pod: dict[str, Any] = body["spec"]["template"]
    return pod


def server(**extra: Any) -> dict[str, Any]:
    return {"name": "server", "image": "vllm:1", **extra}


def test_node_selector_template_keys_kept_ours_win_on_the_same_key() -> None:
    pod = built({"containers": [server()],
                 "nodeSelector": {"kubernetes.io/os": "linux", lbl.NODE_POOL: "elsewhere"}})
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux",
                                           lbl.NODE_POOL: "pool-a", "zone": "z1"}


def test_tolerations_ours_replace_the_templates_for_the_node_failure_taints() -> None:
    mine = {"key": "team/dedicated", "operator": "Exists", "effect": "NoSchedule"}
    forever = {"key": SHORT[0], "operator": "Exists", "effect": "NoExecute"}  # no seconds
    pod = built({"containers": [server()], "tolerations": [mine, forever]})
    tolerations = pod["spec"]["tolerations"]
    assert mine in tolerations
    assert forever not in tolerations
    for key in SHORT:
        assert {"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 30} in tolerations
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_the_accelerator_taint_toleration_is_added_unless_the_template_has_one() -> None:
    own = {"key": "google.com/tpu", "operator": "Equal", "value": "present",
           "effect": "NoSchedule"}
    tolerations = built({"containers": [server()], "tolerations": [own]}, family="tpu")[
        "spec"]["tolerations"]
    assert [t for t in tolerations if t["key"] == "google.com/tpu"] == [own]


def test_keyless_toleration_is_refused() -> None:
    with pytest.raises(ValidationError, match="must name a taint key"):
        built({"containers": [server()], "tolerations": [{"operator": "Exists"}]})


def test_first_containers_accelerators_come_from_the_count() -> None:
    pod = built({"containers": [server(resources={
        "limits": {"nvidia.com/gpu": 8, "memory": "1Gi"}, "requests": {"cpu": "1"}})]})
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"nvidia.com/gpu": "2", "memory": "1Gi"},
                         "requests": {"cpu": "1", "nvidia.com/gpu": "2"}}


@pytest.mark.parametrize("where", ["containers", "initContainers"])
@pytest.mark.parametrize("resource", ["nvidia.com/gpu", "google.com/tpu",
                                      "aws.amazon.com/neuron"])
def test_accelerators_in_another_container_are_refused(where: str, resource: str) -> None:
    sidecar = {"name": "sidecar", "image": "s:1", "resources": {"requests": {resource: "1"}}}
    spec: dict[str, Any] = {"containers": [server()]}
    spec[where] = [*spec.get(where, []), sidecar]
    with pytest.raises(ValidationError, match=f"container sidecar: {resource}"):
        built(spec)


def test_our_labels_win_and_the_reserved_prefix_is_refused() -> None:
    pod = built({"containers": [server()]},
                {"labels": {"app": "llm", lbl.MANAGED_BY: "someone-else"}})
    assert pod["metadata"]["labels"][lbl.MANAGED_BY] == lbl.MANAGER
    assert pod["metadata"]["labels"]["app"] == "llm"
    with pytest.raises(ValidationError, match="set by the operator"):
        built({"containers": [server()]}, {"labels": {lbl.POOL: "other-pool"}})
