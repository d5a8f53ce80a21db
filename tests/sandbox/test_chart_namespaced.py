"""The chart's namespaced mode (`watchNamespaces`) on a real API server: the operator, run with
nothing but the chart's ServiceAccount token, places replicas in its watched namespace; the
ServiceAccount may not create a Deployment anywhere else (kube-system included, by server-side
dry-run); and an operator told to watch a namespace the chart did not grant gets 403 there,
reports it and keeps serving the namespace it may use."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.test_chart import (
    RELEASE,
    Sandbox,
    accelerator_pools,  # noqa: F401 (a fixture)
    free_port,
    install,
    operator_process,
    pool,
    restricted,
    service_account_kubeconfig,
    uninstall,
)
from tests.support import wait_for

pytestmark = pytest.mark.sandbox

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: escape}
spec:
  selector: {matchLabels: {app: escape}}
  template:
    metadata: {labels: {app: escape}}
    spec:
      serviceAccountName: replicaset-controller
      containers: [{name: c, image: registry.example/c:1}]
"""


@pytest.fixture
def namespaces(sandbox: Sandbox) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:5]
    pair = (f"team-watched-{suffix}", f"team-other-{suffix}")
    for name in pair:
        sandbox.kubectl("create", "namespace", name)
    yield pair
    for name in pair:
        sandbox.kubectl("delete", "ipool", "--all", "-n", name, check=False)
        sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)


def placed(sandbox: Sandbox, namespace: str, name: str) -> bool:
    status = sandbox.get_json("ipool", name, "-n", namespace).get("status", {})
    ready: int = status.get("readyReplicas", 0)
    return ready > 0


def test_namespaced_chart_writes_in_its_namespaces_only(
        sandbox: Sandbox, namespace: str, namespaces: tuple[str, str],
        accelerator_pools: None, tmp_path: Path) -> None:  # noqa: F811
    watched, other = namespaces
    restricted(sandbox, namespace)
    try:
        install(sandbox, namespace, "--set-json", f'watchNamespaces=["{watched}"]')
        deployment = sandbox.get_json("deployment", RELEASE, "-n", namespace)
        env = {e["name"]: e.get("value") for e in
               deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["INFERPOOL_NAMESPACES"] == watched
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        kubeconfig = service_account_kubeconfig(sandbox, namespace, account,
                                                tmp_path / "sa.kubeconfig")
        as_account = Sandbox(sandbox.name, kubeconfig, sandbox.kubectl_path, sandbox.helm_path)

        # The boundary, asked of the API server: a Deployment (running as a powerful account)
        # may be made in the watched namespace, nowhere else.
        for where, allowed in ((watched, True), (other, False), ("kube-system", False)):
            done = as_account.kubectl("create", "--dry-run=server", "-n", where, "-f", "-",
                                      input=DEPLOYMENT, check=False)
            assert (done.returncode == 0) is allowed, (where, done.stderr)
            if not allowed:
                assert "forbidden" in done.stderr, done.stderr
        assert as_account.kubectl("auth", "can-i", "list", "nodes").stdout.strip() == "yes"
        assert as_account.kubectl("auth", "can-i", "list", "pods", "-A",
                                  check=False).stdout.strip() == "no"

        sandbox.kubectl("apply", "-n", watched, "-f", "-", input=pool("here"))
        sandbox.kubectl("apply", "-n", other, "-f", "-", input=pool("there"))
        # Misconfigured on purpose: told to watch `other` too, which the chart does not grant.
        log = tmp_path / "operator.log"
        with operator_process(kubeconfig, namespace, log, free_port(), free_port(),
                              f"--namespace={watched},{other}") as proc:
            def served() -> bool:
                assert proc.poll() is None, "the operator exited"
                return placed(sandbox, watched, "here")

            try:
                wait_for(served, timeout=90, interval=1,
                         what="replicas placed in the watched namespace")
                text = log.read_text(errors="replace")
                # reported: the namespace and the refusal, as a warning
                assert re.search(rf"forbidden.*{other}|{other}.*forbidden", text, re.I | re.S)
                assert proc.poll() is None
            finally:
                print(log.read_text(errors="replace")[-20000:])
        assert not sandbox.get_json("deployments", "-n", other)["items"]
        assert not sandbox.get_json("ipool", "there", "-n", other).get("status")
        assert json.loads(sandbox.kubectl("get", "ipool", "here", "-n", watched, "-o",
                                          "json").stdout)["status"]["readyReplicas"] > 0
    finally:
        uninstall(sandbox, namespace)
