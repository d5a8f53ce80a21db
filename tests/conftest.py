"""Fixtures: one sandbox per test session, a fresh namespace per test.

Set INFERPOOL_TEST_SANDBOX=NAME to reuse an already running sandbox (fast local iteration);
otherwise the session starts its own, named after the process, and stops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Sandbox

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    from inferpool.sandbox import binaries, control

    bins = binaries.ensure(lambda msg: print(msg, flush=True))
    reuse = os.environ.get("INFERPOOL_TEST_SANDBOX")
    name = reuse or f"pytest-{os.getpid()}"
    state = control.require(reuse) if reuse else control.up(name, log=lambda _m: None)
    try:
        yield Sandbox(name=name, kubeconfig=Path(state.kubeconfig),
                      kubectl_path=bins["kubectl"], helm_path=bins["helm"])
    finally:
        if not reuse:
            control.down(name, log=lambda _m: None)


@pytest.fixture
def namespace(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    base = request.node.name.lower().replace("_", "-")
    name = "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:5]}"
    sandbox.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)
