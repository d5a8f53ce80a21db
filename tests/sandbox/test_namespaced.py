"""An operator watching one namespace (`--namespace`) places pools there and nowhere else; its
caches are checked complete against that namespace's objects and the cluster-wide ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.operator_process import install_crds, running_operator
from tests.sandbox.test_operator import V6E, apply, ipool, replicas, settle, status
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox


def test_only_the_watched_namespace_is_placed(sandbox: Sandbox, namespace: str,
                                              tmp_path: Path) -> None:
    other = f"{namespace[:50]}-other"
    sandbox.kubectl("create", "namespace", other)
    install_crds(sandbox)
    try:
        apply(sandbox, other, ipool("elsewhere", 10, [V6E]))
        operator = running_operator(sandbox, tmp_path, "namespaced", f"--namespace={namespace}",
                                    "--lease-name=inferpool-namespaced-test")
        next(operator)  # started, leader, caches complete
        try:
            apply(sandbox, namespace, ipool("here", 20, [V6E]))
            settle(sandbox, namespace, {"here-v6e-v6e": 2})
            wait_for(lambda: status(sandbox, namespace, "here").get("readyReplicas") == 2,
                     timeout=30, what="the watched pool's status")
            assert replicas(sandbox, other) == {}
            assert not status(sandbox, other, "elsewhere")
        finally:
            operator.close()
            sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true",
                            check=False)
    finally:
        sandbox.kubectl("delete", "namespace", other, "--wait=false", check=False)
