"""What counts as drift of an owned Deployment, and what counts as ours (item 10)."""

from __future__ import annotations

import copy
from typing import Any

from inferpool.controller import handlers, views
from inferpool.controller.handlers import Caches
from inferpool.controller.translate import live_deployment, write_needed
from inferpool.k8s import deployments as dep

WORKLOAD = dep.Workload(pool="chat", namespace="ns", owner_uid="u1", variant="h100",
                        family="nvidia", accelerators=8,
                        template={"spec": {"containers": [{"name": "server", "image": "i"}]}})
DESIRED = dep.build(WORKLOAD, "h100", {"inferpool.dev/node-pool": "h100"}, 2)


def ours_fields() -> dict[str, Any]:
    """What our server-side apply owns (abridged)."""
    return {"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
        "f:metadata": {"f:labels": {"f:inferpool.dev/pool": {}}},
        "f:spec": {"f:containers": {'k:{"name":"server"}': {
            ".": {}, "f:image": {}, "f:name": {}, "f:resources": {"f:limits": {}}}},
            "f:nodeSelector": {}, "f:tolerations": {}}}}}


def managed(*others: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    entries = [{"manager": "inferpool-operator", "operation": "Apply", "fieldsV1": ours_fields()}]
    entries += [{"manager": m, "operation": "Update", "fieldsV1": f} for m, f in others]
    entries.append({"manager": "kube-controller-manager", "operation": "Update",
                    "subresource": "status", "fieldsV1": {"f:status": {"f:replicas": {}}}})
    return entries


HOST_NETWORK = {"f:spec": {"f:template": {"f:spec": {"f:hostNetwork": {}}}}}
ENV = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"server"}': {
    "f:env": {".": {}, 'k:{"name":"DEBUG"}': {".": {}, "f:name": {}, "f:value": {}}}}}}}}}


def live_body(spec_edit: dict[str, Any] | None = None, *fields: tuple[str, dict[str, Any]],
              generation: int = 3) -> dict[str, Any]:
    """`DESIRED` as the API server returns it, with server defaults, edits and managedFields."""
    body = copy.deepcopy(DESIRED)
    body["metadata"].update({"resourceVersion": "7", "generation": generation,
                             "managedFields": managed(*fields)})
    body["spec"]["revisionHistoryLimit"] = 10  # a server default: not drift
    body["spec"]["template"]["spec"].update(spec_edit or {})
    return body


def test_fields_another_manager_added_are_drift_defaults_and_status_are_not() -> None:
    assert dep.foreign_fields(managed()) == []
    assert dep.foreign_fields(managed(("kubectl-edit", HOST_NETWORK))) == [
        "f:spec.f:template.f:spec.f:hostNetwork"]
    env = dep.foreign_fields(managed(("kubectl-set", ENV)))
    assert 'f:spec.f:template.f:spec.f:containers.k:{"name":"server"}.f:env' in env
    # a field co-owned with the value we wrote is ours too
    assert dep.foreign_fields(managed(("helm", {"f:spec": {"f:replicas": {}}}))) == []
    # `kubectl rollout restart` is a deliberate restart
    restart = {"f:spec": {"f:template": {"f:metadata": {"f:annotations": {
        "f:kubectl.kubernetes.io/restartedAt": {}}}}}}
    assert dep.foreign_fields(managed(("kubectl-rollout", restart))) == []
    assert dep.foreign_fields(None) == []
    assert dep.foreign_fields([{"manager": 3}, "junk"]) == []  # bad input: no crash


def test_drift_outside_the_fields_we_set_is_replaced_not_kept() -> None:
    clean = live_deployment(views.deployment_view(live_body()))
    assert clean is not None
    assert write_needed(DESIRED, clean, None) is None
    with_env = copy.deepcopy(DESIRED["spec"]["template"]["spec"]["containers"])
    with_env[0]["env"] = [{"name": "DEBUG", "value": "1"}]
    for edit, fields in (({"hostNetwork": True}, HOST_NETWORK),
                         ({"containers": with_env}, ENV)):
        drifted = live_deployment(views.deployment_view(live_body(edit, ("kubectl-edit",
                                                                          fields))))
        assert drifted is not None
        # every field we set still matches: only the managed fields tell
        assert dep.matches(DESIRED["spec"], drifted.body["spec"])
        assert write_needed(DESIRED, drifted, None) == "replace"
        # once we wrote this generation ourselves it is what the server made of our spec
        assert write_needed(DESIRED, drifted, (3, dep.digest(DESIRED))) is None
        # ... as long as we still want what we wrote then
        moved = dep.build(WORKLOAD, "h100", {"inferpool.dev/node-pool": "h100", "x": "y"}, 2)
        assert write_needed(moved, drifted, (3, dep.digest(DESIRED))) == "replace"
    # a field we set edited by hand: an apply takes it back
    scaled = live_deployment(views.deployment_view(live_body()))
    assert scaled is not None
    edited = {**scaled.body, "spec": {**scaled.body["spec"], "replicas": 5}}
    assert write_needed(DESIRED, live_deployment(edited), None) == "apply"  # type: ignore[arg-type]


def test_a_removed_label_is_put_back_and_the_replacement_keeps_annotations() -> None:
    body = live_body()
    del body["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    body["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "4"}
    found = live_deployment(views.deployment_view(body))
    assert found is not None
    assert write_needed(DESIRED, found, (3, dep.digest(DESIRED))) == "apply"  # even as written
    put = dep.replacement(DESIRED, body)
    assert put["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "inferpool"
    assert put["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    assert put["metadata"]["resourceVersion"] == "7"
    assert "hostNetwork" not in put["spec"]["template"]["spec"]


def test_a_field_we_stopped_setting_is_a_difference() -> None:
    """A node selector label dropped (a node pool adopted by an AcceleratorPool with a shorter
    selector): every field still desired matches, the digest annotation does not."""
    wider = dep.build(WORKLOAD, "h100", {"inferpool.dev/node-pool": "h100",
                                         "karpenter.sh/capacity-type": "on-demand"}, 2)
    found = live_deployment(views.deployment_view({**wider, "metadata": {
        **wider["metadata"], "generation": 3, "managedFields": managed()}}))
    assert found is not None
    assert dep.matches(DESIRED["spec"], found.body["spec"])
    assert write_needed(DESIRED, found, None) == "apply"
    assert write_needed(wider, found, None) is None


def test_ours_is_told_by_the_owner_reference_not_by_labels() -> None:
    body = live_body()
    body["metadata"]["labels"] = {}  # every label removed by hand
    assert dep.is_owned(body)
    found = live_deployment(body)  # the key comes from the immutable selector
    assert found is not None
    assert found.key == ("ns/chat", "h100", "h100")
    foreign = copy.deepcopy(body)
    foreign["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                               "name": "x", "uid": "u", "controller": True}]
    assert not dep.is_owned(foreign)
    assert not dep.is_owned({"metadata": {"labels": {"app.kubernetes.io/managed-by":
                                                     "inferpool"}}})


class Waker:
    def __init__(self) -> None:
        self.woken: list[str] = []

    def attach(self, indexes: Any) -> None:
        pass

    def wake(self, reason: str) -> None:
        self.woken.append(reason)


def test_a_deployment_stays_cached_without_its_label_and_its_deletion_is_seen() -> None:
    caches, planner = Caches(), Waker()
    body = live_body()
    handlers.observe(caches, planner, "deployments", {"type": "ADDED"}, body)
    unlabelled = copy.deepcopy(body)
    unlabelled["metadata"]["labels"] = {}
    handlers.observe(caches, planner, "deployments", {"type": "MODIFIED"}, unlabelled)
    assert "ns/chat-h100-h100" in caches.views["deployments"]
    handlers.observe(caches, planner, "deployments", {"type": "DELETED"}, unlabelled)
    assert caches.views["deployments"] == {}  # the planner sees it gone and recreates it
    # somebody else's Deployment is never cached; one disowned by hand leaves the cache
    other = copy.deepcopy(body)
    other["metadata"]["ownerReferences"] = []
    handlers.observe(caches, planner, "deployments", {"type": "ADDED"}, body)
    handlers.observe(caches, planner, "deployments", {"type": "MODIFIED"}, other)
    assert caches.views["deployments"] == {}
    assert planner.woken[-1] == "deployments disowned"
