"""The metrics port with --metrics-auth and TLS against the real API server: no token is 401, a
ServiceAccount token without `get` on /metrics is 403, one with it reads the metrics; the
readiness probe stays open."""

from __future__ import annotations

import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.operator_process import OperatorProcess, running_operator
from tests.support import Sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("metrics-tls")
    crt, key = d / "tls.crt", d / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt, key


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, cert: tuple[Path, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    crt, key = cert
    yield from running_operator(sandbox, tmp_path_factory.mktemp("metrics-auth"), "metrics-auth",
                                "--metrics-auth", f"--metrics-tls-cert-file={crt}",
                                f"--metrics-tls-key-file={key}", "--metrics-bind-address=127.0.0.1")


def fetch(url: str, ca: Path, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10,
                                    context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_need_a_token_allowed_to_get_them(
        sandbox: Sandbox, namespace: str, cert: tuple[Path, Path],
        operator: OperatorProcess) -> None:
    role = f"{namespace}-metrics-reader"
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "scraper", "namespace": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "stranger", "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role},
         "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": namespace}]},
    ]
    sandbox.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    try:
        scraper = sandbox.kubectl("create", "token", "scraper", "-n", namespace).stdout.strip()
        stranger = sandbox.kubectl("create", "token", "stranger", "-n", namespace).stdout.strip()
        url = f"https://127.0.0.1:{operator.metrics_port}"
        ca = cert[0]
        assert fetch(f"{url}/metrics", ca)[0] == 401
        assert fetch(f"{url}/metrics", ca, "not-a-token")[0] == 401
        status, body = fetch(f"{url}/metrics", ca, stranger)
        assert status == 403
        assert f"system:serviceaccount:{namespace}:stranger may not get /metrics" in body
        status, body = fetch(f"{url}/metrics", ca, scraper)
        assert status == 200
        assert "inferpool_leader" in body
        assert fetch(f"{url}/readyz", ca) == (200, "leader\n")  # the kubelet sends no token
    finally:
        sandbox.kubectl("delete", "clusterrole,clusterrolebinding", role, check=False)
