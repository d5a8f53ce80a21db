"""Simulated nodes: create them from the pool description, and inject faults into them.

A node's "kubelet" is kwok, which only manages nodes annotated `kwok.x-k8s.io/node=fake`. Failing
a node makes kwok forget it: the Node object is replaced at once by a copy without that
annotation (kwok renews a node's lease until it sees the node deleted). Heartbeats and lease
renewals stop exactly as when a kubelet dies; the pods stay bound to it, and the node lifecycle
controller marks the node Unknown after its grace period and taints it unreachable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from inferpool.sandbox import pools as pool_desc
from inferpool.sandbox.errors import SandboxError
from inferpool.sandbox.state import SandboxState

Log = Callable[[str], None]
FAILED_ANNOTATION = "sandbox.inferpool.dev/failed"


def core_api(state: SandboxState) -> client.CoreV1Api:
    api_client = config.new_client_from_config(config_file=state.kubeconfig)
    api_client.configuration.connection_pool_maxsize = 16
    return client.CoreV1Api(api_client)


def create_pools(state: SandboxState, description: pool_desc.PoolsFile, log: Log,
                 timeout: float | None = None) -> None:
    """Create every node and wait until all are Ready: 120 s, plus 0.1 s a node beyond 500
    (kwok makes a few dozen nodes Ready a second on a busy 2-core machine)."""
    api = core_api(state)
    manifests = [pool.node_manifest(i) for pool in description.pools for i in range(pool.nodes)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda body: _create_node(api, body), manifests))
    names = {m["metadata"]["name"] for m in manifests}
    if timeout is None:
        timeout = 120.0 + 0.1 * max(0, len(names) - 500)
    # listing thousands of nodes takes a while: poll less often the more there are
    _wait(lambda: names <= _ready_node_names(api), timeout,
          f"{len(names)} simulated nodes to become Ready",
          interval=min(2.0, 0.25 + len(names) / 2000))
    # Pods need the namespace's default ServiceAccount, made by the controller-manager.
    _wait(lambda: _has_default_sa(api), 60, "the default ServiceAccount")
    log(f"{len(names)} simulated nodes Ready")


def _create_node(api: client.CoreV1Api, body: dict[str, Any]) -> None:
    try:
        api.create_node(body, _preload_content=False)  # the reply is not needed
    except ApiException as exc:
        if exc.status != 409:
            raise


def _ready_node_names(api: client.CoreV1Api) -> set[str]:
    # plain JSON: the client's model objects take seconds for thousands of nodes
    nodes = json.loads(api.list_node(_preload_content=False).data)["items"]
    return {node["metadata"]["name"] for node in nodes
            if any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (node.get("status") or {}).get("conditions") or [])}


def _has_default_sa(api: client.CoreV1Api) -> bool:
    try:
        api.read_namespaced_service_account("default", "default")
    except ApiException:
        return False
    return True


def _wait(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise SandboxError(f"timed out after {timeout:.0f} s waiting for {what}")


def resolve(state: SandboxState, node_names: Iterable[str], pool: str | None) -> list[str]:
    """Node names to act on: the given ones, or every node of a pool in the description."""
    names = list(node_names)
    if pool is not None:
        names += pool_desc.load(state.path / "pools.yaml").pool(pool).node_names()
    if not names:
        raise SandboxError("name one or more nodes, or a pool with --pool")
    return names


def fail(state: SandboxState, names: list[str]) -> None:
    """Stop the simulated kubelet of each node (heartbeats and lease renewals stop)."""
    api = core_api(state)
    for name in names:
        _replace(api, name, {pool_desc.KWOK_ANNOTATION: None, FAILED_ANNOTATION: "true"})


def _replace(api: client.CoreV1Api, name: str, annotations: dict[str, str | None]) -> None:
    """Delete a node and create it again at once with changed annotations, keeping its labels,
    taints and status. kwok reacts to the deletion and creation (not to an annotation edit), and
    pods bound to the node survive: the pod garbage collector waits before removing pods of a
    missing node, and by then the node exists again."""
    try:
        node = api.read_node(name)
    except ApiException as exc:
        if exc.status == 404:
            raise SandboxError(f"no node {name!r} in the sandbox") from exc
        raise
    merged = {**(node.metadata.annotations or {}), **annotations}
    body = api.api_client.sanitize_for_serialization(client.V1Node(
        metadata=client.V1ObjectMeta(
            name=name, labels=node.metadata.labels,
            annotations={k: v for k, v in merged.items() if v is not None}),
        spec=client.V1NodeSpec(taints=node.spec.taints, unschedulable=node.spec.unschedulable),
        status=node.status))
    api.delete_node(name)
    _create_node(api, body)


STOCKOUT_TAINT = {"key": "sandbox.inferpool.dev/stockout", "value": "true",
                  "effect": "NoSchedule"}  # older sandboxes' stockout; recover removes it
STOCKOUT_ANNOTATION = "sandbox.inferpool.dev/stockout"


def stockout(state: SandboxState, names: list[str]) -> None:
    """New pods no longer fit, though the nodes look healthy and free: what the operator sees
    when a pool's capacity is not really there. The nodes' allocatable pod count drops to 0,
    which the scheduler enforces and the operator does not model (it checks accelerators, CPU,
    memory and taints, so a taint would no longer simulate an unseen stockout)."""
    api = core_api(state)
    for name in names:
        _patch(api, name, {"metadata": {"annotations": {STOCKOUT_ANNOTATION: "true"}}})
        _patch(api, name, {"status": {"allocatable": {"pods": "0"}}}, status=True)


def _clean(taints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in t.items() if v is not None} for t in taints]


def cordon(state: SandboxState, names: list[str]) -> None:
    api = core_api(state)
    for name in names:
        _patch(api, name, {"spec": {"unschedulable": True}})


def delete(state: SandboxState, names: list[str]) -> None:
    """Remove the Node objects, as when spot capacity is reclaimed."""
    api = core_api(state)
    for name in names:
        try:
            api.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def recover(state: SandboxState, names: list[str]) -> None:
    """Undo fail, cordon, stockout and delete: the node exists, is managed by kwok, is
    schedulable and takes new pods."""
    api = core_api(state)
    description = pool_desc.load(state.path / "pools.yaml")
    by_name = {
        f"{p.name}-{i}": (p, i) for p in description.pools for i in range(p.nodes)
    }
    for name in names:
        try:
            node = api.read_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            if name not in by_name:
                raise SandboxError(
                    f"node {name!r} is not in the sandbox's pool description") from exc
            pool, index = by_name[name]
            _create_node(api, pool.node_manifest(index))
            continue
        if node.spec.unschedulable:
            _patch(api, name, {"spec": {"unschedulable": None}})
        taints = [t.to_dict() for t in node.spec.taints or []]
        if any(t["key"] == STOCKOUT_TAINT["key"] for t in taints):
            _patch(api, name, {"spec": {"taints": _clean(
                [t for t in taints if t["key"] != STOCKOUT_TAINT["key"]])}})
        if (node.metadata.annotations or {}).get(STOCKOUT_ANNOTATION) == "true" \
                and name in by_name:
            pods = str(by_name[name][0].pods)
            _patch(api, name, {"status": {"allocatable": {"pods": pods}}}, status=True)
            _patch(api, name, {"metadata": {"annotations": {STOCKOUT_ANNOTATION: None}}})
        if (node.metadata.annotations or {}).get(FAILED_ANNOTATION) == "true":
            _replace(api, name, {pool_desc.KWOK_ANNOTATION: "fake", FAILED_ANNOTATION: None})


def _patch(api: client.CoreV1Api, name: str, body: dict[str, Any], status: bool = False
           ) -> None:
    try:
        (api.patch_node_status if status else api.patch_node)(name, body)
    except ApiException as exc:
        if exc.status == 404:
            raise SandboxError(f"no node {name!r} in the sandbox") from exc
        raise
