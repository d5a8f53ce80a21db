"""Shared plumbing for the benchmarks that run on a sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from inferpool.sandbox import binaries, control
from inferpool.sandbox.operator_process import OperatorProcess, install_crds

T = TypeVar("T")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Cluster:
    name: str
    kubeconfig: Path
    kubectl_path: Path

    def kubectl(self, *args: str, input: str | None = None) -> str:
        done = subprocess.run([str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
                              input=input, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply(self, obj: dict[str, Any], namespace: str | None = None) -> None:
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump(obj))

    def sandbox(self, action: str, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "inferpool.cli", "sandbox", action, "--name",
                        self.name, *args], check=True, capture_output=True)


@contextmanager
def sandbox(name: str, pools: Path | None = None, keep: bool = False,
            autoscaler: str | None = None) -> Iterator[Cluster]:
    bins = binaries.ensure(say)
    state = control.up(name, pools, log=say, autoscaler=autoscaler)
    try:
        cluster = Cluster(name, Path(state.kubeconfig), bins["kubectl"])
        install_crds(cluster.kubectl_path, cluster.kubeconfig)
        yield cluster
    finally:
        if not keep:
            control.down(name, log=say)


@contextmanager
def operator(cluster: Cluster, log_dir: Path, *extra: str) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster.kubeconfig, log_dir, "bench", *extra).start()
    try:
        op.wait_leader(timeout=60)
        yield op
    finally:
        op.stop()


def plain_deployment(name: str, node_selector: dict[str, str], replicas: int, resource: str,
                     count: int, image: str = "stand-in") -> dict[str, Any]:
    """What users run today: one Deployment pinned to one node pool, tolerating the
    accelerator's taint (keyed like its resource)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "nodeSelector": node_selector,
                "tolerations": [{"key": resource, "operator": "Exists"}],
                "containers": [{"name": "server", "image": image, "resources": {
                    "limits": {resource: str(count)}}}]}},
        },
    }


def poll(fn: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T | None:
    """First truthy value of fn within `timeout`, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    return None


def ready_pods(cluster: Cluster, namespace: str, healthy_nodes: set[str]) -> int:
    pods = cluster.get("pods", "-n", namespace)["items"]
    return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")
               and p["spec"].get("nodeName") in healthy_nodes
               and any(c["type"] == "Ready" and c["status"] == "True"
                       for c in p["status"].get("conditions", [])))


def healthy_nodes(cluster: Cluster) -> set[str]:
    return {n["metadata"]["name"] for n in cluster.get("nodes")["items"]
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in n["status"].get("conditions", []))
            and not n["spec"].get("unschedulable")}
