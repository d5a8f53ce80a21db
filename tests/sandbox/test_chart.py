"""The Helm chart on a real API server with the real helm: install, upgrade (a changed value and
a changed CRD take effect), uninstall (CRDs and InferencePools stay), and the operator run out of
cluster with nothing but the chart's ServiceAccount token placing replicas: its RBAC is enough.

The same run shows the RBAC is no more than enough: the API server's audit log (always on in
the sandbox) lists every (group, resource, verb) the operator's ServiceAccount called, and that
set must equal the chart's rules, minus the verbs the API server authorizes inside another call
(documented in inferpool.k8s.access, `unaudited`).

The sandbox's kubelets are simulated (KWOK) and every simulated node carries an accelerator
taint, so the chart's own operator pod is admitted (under the restricted Pod Security Standard)
but stays Pending and runs nothing; the operator under test is a local process.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferpool.api import crd
from inferpool.k8s import access
from inferpool.sandbox import audit
from inferpool.sandbox.operator_process import wait_established
from inferpool.sandbox.state import load_state
from tests.operator_process import install_crds
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inferpool-operator"
CRD_NAMES = tuple(r.crd_name for r in crd.RESOURCES)
RELEASE = "inferpool-operator"  # the chart's full name is then the release name

SMALL_POOL = """
apiVersion: inferpool.dev/v1alpha1
kind: InferencePool
metadata: {name: NAME}
spec:
  model: example/tiny
  replicas: {min: 1, max: 4}
  demand: {fixed: 8}
  variants:
  - name: l4
    accelerator: {family: nvidia, product: NVIDIA-L4, count: 1}
    capacity: 5
    template:
      spec:
        containers: [{name: server, image: registry.example/server:1,
                      ports: [{name: http, containerPort: 8000}]}]
"""

PRIVILEGED_POOL = SMALL_POOL.replace(
    "image: registry.example/server:1,",
    "image: registry.example/server:1, securityContext: {privileged: true},")


def pool(name: str, text: str = SMALL_POOL) -> str:
    return text.replace("NAME", name, 1)


# --- helpers -----------------------------------------------------------------------------------

def adopt_crds(sandbox: Sandbox, release: str, namespace: str) -> None:
    """Let Helm take over CRDs that exist already (applied with kubectl by other tests, or kept by
    an earlier release): Helm's documented adoption is this label and these annotations. The
    same two commands are in docs/install.md for users who applied crds/ by hand."""
    for name in CRD_NAMES:
        if sandbox.kubectl("get", "crd", name, check=False).returncode != 0:
            continue
        sandbox.kubectl("label", "crd", name, "--overwrite", "app.kubernetes.io/managed-by=Helm")
        sandbox.kubectl("annotate", "crd", name, "--overwrite",
                        f"meta.helm.sh/release-name={release}",
                        f"meta.helm.sh/release-namespace={namespace}")


@pytest.fixture(scope="module", autouse=True)
def restore_crds(sandbox: Sandbox) -> Iterator[None]:
    """Other sandbox tests expect crds/ as generated; the upgrade test changes the CRDs."""
    yield
    if sandbox.kubectl("replace", "-f", str(REPO / "crds"), check=False).returncode != 0:
        sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))


def restricted(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl("label", "namespace", namespace, "--overwrite",
                    "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")


def install(sandbox: Sandbox, namespace: str, *args: str,
            chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    adopt_crds(sandbox, RELEASE, namespace)
    return sandbox.helm("install", RELEASE, str(chart), "--namespace", namespace, *args)


def uninstall(sandbox: Sandbox, namespace: str) -> None:
    sandbox.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", check=False)


def operator_pods(sandbox: Sandbox, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = sandbox.get_json(
        "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return items


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def changed_chart(tmp: Path) -> Path:
    """The chart as a next release would ship it: a new version whose InferencePool CRD has an
    extra printer column."""
    chart = tmp / "inferpool-operator"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text(yaml.safe_dump({**meta, "version": "0.1.1-test"}))
    path = chart / "files" / "crds" / crd.INFERENCE_POOL.filename
    body = yaml.safe_load(path.read_text())
    body["spec"]["versions"][0]["additionalPrinterColumns"].insert(0, {
        "name": "Upgraded-Model", "type": "string", "jsonPath": ".spec.model",
        "description": "added by the upgrade test"})
    path.write_text(crd.render([body]))
    return chart


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_account_kubeconfig(sandbox: Sandbox, namespace: str, account: str,
                               path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a freshly minted token, to the
    sandbox's API server (server and CA from the admin kubeconfig)."""
    token = sandbox.kubectl("create", "token", account, "-n", namespace,
                            "--duration=1h").stdout.strip()
    admin = yaml.safe_load(sandbox.kubeconfig.read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    if "certificate-authority" in cluster:  # inline it: the file path may be relative
        ca = (sandbox.kubeconfig.parent / cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    user = f"system:serviceaccount:{namespace}:{account}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "sandbox", "user": user}}],
        "current-context": "sa",
    }))
    path.chmod(0o600)
    return path


# --- install, upgrade, uninstall ---------------------------------------------------------------

def test_install_upgrade_uninstall(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    restricted(sandbox, namespace)
    try:
        _install_upgrade_uninstall(sandbox, namespace, tmp_path)
    finally:
        uninstall(sandbox, namespace)  # when a step failed half way


def _install_upgrade_uninstall(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    # install
    done = install(sandbox, namespace)
    notes = done.stdout.split("NOTES:", 1)[1]
    assert f"rollout status deployment/{RELEASE}" in notes
    for name in CRD_NAMES:
        wait_established(sandbox.kubectl_path, sandbox.kubeconfig, (name,))
        meta = sandbox.get_json("crd", name)["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
        assert meta["annotations"]["meta.helm.sh/release-name"] == RELEASE
    deployment = sandbox.get_json("deployment", RELEASE, "-n", namespace)
    assert env_of(deployment)["INFERPOOL_LOG_LEVEL"] == "info"
    # The restricted Pod Security Standard admits the operator pod (else the ReplicaSet would
    # report FailedCreate and no pod would exist).
    pods = wait_for(lambda: operator_pods(sandbox, namespace), what="the operator pod")
    assert pods[0]["spec"]["serviceAccountName"] == RELEASE
    for name in ("serviceaccount", "role", "rolebinding"):
        sandbox.kubectl("get", name, RELEASE, "-n", namespace)
    ports = sandbox.get_json("service", f"{RELEASE}-metrics", "-n", namespace)["spec"]["ports"]
    assert ports[0]["name"] == ports[0]["targetPort"] == "metrics"
    for name in ("clusterrole", "clusterrolebinding"):
        sandbox.kubectl("get", name, RELEASE)

    # A user's InferencePool, and one the default CRD refuses (a privileged container).
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=pool("kept"))
    refused = sandbox.kubectl("apply", "-n", namespace, "-f", "-",
                              input=pool("privileged", PRIVILEGED_POOL), check=False)
    assert refused.returncode != 0
    assert "privileged containers are not allowed" in refused.stderr

    # upgrade: changed values take effect
    sandbox.helm("upgrade", RELEASE, str(CHART), "--namespace", namespace, "--reuse-values",
                 "--set", "operator.logLevel=debug", "--set", "replicaCount=2",
                 "--set", "podDisruptionBudget.enabled=true")
    deployment = sandbox.get_json("deployment", RELEASE, "-n", namespace)
    assert env_of(deployment)["INFERPOOL_LOG_LEVEL"] == "debug"
    assert deployment["spec"]["replicas"] == 2
    assert sandbox.get_json("pdb", RELEASE, "-n", namespace)["spec"]["maxUnavailable"] == 1

    # upgrade: a changed CRD (a new chart version) takes effect, existing objects stay
    assert "UPGRADED-MODEL" not in sandbox.kubectl("get", "ipool", "-n", namespace).stdout
    sandbox.helm("upgrade", RELEASE, str(changed_chart(tmp_path)), "--namespace", namespace,
                 "--reuse-values")
    columns = sandbox.get_json("crd", crd.INFERENCE_POOL.crd_name)["spec"]["versions"][0][
        "additionalPrinterColumns"]
    assert columns[0]["name"] == "Upgraded-Model"

    def shows_the_column() -> str | None:
        table = sandbox.kubectl("get", "ipool", "kept", "-n", namespace).stdout
        return table if "UPGRADED-MODEL" in table else None

    assert "example/tiny" in str(wait_for(shows_the_column, what="the new column"))

    # upgrade: a value that switches the CRDs to their relaxed variant
    sandbox.helm("upgrade", RELEASE, str(CHART), "--namespace", namespace, "--reuse-values",
                 "--set-json", f'operator.allowPrivilegedNamespaces=["{namespace}"]')
    ipool_crd = sandbox.get_json("crd", crd.INFERENCE_POOL.crd_name)
    assert ipool_crd["metadata"]["annotations"]["inferpool.dev/template-policy"] == "operator"
    assert "Upgraded-Model" not in str(ipool_crd["spec"])  # back to the chart's own CRD
    env = env_of(sandbox.get_json("deployment", RELEASE, "-n", namespace))
    assert env["INFERPOOL_ALLOW_PRIVILEGED_NAMESPACES"] == namespace
    wait_for(lambda: sandbox.kubectl("apply", "-n", namespace, "-f", "-",
                                     input=pool("privileged", PRIVILEGED_POOL),
                                     check=False).returncode == 0,
             what="the relaxed CRD to accept a privileged template")
    history = sandbox.helm("history", RELEASE, "--namespace", namespace).stdout
    assert len(history.strip().splitlines()) == 1 + 4

    # uninstall: the operator goes, the CRDs and the users' InferencePools stay
    done = sandbox.helm("uninstall", RELEASE, "--namespace", namespace, "--wait")
    assert "kept due to the resource policy" in done.stdout + done.stderr
    for kind, name in (("deployment", RELEASE), ("serviceaccount", RELEASE), ("role", RELEASE),
                       ("rolebinding", RELEASE), ("pdb", RELEASE),
                       ("service", f"{RELEASE}-metrics")):
        assert sandbox.kubectl("get", kind, name, "-n", namespace,
                               check=False).returncode != 0, kind
    for kind in ("clusterrole", "clusterrolebinding"):
        assert sandbox.kubectl("get", kind, RELEASE, check=False).returncode != 0, kind
    for name in CRD_NAMES:
        sandbox.kubectl("get", "crd", name)
    names = {p["metadata"]["name"] for p in sandbox.get_json("ipool", "-n", namespace)["items"]}
    assert names == {"kept", "privileged"}
    sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true")


def test_invalid_values_are_refused_before_anything_is_created(sandbox: Sandbox,
                                                               namespace: str) -> None:
    done = sandbox.helm("install", RELEASE, str(CHART), "--namespace", namespace, "--dry-run",
                        "--set", "operator.logFormat=xml", check=False)
    assert done.returncode != 0
    assert "/operator/logFormat" in done.stderr
    assert sandbox.helm("status", RELEASE, "--namespace", namespace, check=False).returncode != 0


# --- the chart's RBAC is enough: the operator as the chart's ServiceAccount -------------------

@pytest.fixture
def workload_namespace(sandbox: Sandbox) -> Iterator[str]:
    name = f"chart-workload-{uuid.uuid4().hex[:5]}"
    sandbox.kubectl("create", "namespace", name)
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def accelerator_pools(sandbox: Sandbox) -> Iterator[None]:
    # the CRDs first when this test runs alone (the chart's install adopts them)
    install_crds(sandbox)
    before = {p["metadata"]["name"] for p in sandbox.get_json("apool")["items"]}
    sandbox.kubectl("apply", "-f", str(REPO / "examples" / "accelerator-pools.yaml"))
    yield
    created = {p["metadata"]["name"] for p in sandbox.get_json("apool")["items"]} - before
    if created:
        sandbox.kubectl("delete", "apool", *sorted(created), "--ignore-not-found", check=False)


@contextlib.contextmanager
def operator_process(kubeconfig: Path, lease_namespace: str, log: Path,
                     health_port: int, metrics_port: int,
                     *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    # Nothing but --kubeconfig: no admin $KUBECONFIG, no in-cluster or INFERPOOL_* settings.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBERNETES_", "INFERPOOL_")) and k != "KUBECONFIG"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferpool.cli", "run", "--kubeconfig", str(kubeconfig),
             "--lease-namespace", lease_namespace, "--lease-name", RELEASE,
             "--health-port", str(health_port), "--metrics-port", str(metrics_port),
             "--tick-seconds", "2", "--log-format", "console", "--log-level", "debug", *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ready_pods(sandbox: Sandbox, namespace: str) -> list[dict[str, Any]]:
    pods = sandbox.get_json("pods", "-n", namespace,
                            "-l", "app.kubernetes.io/managed-by=inferpool")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p.get("status", {}).get("conditions", []))]


def answers(port: int, path: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        status: int = response.status
        return status == 200


def _concerns(line: str, namespace: str) -> bool:
    """False for a log line about an object in another namespace: the operator watches the whole
    cluster, and InferencePools other tests left in namespaces being deleted are refused with
    403 ("being terminated") whatever the RBAC. RBAC is cluster-wide, so a missing grant shows
    in our namespace too, or in a line that names no namespace (watches, cluster objects)."""
    named = re.search(r"\b(?:deployment|object)=(?:[a-z]+/)?([a-z0-9-]+)/[a-z0-9.-]+", line)
    return named is None or named.group(1) == namespace


Rule = tuple[str, str, str]  # (API group, resource, verb)


def granted_rules(sandbox: Sandbox, namespace: str) -> set[Rule]:
    """What the installed release's ClusterRole and Role grant (read from the API server)."""
    rules: set[Rule] = set()
    for kind, extra in (("clusterrole", ()), ("role", ("-n", namespace))):
        for rule in sandbox.get_json(kind, RELEASE, *extra)["rules"]:
            rules |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"]
                      for v in rule["verbs"]}
    return rules


def test_operator_as_the_chart_service_account_places_replicas(
        sandbox: Sandbox, namespace: str, workload_namespace: str, accelerator_pools: None,
        tmp_path: Path) -> None:
    restricted(sandbox, namespace)
    try:
        # No elastic pool here, so neither Events nor Karpenter NodePools would be listed: the
        # audit below would find those grants unused (tests/sandbox/test_karpenter.py covers
        # the reads).
        install(sandbox, namespace, "--set", "operator.readAutoscalerEvents=false",
                "--set", "operator.readKarpenterLimits=false")
        account = sandbox.get_json("deployment", RELEASE, "-n", namespace)[
            "spec"]["template"]["spec"]["serviceAccountName"]
        kubeconfig = service_account_kubeconfig(sandbox, namespace, account,
                                                tmp_path / "sa.kubeconfig")
        as_account = Sandbox(sandbox.name, kubeconfig, sandbox.kubectl_path, sandbox.helm_path)
        # It really is the ServiceAccount: what the chart does not grant is forbidden.
        who = as_account.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
        assert who.stdout == f"system:serviceaccount:{namespace}:{account}"
        denied = as_account.kubectl("get", "secrets", "-n", workload_namespace, check=False)
        assert "Forbidden" in denied.stderr
        assert ("", "secrets", "get", "cluster", False) not in access.grants()

        sandbox.kubectl("apply", "-n", workload_namespace, "-f", "-", input=pool("tiny"))
        log = tmp_path / "operator.log"
        health, metrics = free_port(), free_port()
        try:
            with operator_process(kubeconfig, namespace, log, health, metrics) as proc:
                def placed() -> bool:
                    assert proc.poll() is None, "the operator exited"
                    deployments = sandbox.get_json(
                        "deployments", "-n", workload_namespace,
                        "-l", "app.kubernetes.io/managed-by=inferpool")["items"]
                    ready: int = sum(d.get("status", {}).get("readyReplicas", 0)
                                     for d in deployments)
                    status = sandbox.get_json("ipool", "tiny", "-n", workload_namespace).get(
                        "status", {})
                    reported: int = status.get("readyReplicas", 0)
                    return ready > 0 and reported > 0

                wait_for(placed, timeout=120, interval=1, what="Ready replicas placed by the "
                         "operator running as the chart's ServiceAccount")
                # The chart's probes: alive (kopf), ready (every watched resource listed).
                assert wait_for(lambda: answers(health, "/healthz"), what="/healthz")
                assert wait_for(lambda: answers(metrics, "/readyz"), what="/readyz")
                # A node dies: the operator deletes our pod bound to it (`delete pods`, granted
                # with operator.replacePodsOnFailedNodes) and the replacement is Ready elsewhere
                # well before the not-ready toleration (30 s) would have evicted it.
                before = ready_pods(sandbox, workload_namespace)
                victim = before[0]["spec"]["nodeName"]
                sandbox.inferpool("sandbox", "fail", "--name", sandbox.name, victim)
                try:
                    def replaced() -> bool:
                        pods = ready_pods(sandbox, workload_namespace)
                        return len(pods) >= len(before) and all(
                            p["spec"]["nodeName"] != victim for p in pods)

                    wait_for(replaced, timeout=25, interval=0.5,
                             what=f"replacements of the pods on the failed node {victim}")
                finally:
                    sandbox.inferpool("sandbox", "recover", "--name", sandbox.name, victim)
                assert "replacing pod on a failed node" in log.read_text(errors="replace")

                lease = sandbox.get_json("lease", RELEASE, "-n", namespace)
                assert lease["spec"]["holderIdentity"]
                owner = sandbox.get_json("deployments", "-n", workload_namespace)["items"][0][
                    "metadata"]["ownerReferences"][0]
                assert owner["kind"] == "InferencePool"
                assert owner["blockOwnerDeletion"] is True

                # A field set by hand: the operator replaces the Deployment whole to remove it
                # (`update deployments`; an apply never removes another manager's fields).
                (made,) = sandbox.get_json("deployments", "-n", workload_namespace)["items"]
                sandbox.kubectl("set", "env", f"deployment/{made['metadata']['name']}",
                                "DEBUG=1", "-n", workload_namespace)
                wait_for(lambda: not sandbox.get_json(
                    "deployment", made["metadata"]["name"], "-n", workload_namespace)[
                    "spec"]["template"]["spec"]["containers"][0].get("env"),
                    timeout=30, what="the env var set by hand removed")

                # Scaled to zero: the operator deletes its Deployment (`delete deployments`).
                sandbox.kubectl("patch", "ipool", "tiny", "-n", workload_namespace,
                                "--type=merge", "-p",
                                '{"spec": {"replicas": {"min": 0}, "demand": {"fixed": 0, '
                                '"scaleDown": {"stabilizationSeconds": 0}}}}')
                wait_for(lambda: not sandbox.get_json(
                    "deployments", "-n", workload_namespace,
                    "-l", "app.kubernetes.io/managed-by=inferpool")["items"],
                    timeout=60, what="the Deployment deleted after scaling to zero")
        finally:
            text = log.read_text(errors="replace") if log.exists() else ""
            print(text[-20000:])  # shown by pytest when the test fails
        refused = [line for line in text.splitlines()
                   if re.search(r"(?i)forbidden|\(403\)|(status|code)\W{0,3}403", line)
                   and _concerns(line, workload_namespace)]
        assert not refused, "the chart's RBAC is not enough:\n" + "\n".join(refused[:10])

        # No more than enough. The run above covered: the watches (list, watch), server-side
        # apply of Deployments (patch), their replacement (update) and deletion, pod deletion on
        # a failed node, status patches of InferencePools and AcceleratorPools, Events, the
        # Lease (create, get, update; released on SIGTERM). The test's own kubectl calls as the
        # ServiceAccount (whoami, the refused `get secrets`) are left out by their user agent.
        user = f"system:serviceaccount:{namespace}:{account}"
        state = load_state(sandbox.name)
        assert state is not None
        calls = audit.calls(state.log_dir, user, exclude_agents=("kubectl/",))
        used = {c.rule for c in calls}
        granted = granted_rules(sandbox, namespace)
        implied = {(a.group, a.resource, v) for a in access.ACCESS for v in a.unaudited}
        assert not used - granted, f"called but not granted: {sorted(used - granted)}"
        assert not granted - implied - used, \
            f"granted but never called: {sorted(granted - implied - used)}"
        for call in calls:
            if call.resource == "leases":
                assert call.namespace == namespace, call
                assert call.verb == "create" or call.name == RELEASE, call
    finally:
        sandbox.kubectl("delete", "ipool", "--all", "-n", workload_namespace, check=False)
        uninstall(sandbox, namespace)
