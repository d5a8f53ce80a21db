"""Objects too large for the API server are refused there, naming the limit; the largest one it
accepts (a template near the 1.5 MiB object limit) neither fails nor slows the reconcile of the
other InferencePools."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.operator_process import install_crds, running_operator
from tests.sandbox.test_operator import V6E, apply, ipool, replicas, status
from tests.support import Sandbox, wait_for

pytestmark = pytest.mark.sandbox


def refused(sandbox: Sandbox, namespace: str, obj: dict[str, object], *args: str) -> str:
    done = sandbox.kubectl("create", *args, "-n", namespace, "-f", "-",
                           input=json.dumps(obj), check=False)
    assert done.returncode != 0, "accepted"
    return done.stderr


def big_env(total_bytes: int) -> list[dict[str, str]]:
    chunk = 1000
    return [{"name": f"FILL_{i}", "value": "x" * chunk} for i in range(total_bytes // chunk)]


def test_oversized_objects_are_refused_by_the_api_server(sandbox: Sandbox,
                                                         namespace: str) -> None:
    install_crds(sandbox)
    annotated = ipool("annotated", 10, [V6E])
    annotated["metadata"]["annotations"] = {"blob": "x" * (1 << 20)}  # a megabyte
    # the API server's own limit on all annotations together (256 KiB), naming the field
    assert "metadata.annotations: Too long" in refused(sandbox, namespace, annotated,
                                                       "--dry-run=server")

    huge = ipool("huge", 10, [V6E])
    huge["spec"]["variants"][0]["template"]["spec"]["containers"][0]["env"] = big_env(1_700_000)
    # etcd's object limit (1.5 MiB; a dry-run stops short of etcd, so a real create)
    assert "too large" in refused(sandbox, namespace, huge).lower()
    assert sandbox.kubectl("get", "ipool", "huge", "-n", namespace, check=False).returncode


def test_a_large_pool_does_not_hold_up_the_others(sandbox: Sandbox, namespace: str,
                                                  tmp_path: Path) -> None:
    large = ipool("large", 10, [V6E], min_=1, max_=1)
    large["metadata"]["annotations"] = {f"note-{i}": "y" * 1000 for i in range(200)}
    large["spec"]["variants"][0]["template"]["spec"]["containers"][0]["env"] = big_env(
        1 << 20)  # ~1 MiB: accepted, close to the limit
    operator = running_operator(sandbox, tmp_path, "oversized")
    next(operator)
    try:
        sandbox.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(large))
        started = time.monotonic()
        apply(sandbox, namespace, ipool("small", 10, [V6E], min_=1, max_=1))
        wait_for(lambda: status(sandbox, namespace, "small").get("readyReplicas") == 1,
                 timeout=60, what="the small pool placed")
        wait_for(lambda: status(sandbox, namespace, "large").get("readyReplicas") == 1,
                 timeout=60, what="the large pool placed")
        elapsed = time.monotonic() - started
        print(f"both placed in {elapsed:.1f} s")
        assert elapsed < 45
        assert set(replicas(sandbox, namespace).values()) == {1}
    finally:
        operator.close()
        sandbox.kubectl("delete", "ipool", "--all", "-n", namespace, "--wait=true", check=False)
