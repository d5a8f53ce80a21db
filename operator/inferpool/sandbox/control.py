"""`inferpool sandbox up | down | status`: a real control plane with simulated accelerator nodes.

etcd, kube-apiserver (RBAC, TLS, service-account tokens, an audit log of ServiceAccount
requests: sandbox/audit.py), kube-controller-manager (short node monitor grace period),
kube-scheduler and kwok run as local processes; KWOK fakes the kubelets of
nodes made from a pool description. Each sandbox lives in its own folder with its own ports, so
several can run at once.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferpool.sandbox import audit, binaries, kubeconfig, pki, processes
from inferpool.sandbox import pools as pool_desc
from inferpool.sandbox.errors import SandboxError
from inferpool.sandbox.state import SandboxState, load_state, sandbox_dir

Log = Callable[[str], None]

NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
NODE_MONITOR_GRACE_SECONDS = 10
# kwok renews node leases every lease-duration/4: 8 s leases keep renewals well inside the
# 10 s grace period while a stopped heartbeat is still noticed within it.
NODE_LEASE_SECONDS = 8
# Beyond about this many lease renewals a second a 2-core machine falls behind while pods churn,
# and healthy nodes flap NotReady (their pods then stay NotReady under kwok). Larger sandboxes
# get proportionally longer leases and grace period, in the same 8:10 ratio.
MAX_LEASE_RENEWALS_PER_SECOND = 100
# kwok's default of 4 lease workers stalls renewals as soon as API calls slow down.
KWOK_LEASE_PARALLELISM = 16
# Start order; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def node_timing(nodes: int) -> tuple[int, int]:
    """(node lease seconds, node monitor grace seconds) for a sandbox of `nodes` nodes."""
    lease = max(NODE_LEASE_SECONDS, math.ceil(4 * nodes / MAX_LEASE_RENEWALS_PER_SECOND))
    return lease, max(NODE_MONITOR_GRACE_SECONDS, math.ceil(lease * 1.25))


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise SandboxError(f"invalid sandbox name {name!r}: use lower-case letters, digits and "
                           "'-' (at most 32 characters)")


AUTOSCALERS = ("karpenter",)


def up(name: str = "default", pools_file: Path | None = None, log: Log = print,
       autoscaler: str | None = None) -> SandboxState:
    """Start a sandbox (building binaries on first use) and create its simulated node pools;
    with `autoscaler="karpenter"`, also Karpenter, which grows the elastic pools (the built-in
    description for it starts them at zero nodes)."""
    if autoscaler is not None and autoscaler not in AUTOSCALERS:
        raise SandboxError(f"unknown autoscaler {autoscaler!r}; known: {', '.join(AUTOSCALERS)}")
    _check_name(name)
    existing = load_state(name)
    if existing is not None:
        if all(existing.alive().values()):
            raise AlreadyRunningError(existing)
        log(f"sandbox {name!r} has stale state (some processes died); starting it afresh")
        down(name, log=lambda _msg: None)
    if pools_file is None and autoscaler == "karpenter":
        pools_file = pool_desc.KARPENTER_POOLS
    description = pool_desc.load(pools_file)  # refuse a bad description before starting anything
    bins = binaries.ensure(log)
    stages = binaries.kwok_stages(log)
    started = time.monotonic()
    directory = sandbox_dir(name)
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "logs").mkdir(parents=True)
    pools_copy = directory / "pools.yaml"
    pools_copy.write_text(pools_file.read_text() if pools_file else pool_desc.default_text())

    ports = {c: processes.free_port() for c in (*COMPONENTS, "etcd-peer")}
    server = f"https://127.0.0.1:{ports['kube-apiserver']}"
    state = SandboxState(
        name=name, directory=str(directory), kubeconfig=str(directory / "kubeconfig"),
        server=server, pools_file=str(pools_copy), ports=ports, started_at=time.time(),
    )
    try:
        _start_all(state, bins, stages, sum(p.nodes for p in description.pools), log)
        state.save()
        from inferpool.sandbox import nodes  # lazily: the Kubernetes client is slow to import

        nodes.create_pools(state, description, log)
        if autoscaler == "karpenter":
            from inferpool.sandbox import karpenter

            karpenter.start(state, description, log)
    except BaseException:
        log(f"start-up of sandbox {name!r} failed; logs are in {directory / 'logs'}")
        _stop_all(state)
        raise
    log(f"sandbox {name!r} is up in {time.monotonic() - started:.1f} s "
        f"({sum(p.nodes for p in description.pools)} nodes in {len(description.pools)} pools)")
    return state


class AlreadyRunningError(SandboxError):
    def __init__(self, state: SandboxState) -> None:
        super().__init__(f"sandbox {state.name!r} already runs; kubeconfig: {state.kubeconfig}")
        self.state = state


def _start_all(state: SandboxState, bins: dict[str, Path], stages: Path, node_count: int,
               log: Log) -> None:
    d, p = state.path, state.ports
    lease_seconds, grace_seconds = node_timing(node_count)
    pki_dir = d / "pki"
    pki.create(pki_dir)
    etcd_url = f"http://127.0.0.1:{p['etcd']}"
    peer_url = f"http://127.0.0.1:{p['etcd-peer']}"

    def launch(component: str, args: list[str]) -> None:
        state.pids[component] = processes.start(bins[component], args,
                                                d / "logs" / f"{component}.log")
        state.save()  # so that `down` can stop what started even if start-up fails later

    launch("etcd", [
        "--name=sandbox", f"--data-dir={d / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=sandbox={peer_url}", "--unsafe-no-fsync",
        "--listen-metrics-urls=", "--log-level=warn",
    ])
    _wait_http(f"{etcd_url}/health", "etcd", state, timeout=30)

    (d / AUDIT_POLICY).write_text(json.dumps(audit.POLICY))  # JSON is YAML
    launch("kube-apiserver", apiserver_args(state))
    ssl_ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ssl_ctx.load_cert_chain(pki_dir / "admin.crt", pki_dir / "admin.key")
    _wait_http(f"{state.server}/readyz", "kube-apiserver", state, timeout=60, ssl_ctx=ssl_ctx)

    kubeconfig.write(Path(state.kubeconfig), server=state.server, pki=pki_dir, client="admin",
                     cluster_name=f"inferpool-{state.name}")
    configs = {
        client: kubeconfig.write(d / f"{client}.kubeconfig", server=state.server, pki=pki_dir,
                                 client=client, cluster_name=f"inferpool-{state.name}")
        for client in ("controller-manager", "scheduler", "kwok")
    }
    kcm = str(configs["controller-manager"])
    launch("kube-controller-manager", [
        f"--kubeconfig={kcm}", f"--authentication-kubeconfig={kcm}",
        f"--authorization-kubeconfig={kcm}", "--bind-address=127.0.0.1",
        f"--secure-port={p['kube-controller-manager']}", "--leader-elect=false",
        f"--node-monitor-grace-period={grace_seconds}s",
        "--node-monitor-period=1s",
        f"--service-account-private-key-file={pki_dir / 'sa.key'}",
        f"--root-ca-file={pki_dir / 'ca.crt'}", "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
        f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
        "--kube-api-qps=200", "--kube-api-burst=400", "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
    ])
    sched = str(configs["scheduler"])
    launch("kube-scheduler", [
        f"--kubeconfig={sched}", f"--authentication-kubeconfig={sched}",
        f"--authorization-kubeconfig={sched}", "--bind-address=127.0.0.1",
        f"--secure-port={p['kube-scheduler']}", "--leader-elect=false",
    ])
    # kwok does not default a configuration it reads: its defaults are spelled out here
    kwok_options = d / "kwok-options.yaml"
    kwok_options.write_text(json.dumps({
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
        "options": {"nodeLeaseParallelism": KWOK_LEASE_PARALLELISM,
                    "podPlayStageParallelism": 4, "nodePlayStageParallelism": 4,
                    "podsOnNodeSyncParallelism": 1, "enablePodsOnNodeSyncListPager": True,
                    "enablePodsOnNodeSyncStreamWatch": False, "enableDebuggingHandlers": True,
                    "enableProfilingHandler": True, "enableContentionProfiling": False}}))
    launch("kwok", [
        f"--kubeconfig={configs['kwok']}", f"--config={stages}", f"--config={kwok_options}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={pool_desc.KWOK_ANNOTATION}=fake",
        "--cidr=10.0.0.1/16", "--node-ip=10.0.0.1",
        f"--node-lease-duration-seconds={lease_seconds}",
        f"--server-address=127.0.0.1:{p['kwok']}",
    ])
    log(f"control plane of sandbox {state.name!r} is up at {state.server}")


AUDIT_POLICY = "audit-policy.yaml"  # in the sandbox's folder, written by `up`


def apiserver_args(state: SandboxState, extra: tuple[str, ...] = ()) -> list[str]:
    d, p = state.path, state.ports
    pki_dir = d / "pki"
    return [
        f"--etcd-servers=http://127.0.0.1:{p['etcd']}", "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1", f"--secure-port={p['kube-apiserver']}",
        f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
        f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
        f"--client-ca-file={pki_dir / 'ca.crt'}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki_dir / 'sa.pub'}",
        f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
        "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
        "--endpoint-reconciler-type=none", "--max-requests-inflight=800",
        "--max-mutating-requests-inflight=400",
        # as on OpenShift: setting blockOwnerDeletion needs `update` on the owner's finalizers
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        *audit.server_flags(d / AUDIT_POLICY, state.log_dir), *extra,
    ]


# What `restart-apiserver --delete` removes straight from etcd while the API server is down: as
# if deleted through another API server replica, unseen by any watch of this one.
ETCD_PREFIXES = {"deployment": "/registry/deployments/", "node": "/registry/minions/",
                 "pod": "/registry/pods/"}


def restart_apiserver(state: SandboxState, down_seconds: float = 0.0,
                      delete: tuple[str, ...] = (), extra_args: tuple[str, ...] = (),
                      log: Log = print) -> None:
    """Stop kube-apiserver, keep it down `down_seconds`, delete objects in etcd meanwhile
    (`delete`: "deployment/NAMESPACE/NAME", "pod/NAMESPACE/NAME" or "node/NAME"), and start it
    again on the same port and certificates (`extra_args` added to its flags). Every watch on
    it ends, and one resumed from an old resourceVersion gets 410 Gone from the new watch
    cache: clients re-list, and see no DELETED event for what went meanwhile."""
    keys = [_etcd_key(item) for item in delete]  # refuse a bad name before stopping anything
    started = time.monotonic()
    processes.stop(state.pids["kube-apiserver"], "kube-apiserver")
    for key in keys:
        if not _etcd_post(state, "/v3/kv/deleterange", {"key": _b64(key)}).get("deleted"):
            log(f"warning: {key} was not in etcd")
    time.sleep(max(0.0, down_seconds - (time.monotonic() - started)))
    bins = binaries.ensure(lambda _m: None)
    state.pids["kube-apiserver"] = processes.start(
        bins["kube-apiserver"], apiserver_args(state, extra_args),
        state.path / "logs" / "kube-apiserver.log")
    state.save()
    pki_dir = state.path / "pki"
    ssl_ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ssl_ctx.load_cert_chain(pki_dir / "admin.crt", pki_dir / "admin.key")
    _wait_http(f"{state.server}/readyz", "kube-apiserver", state, timeout=60, ssl_ctx=ssl_ctx)
    log(f"kube-apiserver of sandbox {state.name!r} restarted after "
        f"{time.monotonic() - started:.1f} s" + (f"; deleted {', '.join(delete)}" if delete
                                                  else ""))


def compact_etcd(state: SandboxState) -> int:
    """Compact etcd's history up to now: a watch resumed from any older resourceVersion (and
    not served from the API server's watch cache) gets 410 Gone. Returns the revision."""
    revision = int(_etcd_post(state, "/v3/kv/range", {"key": _b64("/")})["header"]["revision"])
    _etcd_post(state, "/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


def _etcd_key(item: str) -> str:
    kind, _, rest = item.partition("/")
    parts = rest.split("/")
    if kind not in ETCD_PREFIXES or not all(parts) or len(parts) != (1 if kind == "node" else 2):
        raise SandboxError(f"cannot delete {item!r}: use deployment/NAMESPACE/NAME, "
                           "pod/NAMESPACE/NAME or node/NAME")
    return ETCD_PREFIXES[kind] + rest


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def _etcd_post(state: SandboxState, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """etcd's JSON gateway to its gRPC API (no etcdctl needed)."""
    request = urllib.request.Request(f"http://127.0.0.1:{state.ports['etcd']}{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _wait_http(url: str, component: str, state: SandboxState, timeout: float,
               ssl_ctx: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not processes.is_ours(state.pids[component], component):
            raise SandboxError(f"{component} exited during start-up; see "
                               f"{state.path / 'logs' / (component + '.log')}:\n"
                               + _tail(state.path / "logs" / f"{component}.log"))
        try:
            with urllib.request.urlopen(url, timeout=2, context=ssl_ctx) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SandboxError(f"{component} did not become ready within {timeout:.0f} s ({last})")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop_all(state: SandboxState) -> None:
    """Every process the sandbox started (the autoscaler too), the last started first."""
    for component, pid in reversed(list(state.pids.items())):
        processes.stop(pid, component)


def down(name: str = "default", log: Log = print) -> bool:
    """Stop a sandbox's processes and remove its data. False when it was not running."""
    _check_name(name)
    state = load_state(name)
    if state is None:
        log(f"sandbox {name!r} is not running")
        return False
    _stop_all(state)
    shutil.rmtree(state.path, ignore_errors=True)
    log(f"sandbox {name!r} stopped and its data removed")
    return True


def status(name: str = "default") -> dict[str, Any]:
    state = load_state(name)
    if state is None:
        return {"name": name, "running": False}
    alive = state.alive()
    return {
        "name": name, "running": all(alive.values()), "processes": alive,
        "kubeconfig": state.kubeconfig, "server": state.server,
        "uptimeSeconds": round(time.time() - state.started_at),
    }


def require(name: str) -> SandboxState:
    state = load_state(name)
    if state is None or not all(state.alive().values()):
        raise SandboxError(f"sandbox {name!r} is not running (start it: inferpool sandbox up "
                           f"--name {name})")
    return state
