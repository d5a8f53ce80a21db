"""The Service and the PodDisruptionBudget made for an InferencePool: one endpoint and one
eviction budget for the model across its variants."""

from __future__ import annotations

from typing import Any

from inferpool.k8s import disruption, services
from inferpool.k8s import labels as lbl


def template(*ports: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "server", "image": "x", "ports": list(ports)}]}}


def test_selects_the_operators_pods_of_every_variant_and_is_owned_by_the_pool() -> None:
    body = services.build("llama", "team-a", "uid-1", {"enabled": True},
                          template({"name": "http", "containerPort": 8000}))

    assert body is not None
    assert body["metadata"]["name"] == "llama"
    assert body["spec"]["selector"] == {lbl.POOL: "llama", lbl.MANAGED_BY: lbl.MANAGER}
    assert lbl.VARIANT not in body["spec"]["selector"]  # every variant, whichever vendor
    assert body["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]
    (owner,) = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "InferencePool", "llama", "uid-1", True)


def test_ports_come_from_the_spec_or_the_first_containers_first_port() -> None:
    unnamed = template({"containerPort": 8000})
    assert services.build("m", "ns", "u", {}, unnamed)["spec"]["ports"][0] == {  # type: ignore[index]
        "name": "http", "protocol": "TCP", "port": 8000, "targetPort": 8000}
    chosen = services.build("m", "ns", "u", {"port": 443, "targetPort": "https"}, unnamed)
    assert chosen is not None
    assert chosen["spec"]["ports"][0]["port"] == 443
    assert chosen["spec"]["ports"][0]["targetPort"] == "https"


def test_no_service_when_disabled_or_no_port_is_known() -> None:
    assert services.build("m", "ns", "u", {"enabled": False},
                          template({"containerPort": 8000})) is None
    assert services.build("m", "ns", "u", {}, template()) is None
    assert services.build("m", "ns", "u", {"targetPort": 9000}, template()) is not None


def test_the_disruption_budget_covers_every_variant_and_can_be_turned_off() -> None:
    body = disruption.build("llama", "team-a", "uid-1", {"enabled": True, "maxUnavailable": 2})
    assert body is not None
    assert body["spec"] == {
        "maxUnavailable": 2,
        "selector": {"matchLabels": {lbl.POOL: "llama", lbl.MANAGED_BY: lbl.MANAGER}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert disruption.build("llama", "team-a", "uid-1", {"enabled": False}) is None
