"""Karpenter in the sandbox: `inferpool sandbox up --autoscaler karpenter`.

The autoscaler is Karpenter's own controller with its KWOK cloud provider (the `kwok/` main
package of `sigs.k8s.io/karpenter`, built from the Go module like the other binaries), with the
CRDs from that same module. Each pool of the sandbox description that has an `elastic` block
becomes:

- an instance type in Karpenter's instance-types file: the pool's node shape (CPU, memory,
  accelerators and extra resources) with one offering (zone, capacity type, price per node-hour);
- a `KWOKNodeClass` named after the pool, whose `nodeRegistrationDelay` is the pool's
  provisioning time (a launched node registers only after it);
- a `NodePool` named after the pool that asks for that instance type, puts the pool's labels and
  taints on its nodes and may grow to `maxNodes` (as a `spec.limits` on the accelerator).

Karpenter creates the Node objects itself; they carry the annotation the sandbox's kwok manages,
so they turn Ready and run pods like the static ones.

Stockout: Karpenter's KWOK provider marks every offering of the instance-types file available, so
an offering is made unavailable by restarting Karpenter with the pool's instance type left out of
the file (`inferpool sandbox offering unavailable POOL`). Pending pods that only that pool fits
then get Karpenter's `FailedScheduling` Events ("no instance type") and no node is launched, as
when a cloud's capacity is exhausted and Karpenter has the offering cached as unavailable.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from inferpool.sandbox import binaries, processes, versions
from inferpool.sandbox import pools as pool_desc
from inferpool.sandbox.errors import SandboxError
from inferpool.sandbox.state import SandboxState

Log = Callable[[str], None]
BINARY = "karpenter-kwok"
INSTANCE_TYPES_FILE = "karpenter-instance-types.json"
UNAVAILABLE_FILE = "karpenter-unavailable.json"
CRD_FILES = (
    "kwok/charts/crds/karpenter.sh_nodepools.yaml",
    "kwok/charts/crds/karpenter.sh_nodeclaims.yaml",
    "kwok/charts/crds/karpenter.sh_nodeoverlays.yaml",
    "kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml",
)
NODE_CLASS_GROUP = "karpenter.kwok.sh"
# Karpenter refuses NodePool template labels in these domains; the sandbox moves the well-known
# ones into requirements and leaves the rest to Karpenter, which sets them itself.
RESTRICTED_DOMAINS = ("kubernetes.io", "k8s.io", "karpenter.sh")
ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
START_TIMEOUT_S = 90.0


def elastic_pools(description: pool_desc.PoolsFile) -> list[pool_desc.PoolSpec]:
    return [pool for pool in description.pools if pool.elastic is not None]


def instance_type_name(pool: pool_desc.PoolSpec) -> str:
    return pool.labels.get(INSTANCE_TYPE_LABEL, f"{pool.name}.node")


def price_per_node_hour(pool: pool_desc.PoolSpec) -> float:
    """The pool's own figure, or what the operator would price such a node at (its discovery
    from the node's labels, times the accelerators on it)."""
    assert pool.elastic is not None
    if pool.elastic.price_per_node_hour is not None:
        return pool.elastic.price_per_node_hour
    from inferpool.cluster.discovery import build_snapshot

    snapshot = build_snapshot([pool.node_manifest(0)])
    return round(snapshot.pools[0].price_per_accelerator_hour * pool.accelerators, 4)


def instance_types(description: pool_desc.PoolsFile, unavailable: Iterable[str] = ()
                   ) -> list[dict[str, Any]]:
    """Karpenter's KWOK instance-types file: one type per elastic pool, except those whose
    offering is unavailable."""
    skip = set(unavailable)
    return [{
        "name": instance_type_name(pool),
        "offerings": [{
            "Price": price_per_node_hour(pool),
            "Available": True,
            "Requirements": [
                {"key": CAPACITY_TYPE_LABEL, "operator": "In",
                 "values": [pool.elastic.capacity_type]},
                {"key": ZONE_LABEL, "operator": "In", "values": [pool.elastic.zone]},
            ],
        }],
        "architecture": "amd64",
        "operatingSystems": ["linux"],
        "resources": pool.capacity(),
    } for pool in elastic_pools(description) if pool.elastic and pool.name not in skip]


def objects(description: pool_desc.PoolsFile) -> list[dict[str, Any]]:
    """A KWOKNodeClass and a NodePool per elastic pool."""
    made: list[dict[str, Any]] = []
    for pool in elastic_pools(description):
        assert pool.elastic is not None
        delay = f"{pool.elastic.provisioning_seconds:g}s"
        made.append({
            "apiVersion": f"{NODE_CLASS_GROUP}/v1alpha1", "kind": "KWOKNodeClass",
            "metadata": {"name": pool.name}, "spec": {"nodeRegistrationDelay": delay},
        })
        labels = {k: v for k, v in pool.labels.items() if not _restricted(k)}
        resource = pool_desc.RESOURCE[pool.family]
        made.append({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": pool.name},
            "spec": {
                "template": {
                    "metadata": {"labels": {**labels, pool_desc.POOL_LABEL: pool.name}},
                    "spec": {
                        "requirements": [
                            {"key": INSTANCE_TYPE_LABEL, "operator": "In",
                             "values": [instance_type_name(pool)]},
                            {"key": CAPACITY_TYPE_LABEL, "operator": "In",
                             "values": [pool.elastic.capacity_type]},
                            {"key": ZONE_LABEL, "operator": "In", "values": [pool.elastic.zone]},
                        ],
                        "taints": pool.taint_list(),
                        "nodeClassRef": {"group": NODE_CLASS_GROUP, "kind": "KWOKNodeClass",
                                         "name": pool.name},
                        "expireAfter": "Never",
                    },
                },
                "limits": {resource: str(pool.elastic.max_nodes * pool.accelerators)},
                "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                               "consolidateAfter": "30s"},
            },
        })
    return made


def _restricted(key: str) -> bool:
    domain = key.split("/", 1)[0] if "/" in key else ""
    return any(domain == d or domain.endswith("." + d) for d in RESTRICTED_DOMAINS)


# -- the binary and the module ---------------------------------------------------------------

def binary(log: Log = print) -> Path:
    """Karpenter's KWOK controller, built once into the cache (several minutes)."""
    path = binaries.cache_root() / "bin" / f"karpenter-v{versions.KARPENTER}" / BINARY
    if path.is_file():
        return path
    work = _workdir()
    log(f"building Karpenter v{versions.KARPENTER} (its KWOK provider) into {path.parent} "
        "(first time only; takes several minutes)")
    started = time.monotonic()
    (work / "go.mod").write_text(f"module inferpool.dev/sandbox/{BINARY}\n\ngo 1.26\n")
    package = f"sigs.k8s.io/karpenter/kwok@v{versions.KARPENTER}"
    binaries.go(["get", package], work, log, toolchain=versions.KARPENTER_GO)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    binaries.go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial),
                 "sigs.k8s.io/karpenter/kwok"], work, log, toolchain=versions.KARPENTER_GO)
    partial.replace(path)
    log(f"built {BINARY} in {time.monotonic() - started:.0f} s")
    return path


def _workdir() -> Path:
    path = binaries.cache_root() / "build" / f"karpenter-v{versions.KARPENTER}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def crds(log: Log = print) -> list[dict[str, Any]]:
    """Karpenter's CRDs, read from the same module version the binary is built from."""
    out = binaries.go(["mod", "download", "-json", f"sigs.k8s.io/karpenter@v{versions.KARPENTER}"],
                      _workdir(), log, toolchain=versions.KARPENTER_GO)
    root = Path(json.loads(out)["Dir"])
    return [yaml.safe_load((root / rel).read_text()) for rel in CRD_FILES]


# -- running it ------------------------------------------------------------------------------

def start(state: SandboxState, description: pool_desc.PoolsFile, log: Log = print) -> None:
    """Install the CRDs, start Karpenter, and create the NodePools (with Ready node classes)."""
    path = binary(log)
    kubectl = binaries.ensure(lambda _m: None)["kubectl"]
    _kubectl(kubectl, state, ["apply", "--server-side", "-f", "-"], _stream(crds(log)))
    _kubectl(kubectl, state, ["wait", "--for=condition=Established", "--timeout=60s",
                              *(f"crd/{c}" for c in ("nodepools.karpenter.sh",
                                                     "nodeclaims.karpenter.sh",
                                                     "kwoknodeclasses.karpenter.kwok.sh"))])
    _write_instance_types(state, description)
    _launch(state, path)
    made = objects(description)
    _kubectl(kubectl, state, ["apply", "--server-side", "-f", "-"], _stream(made))
    # Nothing in the KWOK provider sets a node class Ready, and Karpenter launches no node for a
    # NodePool whose class is not Ready.
    for obj in made:
        if obj["kind"] == "KWOKNodeClass":
            _kubectl(kubectl, state, [
                "patch", f"kwoknodeclasses.{NODE_CLASS_GROUP}/{obj['metadata']['name']}",
                "--subresource=status", "--type=merge", "-p", json.dumps(_ready_status())])
    log(f"Karpenter v{versions.KARPENTER} runs with {len(made) // 2} NodePools")


def set_available(state: SandboxState, pool: str, available: bool, log: Log = print) -> None:
    """Make the pool's offering unavailable (or available again): Karpenter restarts with the
    instance-types file without (with) it."""
    description = pool_desc.load(Path(state.pools_file))
    if pool not in {p.name for p in elastic_pools(description)}:
        raise SandboxError(f"{pool!r} is not an elastic pool of this sandbox; elastic: "
                           f"{', '.join(p.name for p in elastic_pools(description)) or 'none'}")
    unavailable = set(_unavailable(state))
    (unavailable.discard if available else unavailable.add)(pool)
    (state.path / UNAVAILABLE_FILE).write_text(json.dumps(sorted(unavailable)))
    if BINARY in state.pids:
        processes.stop(state.pids[BINARY], BINARY)
    _write_instance_types(state, description)
    _launch(state, binary(log))
    log(f"offering of {pool} is {'available' if available else 'unavailable'}")


def _unavailable(state: SandboxState) -> list[str]:
    path = state.path / UNAVAILABLE_FILE
    return list(json.loads(path.read_text())) if path.is_file() else []


def _write_instance_types(state: SandboxState, description: pool_desc.PoolsFile) -> None:
    types = instance_types(description, _unavailable(state))
    (state.path / INSTANCE_TYPES_FILE).write_text(json.dumps(types, indent=2))


def _launch(state: SandboxState, path: Path) -> None:
    metrics, health = processes.free_port(), processes.free_port()
    state.ports[BINARY] = metrics
    env = {
        "KUBECONFIG": state.kubeconfig, "SYSTEM_NAMESPACE": "kube-system",
        "DISABLE_LEADER_ELECTION": "true", "METRICS_PORT": str(metrics),
        "HEALTH_PROBE_PORT": str(health), "LOG_LEVEL": "info",
        "INSTANCE_TYPES_FILE_PATH": str(state.path / INSTANCE_TYPES_FILE),
        # Karpenter sizes its work queues from these; the chart passes the pod's own.
        "CPU_REQUESTS": "1000", "MEMORY_LIMIT": str(2 * 2**30),
    }
    state.pids[BINARY] = processes.start(path, [], state.log_dir / f"{BINARY}.log", env=env)
    state.save()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not processes.is_ours(state.pids[BINARY], BINARY):
            break
        if _healthy(health):
            return
        time.sleep(0.5)
    tail = (state.log_dir / f"{BINARY}.log").read_text(errors="replace").splitlines()[-15:]
    raise SandboxError("Karpenter did not become healthy; its log ends:\n" + "\n".join(tail))


def _healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _ready_status() -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "Ready", "message": "",
        "lastTransitionTime": now, "observedGeneration": 1}]}}


def _stream(docs: Iterable[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def _kubectl(kubectl: Path, state: SandboxState, args: list[str], stdin: str | None = None
             ) -> str:
    done = subprocess.run([str(kubectl), f"--kubeconfig={state.kubeconfig}", *args],
                          input=stdin, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise SandboxError(f"kubectl {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout

